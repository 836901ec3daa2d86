"""Dominant colours of each standardized image and named colour classes ("blue", "pastel", "dark").

Per token:

1. The background is what the border shows: the most common colour of the sampled image's border
   pixels (transparent counts as a colour). Every pixel within `background_delta_e` of it in CIELAB
   is background (a Noun's flat backdrop, a punk's transparent margin); the rest is the figure.
2. The figure's colours are clustered by k-means in CIELAB (`n_colours` clusters, weighted by pixel
   count over the distinct colours, seeded k-means++), because distances there follow how
   different colours look. Each cluster is reported by its most common actual colour, so pixel art
   keeps its exact palette (a punk's skin is its exact RGB), with the cluster's share of the figure.
3. Names: a colour is achromatic (black, grey, white) below `achromatic_chroma`, else named by its
   CIELAB hue (red, orange, yellow, green, cyan, blue, purple), light reds and purples are pink and
   dark reds, oranges and yellows brown. A token's `colour_classes` are the names of colours that
   cover at least `class_share` of the figure, plus whole-image moods: `dark` (mean lightness
   below 35), `pastel` (light and soft), `vivid` (saturated) and `monochrome` (one hue family or
   none). `background_classes` name the background the same way, or `transparent`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from nft_pipeline.classify.pixels import THUMBNAIL, read_samples
from nft_pipeline.location import Location

COLOUR = pa.struct(
    [
        pa.field("hex", pa.string()),
        pa.field("share", pa.float32()),  # of the figure (non-background) pixels
        pa.field("name", pa.string()),
        pa.field("lab", pa.list_(pa.float32(), 3)),
    ]
)
TOKEN_COLOURS = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("token_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # ok | no_image | unreadable
        pa.field("reason", pa.string()),
        pa.field("background_hex", pa.string()),  # null: transparent
        pa.field("background_share", pa.float32()),
        pa.field("background_classes", pa.list_(pa.string()), nullable=False),
        pa.field("colours", pa.list_(COLOUR), nullable=False),  # largest first
        pa.field("colour_classes", pa.list_(pa.string()), nullable=False),
    ]
)
HUE_NAMES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "black", "grey", "white")
MOODS = ("dark", "pastel", "vivid", "monochrome")
COLOUR_WORDS = (*HUE_NAMES, "gray", "transparent", *MOODS)  # what search may read as a colour word
# CIELAB hue angle (degrees) where each hue family starts, in order around the circle.
_HUE_STARTS = ((15.0, "red"), (50.0, "orange"), (80.0, "yellow"), (110.0, "green"), (170.0, "cyan"), (225.0, "blue"), (310.0, "purple"), (345.0, "red"))


@dataclass(frozen=True)
class ColourSettings:
    n_colours: int = 5
    background_delta_e: float = 3.0
    achromatic_chroma: float = 5.0
    class_share: float = 0.15
    iterations: int = 12
    seed: int = 0
    sample_size: int = THUMBNAIL


# ---------------------------------------------------------------- colour science


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """... x 3 sRGB (0-255) -> ... x 3 CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array(
        [[0.4124564, 0.2126729, 0.0193339], [0.3575761, 0.7151522, 0.1191920], [0.1804375, 0.0721750, 0.9503041]]
    )
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def colour_name(lab: Sequence[float], achromatic_chroma: float = ColourSettings.achromatic_chroma) -> str:
    """The hue family of one CIELAB colour (see the module docstring)."""
    lightness, a, b = (float(v) for v in lab)
    chroma = float(np.hypot(a, b))
    if chroma < achromatic_chroma or (lightness < 12 and chroma < 15):
        return "black" if lightness < 25 else "white" if lightness > 85 else "grey"
    hue = float(np.degrees(np.arctan2(b, a))) % 360
    name = "red"
    for start, family in _HUE_STARTS:
        if hue >= start:
            name = family
    if name in ("red", "purple") and lightness >= 70:
        return "pink"
    if name in ("red", "orange", "yellow") and lightness < 50 and chroma < 60:
        return "brown"
    return name


def hex_colour(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb[:3])


# ---------------------------------------------------------------- k-means in CIELAB


def weighted_kmeans(points: np.ndarray, weights: np.ndarray, k: int, iterations: int, seed: int) -> np.ndarray:
    """Cluster labels of `points` (n x d) by weighted k-means with k-means++ seeding."""
    n = len(points)
    if n <= k:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    centres = [points[int(np.argmax(weights))]]  # the most common colour first: deterministic and sensible
    distance = ((points - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = weights * distance
        if p.sum() <= 0:
            break
        centres.append(points[rng.choice(n, p=p / p.sum())])
        distance = np.minimum(distance, ((points - centres[-1]) ** 2).sum(1))
    centre_array = np.array(centres)
    labels = np.zeros(n, dtype=int)
    for _ in range(iterations):
        labels = ((points[:, None, :] - centre_array[None]) ** 2).sum(-1).argmin(1)
        mass = np.bincount(labels, weights, minlength=len(centre_array))
        sums = np.stack([np.bincount(labels, weights * points[:, d], minlength=len(centre_array)) for d in range(points.shape[1])], 1)
        updated = np.where(mass[:, None] > 0, sums / np.maximum(mass, 1e-12)[:, None], centre_array)
        if np.allclose(updated, centre_array):
            break
        centre_array = updated
    return labels


@dataclass(frozen=True)
class TokenColours:
    background_rgba: tuple[int, int, int, int]
    background_share: float
    colours: list[dict]  # COLOUR fields
    colour_classes: list[str]
    background_classes: list[str]


def _background(sample: np.ndarray) -> np.ndarray:
    """The most common border colour as packed RGBA (transparent pixels are one colour)."""
    border = np.concatenate([sample[0], sample[-1], sample[:, 0], sample[:, -1]])
    packed = border.astype("<u4") @ np.array([1, 256, 65536, 16777216], dtype="<u8")
    packed = np.where(border[:, 3] == 0, 0, packed)
    values, counts = np.unique(packed, return_counts=True)
    return np.array([(int(values[counts.argmax()]) >> s) & 255 for s in (0, 8, 16, 24)], dtype=np.uint8)


def token_colours(sample: np.ndarray, settings: ColourSettings = ColourSettings()) -> TokenColours:
    """The colours of one sampled RGBA image (see the module docstring)."""
    background = _background(sample)
    # Pixel art has a few dozen distinct colours: every step works on those, weighted by count.
    packed = np.ascontiguousarray(sample).view("<u4").reshape(-1)
    packed = np.where(packed < (1 << 24), np.uint32(0), packed)  # alpha 0: one transparent colour
    unique, counts = np.unique(packed, return_counts=True)
    rgba = unique.view(np.uint8).reshape(-1, 4)
    visible = rgba[:, 3] > 0
    lab = srgb_to_lab(rgba[:, :3])
    if background[3] == 0:
        background_lab = None
        is_background = ~visible
    else:
        background_lab = srgb_to_lab(background[:3])
        is_background = ~visible | (np.sqrt(((lab - background_lab) ** 2).sum(1)) <= settings.background_delta_e)
    figure = ~is_background
    colours: list[dict] = []
    if figure.any():
        figure_lab, figure_counts, figure_rgb = lab[figure], counts[figure], rgba[figure, :3]
        labels = weighted_kmeans(figure_lab, figure_counts.astype(float), settings.n_colours, settings.iterations, settings.seed)
        total = figure_counts.sum()
        for cluster in np.unique(labels):
            members = np.flatnonzero(labels == cluster)
            mode = members[figure_counts[members].argmax()]
            colours.append(
                {
                    "hex": hex_colour(figure_rgb[mode]),
                    "share": float(figure_counts[members].sum() / total),
                    "name": colour_name(figure_lab[mode], settings.achromatic_chroma),
                    "lab": [float(v) for v in figure_lab[mode]],
                }
            )
        colours.sort(key=lambda c: -c["share"])
    classes = list(dict.fromkeys(c["name"] for c in colours if c["share"] >= settings.class_share))
    classes += _moods(lab[visible], counts[visible], lab[figure], counts[figure], colours, settings)
    background_classes = ["transparent"] if background_lab is None else [colour_name(background_lab, settings.achromatic_chroma)]
    return TokenColours(
        tuple(int(v) for v in background), float(counts[is_background].sum() / counts.sum()), colours, classes, background_classes
    )


def _moods(
    visible_lab: np.ndarray, visible_counts: np.ndarray, figure_lab: np.ndarray, figure_counts: np.ndarray,
    colours: list[dict], settings: ColourSettings,
) -> list[str]:
    if not visible_counts.sum():
        return []
    moods = []
    lightness = np.average(visible_lab[:, 0], weights=visible_counts)
    chroma = np.average(np.hypot(visible_lab[:, 1], visible_lab[:, 2]), weights=visible_counts)
    if lightness < 35:
        moods.append("dark")
    if lightness >= 70 and 8 <= chroma <= 40:
        moods.append("pastel")
    if figure_counts.sum() and np.average(np.hypot(figure_lab[:, 1], figure_lab[:, 2]), weights=figure_counts) >= 45:
        moods.append("vivid")
    hues = {c["name"] for c in colours if c["share"] >= settings.class_share} - {"black", "grey", "white"}
    if len(hues) <= 1 and all(c["name"] in ("black", "grey", "white", *hues) for c in colours if c["share"] >= 0.05):
        moods.append("monochrome")
    return moods


# ---------------------------------------------------------------- a collection


def colour_rows(
    collection: str, images: pa.Table, files, settings: ColourSettings = ColourSettings(), threads: int = 2
) -> pa.Table:
    """The `token_colours` table of one collection from its `standardized_images` table.

    `files` turns a stored `png_path` into a readable path (`DataLayout.file`). A token without an
    ok image or whose PNG cannot be read gets a row with that status and no colours.
    """
    rows = images.select(["token_id", "status", "png_path"]).to_pylist()
    ok = [r for r in rows if r["status"] == "ok" and r["png_path"]]
    paths: list[Location] = [files(r["png_path"]) for r in ok]
    samples, readable = read_samples(paths, settings.sample_size, threads)
    out = []
    by_token = {r["token_id"]: i for i, r in enumerate(ok)}
    for row in rows:
        i = by_token.get(row["token_id"])
        base = {"collection": collection, "token_id": row["token_id"], "background_classes": [], "colours": [], "colour_classes": []}
        if i is None:
            out.append({**base, "status": "no_image", "reason": f"standardized image status {row['status']}"})
        elif not readable[i]:
            out.append({**base, "status": "unreadable", "reason": f"cannot read {row['png_path']}"})
        else:
            found = token_colours(samples[i], settings)
            background_hex = hex_colour(found.background_rgba) if found.background_rgba[3] else None
            out.append(
                {
                    **base,
                    "status": "ok",
                    "reason": None,
                    "background_hex": background_hex,
                    "background_share": found.background_share,
                    "background_classes": found.background_classes,
                    "colours": found.colours,
                    "colour_classes": found.colour_classes,
                }
            )
    return pa.Table.from_pylist(out, schema=TOKEN_COLOURS)
