"""The metadata audit: per token, are its declared traits visible, is it a placeholder, a duplicate?

- Trait visibility: a trait with a component (`components`, status ok) paints known colours at
  known pixels. A token's `agreement` for it is the share of the component's mask where the token
  shows the component's colour (both sampled at the same positions, `pixels`). A declared trait
  is `visible` when that share is at least `min_agreement_ratio` times the component's own
  agreement (its mean over the tokens that share it: a part usually half hidden is not held to
  1.0). Not visible is not yet an error: a hood hides a punk's skin, an earring sits elsewhere on
  a female punk than on a male one. The token is flagged `trait_not_visible` when the trait type
  is exclusive (one value per token, like `Type` or a Nouns layer) and the image shows another
  value of it: that value is visible and agrees more. On the real punks and Nouns this flags
  exactly the tokens whose traits were changed (tests/test_classify.py); flagging any invisible
  accessory instead flagged one punk in five.
- Placeholder: an unrevealed collection shows one image on most tokens. When the most common
  standardized image is shared by at least `placeholder_share` of the collection, its tokens are
  flagged `placeholder`.
- Duplicates: other images shared by several tokens flag each of them `duplicate_image`, with
  the first such token (by id) as `duplicate_of`.

Every flag comes with a reason in words, in the same order.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from PIL import Image

from nft_pipeline.classify.pixels import THUMBNAIL, read_samples, sample_image

TRAIT_CHECK = pa.struct(
    [
        pa.field("trait_type", pa.string()),
        pa.field("value", pa.string()),
        pa.field("agreement", pa.float32()),
        pa.field("expected", pa.float32()),  # the component's own agreement
        pa.field("visible", pa.bool_()),
    ]
)
TOKEN_AUDIT = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("token_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # ok | no_image | unreadable
        pa.field("n_declared", pa.int32(), nullable=False),
        pa.field("n_checked", pa.int32(), nullable=False),  # declared traits with a component
        pa.field("min_agreement", pa.float32()),
        pa.field("trait_checks", pa.list_(TRAIT_CHECK), nullable=False),
        pa.field("placeholder", pa.bool_(), nullable=False),
        pa.field("duplicate_of", pa.string()),
        pa.field("flags", pa.list_(pa.string()), nullable=False),
        pa.field("reasons", pa.list_(pa.string()), nullable=False),
    ]
)
FLAGS = ("trait_not_visible", "placeholder", "duplicate_image")


@dataclass(frozen=True)
class AuditSettings:
    min_agreement_ratio: float = 0.5
    placeholder_share: float = 0.5
    sample_size: int = THUMBNAIL
    threads: int = 2


@dataclass(frozen=True)
class SampledComponent:
    pixels: np.ndarray  # indices into the flattened sample where the mask is set
    colours: np.ndarray  # packed RGBA the component shows there
    agreement: float


def sampled_components(components: pa.Table, size: int = THUMBNAIL) -> dict[tuple[str, str], SampledComponent]:
    """(trait_type, value) -> its ok component sampled like the token images (`sample_image`)."""
    out = {}
    columns = ["trait_type", "value", "status", "mask_png", "rgba_png", "agreement"]
    for row in components.select(columns).to_pylist():
        if row["status"] != "ok" or not row["mask_png"] or not row["rgba_png"]:
            continue
        with Image.open(io.BytesIO(row["mask_png"])) as mask, Image.open(io.BytesIO(row["rgba_png"])) as rgba:
            mask_sample = sample_image(mask.convert("L"), size)[..., 0] > 0
            rgba_sample = np.ascontiguousarray(sample_image(rgba, size)).view("<u4")[..., 0]
        pixels = np.flatnonzero(mask_sample)
        if len(pixels):
            out[(row["trait_type"] or "", row["value"])] = SampledComponent(pixels, rgba_sample.reshape(-1)[pixels], float(row["agreement"] or 1.0))
    return out


def trait_agreement(sample: np.ndarray, component: SampledComponent) -> float:
    """The share of the component's sampled mask where the token shows the component's colour."""
    packed = np.ascontiguousarray(sample).view("<u4").reshape(-1)
    return float((packed[component.pixels] == component.colours).mean())


def _token_order(token_id: str) -> tuple[int, int | str]:
    return (0, int(token_id)) if token_id.isdigit() else (1, token_id)


def audit_rows(
    collection: str, images: pa.Table, captions: pa.Table, components: pa.Table,
    files: Callable[[str], object], settings: AuditSettings = AuditSettings(),
) -> pa.Table:
    """The `token_audit` table of one collection (see the module docstring)."""
    tags = {r["token_id"]: r["tags"] or [] for r in captions.select(["token_id", "tags"]).to_pylist()}
    rows = images.select(["token_id", "status", "png_path", "png_sha256"]).to_pylist()
    ok = [r for r in rows if r["status"] == "ok" and r["png_path"]]
    samples, readable = read_samples([files(r["png_path"]) for r in ok], settings.sample_size, settings.threads)
    index = {r["token_id"]: i for i, r in enumerate(ok)}
    parts = sampled_components(components, settings.sample_size)
    values_of = exclusive_types(tags.values())

    by_image: dict[str, list[str]] = defaultdict(list)
    for r in ok:
        if r["png_sha256"]:
            by_image[r["png_sha256"]].append(r["token_id"])
    common = Counter({digest: len(tokens) for digest, tokens in by_image.items()}).most_common(1)
    placeholder_digest = None
    if common and common[0][1] >= 2 and common[0][1] >= settings.placeholder_share * max(len(ok), 1):
        placeholder_digest = common[0][0]

    out = []
    for row in rows:
        token = row["token_id"]
        declared = tags.get(token, [])
        i = index.get(token)
        base = {"collection": collection, "token_id": token, "n_declared": len(declared), "n_checked": 0,
                "min_agreement": None, "trait_checks": [], "placeholder": False, "duplicate_of": None, "flags": [], "reasons": []}
        if i is None or not readable[i]:
            status = "no_image" if i is None else "unreadable"
            out.append({**base, "status": status})
            continue
        checks, flags, reasons = [], [], []
        for tag in declared:
            component = parts.get((tag["trait_type"] or "", tag["value"]))
            if component is None:
                continue
            agreement = trait_agreement(samples[i], component)
            visible = agreement >= settings.min_agreement_ratio * component.agreement
            checks.append({"trait_type": tag["trait_type"], "value": tag["value"], "agreement": agreement,
                           "expected": component.agreement, "visible": visible})
            alternative = None
            if not visible:
                others = [parts.get((t["trait_type"] or "", t["value"])) for t in declared if t is not tag]
                alternative = _better_value(samples[i], tag, agreement, values_of, parts, _shown(samples[i], others), settings)
            if alternative is not None:
                flags.append("trait_not_visible")
                reasons.append(
                    f"{tag['trait_type']}={tag['value']}: {agreement:.0%} of its pixels show it "
                    f"(tokens with it show {component.agreement:.0%}); the image shows {alternative[0]} ({alternative[1]:.0%})"
                )
        digest = row["png_sha256"]
        sharing = by_image.get(digest, [])
        placeholder = digest is not None and digest == placeholder_digest
        duplicate_of = None
        if placeholder:
            flags.append("placeholder")
            reasons.append(f"shows the image {len(sharing)} of {len(ok)} tokens show (unrevealed)")
        elif len(sharing) > 1:
            duplicate_of = min(sharing, key=_token_order)
            flags.append("duplicate_image")
            reasons.append(f"same image as {len(sharing) - 1} other token(s), first {duplicate_of}")
        agreements = [c["agreement"] for c in checks]
        out.append({**base, "status": "ok", "n_checked": len(checks), "min_agreement": min(agreements) if agreements else None,
                    "trait_checks": checks, "placeholder": placeholder, "duplicate_of": duplicate_of,
                    "flags": list(dict.fromkeys(flags)), "reasons": reasons})
    return pa.Table.from_pylist(out, schema=TOKEN_AUDIT)


def exclusive_types(token_tags) -> dict[str, set[str]]:
    """Trait types no token declares twice -> their values."""
    values: dict[str, set[str]] = defaultdict(set)
    repeated = set()
    for tags in token_tags:
        seen = Counter(tag["trait_type"] or "" for tag in tags)
        repeated |= {t for t, n in seen.items() if n > 1}
        for tag in tags:
            values[tag["trait_type"] or ""].add(tag["value"])
    return {t: v for t, v in values.items() if t and t not in repeated}


def _shown(sample: np.ndarray, components) -> np.ndarray:
    """Flattened bool: the pixels where the token shows one of `components` (its other declared traits)."""
    packed = np.ascontiguousarray(sample).view("<u4").reshape(-1)
    shown = np.zeros(packed.shape, dtype=bool)
    for component in components:
        if component is not None:
            shown[component.pixels[packed[component.pixels] == component.colours]] = True
    return shown


def _better_value(sample, tag, agreement, values_of, parts, explained, settings) -> tuple[str, float] | None:
    """Another value of the tag's exclusive type that the image shows better, with its agreement.

    Only pixels that the token's other declared traits do not already explain count: a Noun's
    body-coloured accessory looks like another body, but the accessory accounts for it."""
    trait_type = tag["trait_type"] or ""
    packed = np.ascontiguousarray(sample).view("<u4").reshape(-1)
    best = None
    for value in values_of.get(trait_type, ()):
        component = parts.get((trait_type, value))
        if value == tag["value"] or component is None:
            continue
        free = ~explained[component.pixels]
        if free.sum() < 0.5 * len(free):
            continue
        other = float((packed[component.pixels][free] == component.colours[free]).mean())
        if other >= settings.min_agreement_ratio * component.agreement and other > agreement and (best is None or other > best[1]):
            best = (value, other)
    return best


def mismatch_rate(audit: pa.Table) -> tuple[float, int, int]:
    """(rate, tokens with a trait not visible, tokens with at least one checked trait)."""
    rows = audit.select(["n_checked", "flags"]).to_pylist()
    checked = sum(1 for r in rows if r["n_checked"])
    bad = sum(1 for r in rows if "trait_not_visible" in r["flags"])
    return (bad / checked if checked else 0.0), bad, checked
