"""Image assets: `standardized_images` (every format -> PNG, width 512) and `components`."""

from collections import Counter

import dagster as dg

from assets.batching import collection_asset
from assets.checks import check_result, check_spec
from assets.media import raw_media
from assets.table_metadata import changed_image_markdown, table_metadata
from assets.text import captions
from nft_pipeline import schemas
from nft_pipeline.components import ComponentConfig, contact_sheet
from nft_pipeline.components.stage import collection_components
from nft_pipeline.location import total_bytes
from nft_pipeline.quality import ok_rows_have_width, values_within
from nft_pipeline.standardize import StandardizeSettings, collection_flags
from nft_pipeline.standardize import contact_sheet as image_contact_sheet
from nft_pipeline.standardize.pool import collection_dir
from nft_pipeline.standardize.stage import standardize_collection
from nft_pipeline.storage import read_table, write_table
from nft_pipeline.versions import fingerprint, stored_fingerprint, table_fingerprint, with_fingerprint
from resources import DataDirResource

# Bumped when a change of code changes the table an asset writes (nft_pipeline/versions.py).
COMPONENTS_CODE_VERSION = "1"

EXPECTED_WIDTH = check_spec("standardized_images", "expected_width", "Every ok image is exactly the configured width.")
COMPONENT_COVERAGE = check_spec(
    "components", "coverage_within_bounds", "Ok components cover more than nothing and less than 90% of the image."
)


class StandardizeConfig(dg.Config):
    """Output geometry and guards (see `nft_pipeline.standardize.StandardizeSettings`)."""

    width: int = 512
    max_pixels: int = StandardizeSettings.max_pixels
    max_frames: int = StandardizeSettings.max_frames
    timeout_s: float = StandardizeSettings.timeout_s
    seed: int = 0
    workers: int | None = None  # default: every usable core (affinity and cgroup quota, `nft_pipeline.cpus`)

    def settings(self) -> StandardizeSettings:
        return StandardizeSettings(
            width=self.width, max_pixels=self.max_pixels, max_frames=self.max_frames, timeout_s=self.timeout_s, seed=self.seed
        )


@collection_asset(
    group_name="images",
    kinds={"parquet", "png"},
    deps=[raw_media],
    check_specs=[EXPECTED_WIDTH],
)
def standardized_images(
    context: dg.AssetExecutionContext, config: StandardizeConfig, data_dir: DataDirResource
) -> dg.MaterializeResult:
    """One PNG per token (width 512, aspect kept, pixel art enlarged by whole blocks), plus its row."""
    layout = data_dir.layout()
    slug = context.partition_key
    path = layout.partition_path("standardized_images", slug)
    raw = read_table(layout.partition_path("raw_media", slug), schemas.RAW_MEDIA)
    previous = read_table(path, schemas.STANDARDIZED_IMAGES)
    table, report = standardize_collection(
        slug, raw, previous, layout.blobs, layout.images_dir, config.settings(), workers=config.workers
    )
    # Per token, unchanged sources are reused (`reused`); the version is the rows' content.
    version = table_fingerprint(table)
    changed = version != table_fingerprint(previous) or not path.exists()
    if changed:
        write_table(table, path, schemas.STANDARDIZED_IMAGES)
    tokens = read_table(layout.partition_path("tokens", slug), schemas.TOKENS)
    n_attributes = sum(len(a or []) for a in tokens.column("attributes").to_pylist())
    flags = collection_flags(table.column("png_sha256").to_pylist(), n_attributes)
    ok = [r for r in table.to_pylist() if r["status"] == "ok"]
    source_bytes = sum(r["bytes"] for r in raw.to_pylist() if r["status"] == "ok" and r["role"] == "image")
    png_bytes = total_bytes(collection_dir(layout.images_dir, slug))
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata=table_metadata(
            table,
            path,
            status_counts=dg.MetadataValue.json(dict(report.status_counts)),
            source_types=dg.MetadataValue.json(dict(report.source_types)),
            standardized=report.standardized,
            reused=report.reused,
            images_per_second=dg.MetadataValue.float(round(report.images_per_second, 1)),
            source_bytes=source_bytes,
            png_bytes=png_bytes,
            collection_flags=dg.MetadataValue.json(flags),
            contact_sheet=changed_image_markdown(
                changed, lambda: image_contact_sheet([layout.file(r["png_path"]) for r in ok[:48]]), f"{slug} sample"
            ),
        ),
        check_results=[check_result(EXPECTED_WIDTH, ok_rows_have_width(table, config.width))],
    )


class ComponentsConfig(dg.Config):
    """Separation settings (see `nft_pipeline.components.ComponentConfig`)."""

    method: str = "contrast"
    images_per_round: int = 4
    rounds: int = 8
    seed: int = 0


@collection_asset(
    group_name="images",
    kinds={"parquet"},
    deps=[standardized_images, captions],
    check_specs=[COMPONENT_COVERAGE],
    code_version=COMPONENTS_CODE_VERSION,
)
def components(context: dg.AssetExecutionContext, config: ComponentsConfig, data_dir: DataDirResource) -> dg.MaterializeResult:
    """Each trait's pixels (mask + RGBA) separated from the images that share it, or why not.

    Recomputed only when the images, the traits or the settings changed (their fingerprint is the
    data version); otherwise the table written last time is current and the step returns at once.
    """
    layout = data_dir.layout()
    slug = context.partition_key
    images = read_table(layout.partition_path("standardized_images", slug), schemas.STANDARDIZED_IMAGES)
    texts = read_table(layout.partition_path("captions", slug), schemas.CAPTIONS)
    version = fingerprint(
        COMPONENTS_CODE_VERSION, config.model_dump(), table_fingerprint(images), table_fingerprint(texts, ["token_id", "tags"])
    )
    path = layout.partition_path("components", slug)
    if stored_fingerprint(path) == version:
        table, masks_computed = read_table(path, schemas.COMPONENTS), 0
    else:
        separation = ComponentConfig(
            method=config.method, images_per_round=config.images_per_round, rounds=config.rounds, seed=config.seed
        )
        table = collection_components(slug, images, texts, separation, layout.file)
        write_table(with_fingerprint(table, version), path, schemas.COMPONENTS)
        masks_computed = table.num_rows
    statuses = Counter(table.column("status").to_pylist())
    ok_rows = [r for r in table.to_pylist() if r["status"] == "ok"]
    metadata = table_metadata(table, path, status_counts=dg.MetadataValue.json(dict(statuses)), masks_computed=masks_computed)
    metadata["preview"] = dg.MetadataValue.md(
        "\n".join(f"- {r['trait_type']}: {r['value']} ({r['n_tokens']} tokens, coverage {r['coverage']:.3f})" for r in ok_rows[:10])
    )
    if ok_rows:
        metadata["largest_components"] = changed_image_markdown(
            masks_computed > 0, lambda: contact_sheet(ok_rows), f"{slug} components"
        )
    return dg.MaterializeResult(
        metadata=metadata,
        data_version=dg.DataVersion(version),
        check_results=[check_result(COMPONENT_COVERAGE, values_within(table, "coverage", 1e-6, 0.9))],
    )
