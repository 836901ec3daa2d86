"""The `clones` asset (issue #18): near-duplicate groups across every collection, with their likely original.

Unpartitioned: it reads every collection's standardized images, in the catalog's order (the
`collections` table), keeps per-collection signatures that are still current, and recomputes the
groups only when a collection's signatures or the settings changed (`nft_pipeline/classify/clones.py`).
"""

from collections import Counter

import dagster as dg

from assets.checks import check_result, check_spec
from assets.images import standardized_images
from assets.ingest import collections
from assets.table_metadata import table_metadata
from nft_pipeline import schemas
from nft_pipeline.classify.clones import (
    CLONES,
    CloneSettings,
    cached_signatures,
    clone_rows,
    clones_fingerprint,
    copies_per_collection,
)
from nft_pipeline.quality import QualityResult
from nft_pipeline.reporting import markdown_table
from nft_pipeline.storage import read_table, write_table
from nft_pipeline.versions import stored_fingerprint, with_fingerprint
from resources import DataDirResource

DEFAULTS = CloneSettings()
GROUPS_ARE_STARS = check_spec(
    "clones", "one_original_per_group",
    "Every group has exactly one original, every copy sits in another collection than its original, and no token is in two groups.",
    blocking=False,
)


class ClonesConfig(dg.Config):
    max_hamming: int = DEFAULTS.max_hamming
    min_cosine: float = DEFAULTS.min_cosine
    threads: int = DEFAULTS.threads

    def settings(self) -> CloneSettings:
        return CloneSettings(**self.model_dump())


def _groups_are_stars(table) -> QualityResult:
    rows = table.to_pylist()
    originals = Counter(r["group_id"] for r in rows if r["role"] == "original")
    groups = {r["group_id"] for r in rows}
    tokens = Counter((r["collection"], r["token_id"]) for r in rows)
    same_collection = sum(1 for r in rows if r["role"] == "copy" and r["collection"] == r["original_collection"])
    ok = all(originals[g] == 1 for g in groups) and max(tokens.values(), default=1) == 1 and not same_collection
    return QualityResult(ok, {"groups": len(groups), "tokens_in_two_groups": sum(1 for n in tokens.values() if n > 1),
                              "copies_in_their_originals_collection": same_collection})


@dg.asset(group_name="classify", kinds={"parquet"}, deps=[collections, standardized_images], check_specs=[GROUPS_ARE_STARS])
def clones(context: dg.AssetExecutionContext, config: ClonesConfig, data_dir: DataDirResource) -> dg.MaterializeResult:
    """Tokens that copy another collection's token (perceptual hash, then aligned-thumbnail cosine),
    grouped with their likely original (the collection listed first in the catalog)."""
    layout = data_dir.layout()
    settings = config.settings()
    catalog = read_table(layout.table_path("collections"), schemas.COLLECTIONS)["slug"].to_pylist()
    order = [slug for slug in catalog if layout.partition_path("standardized_images", slug).exists()]
    signatures, computed = [], []
    for slug in order:
        images = read_table(layout.partition_path("standardized_images", slug), schemas.STANDARDIZED_IMAGES)
        signatures.append(cached_signatures(layout, slug, images, settings.threads))
        if signatures[-1].computed:
            computed.append(slug)
    path = layout.table_path("clones")
    wanted = clones_fingerprint(signatures, settings)
    reused = stored_fingerprint(path) == wanted
    if reused:
        table = read_table(path, CLONES)
    else:
        table = clone_rows([s.table for s in signatures], settings)
        write_table(with_fingerprint(table, wanted), path, CLONES)
    context.log.info(f"signatures computed for {computed or 'no collection'}; groups {'reused' if reused else 'recomputed'}")
    per_collection = copies_per_collection(table, order)
    roles = Counter(table["role"].to_pylist())
    metadata = table_metadata(
        table, path,
        collections=len(order),
        groups=roles["original"],
        copies=roles["copy"],
        signatures_computed=dg.MetadataValue.json(computed),
        groups_reused=reused,
        copies_per_collection=dg.MetadataValue.md(markdown_table(per_collection)),
        settings=dg.MetadataValue.json({"max_hamming": settings.max_hamming, "min_cosine": settings.min_cosine}),
    )
    preview = [{k: r[k] for k in ("group_id", "collection", "token_id", "role", "cosine", "hamming")} for r in table.slice(0, 20).to_pylist()]
    metadata["preview"] = dg.MetadataValue.md(markdown_table(preview))
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(wanted),
                                check_results=[check_result(GROUPS_ARE_STARS, _groups_are_stars(table))])
