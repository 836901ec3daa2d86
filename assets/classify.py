"""Classification assets (issue #18): `trait_predictions`, `token_colours`, `token_audit` per collection.

Each reads the partition's standardized images (and captions, components), calls one function of
`nft_pipeline.classify`, writes a Parquet table and reports counts, a preview and a check.
"""

from collections import Counter

import dagster as dg

from assets.checks import check_result, check_spec
from assets.images import components, standardized_images
from assets.partitions import collection_partitions
from assets.table_metadata import table_metadata
from assets.text import captions
from nft_pipeline import schemas
from nft_pipeline.classify.audit import TOKEN_AUDIT, AuditSettings, audit_rows, mismatch_rate
from nft_pipeline.classify.colours import TOKEN_COLOURS, colour_rows
from nft_pipeline.classify.traits import (
    TRAIT_PREDICTIONS,
    agreement_counts,
    chosen_methods,
    collection_trait_predictions,
)
from nft_pipeline.quality import QualityResult, row_counts_match
from nft_pipeline.reporting import markdown_table
from nft_pipeline.storage import read_table, write_table
from resources import DataDirResource

PREDICTIONS_COVER_IMAGES = check_spec(
    "trait_predictions", "every_image_predicted",
    "Every token with an ok image has one prediction per predicted trait type.", blocking=False,
)
COLOURS_FOR_OK_IMAGES = check_spec(
    "token_colours", "colours_for_ok_images", "One colour row per standardized image, with status ok for every ok image.", blocking=False
)
AUDIT_MISMATCH_RATE = check_spec(
    "token_audit", "mismatch_rate_below_threshold",
    "The share of checked tokens whose image shows another value of a declared trait stays below the threshold.",
    blocking=False,
)


def _ok_images(images) -> int:
    return sum(1 for s in images["status"].to_pylist() if s == "ok")


class TraitPredictionsConfig(dg.Config):
    holdout_fraction: float = 0.2
    seed: int = 0


@dg.asset(group_name="classify", kinds={"parquet"}, partitions_def=collection_partitions, deps=[standardized_images, captions], check_specs=[PREDICTIONS_COVER_IMAGES])
def trait_predictions(context: dg.AssetExecutionContext, config: TraitPredictionsConfig, data_dir: DataDirResource) -> dg.MaterializeResult:
    """Each exclusive trait type predicted for every token with a calibrated confidence, by the pixel
    method of best hold-out top-1 (kNN, value templates or their pool); tokens without metadata are
    `missing_metadata`, the rest leave-one-out suggestions."""
    layout = data_dir.layout()
    slug = context.partition_key
    images = read_table(layout.partition_path("standardized_images", slug), schemas.STANDARDIZED_IMAGES)
    table, evaluation, labels = collection_trait_predictions(
        slug, images, read_table(layout.partition_path("captions", slug), schemas.CAPTIONS), layout.file,
        holdout_fraction=config.holdout_fraction, seed=config.seed,
    )
    path = write_table(table, layout.partition_path("trait_predictions", slug), TRAIT_PREDICTIONS)
    metadata = table_metadata(
        table, path,
        predicted_types=dg.MetadataValue.json([t.trait_type for t in labels.types]),
        skipped_types=dg.MetadataValue.json(labels.skipped_types),
        by_type=dg.MetadataValue.json(agreement_counts(table)),
        methods=dg.MetadataValue.json({t: vars(c) for t, c in chosen_methods(evaluation).items()}),
        holdout=dg.MetadataValue.md(markdown_table([{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in evaluation.to_pylist()])),
    )
    expected = len(labels.types) * len(labels.token_ids)  # token_ids: the tokens with an ok image
    return dg.MaterializeResult(metadata=metadata, check_results=[check_result(PREDICTIONS_COVER_IMAGES, row_counts_match(table.num_rows, expected))])


@dg.asset(group_name="classify", kinds={"parquet"}, partitions_def=collection_partitions, deps=[standardized_images], check_specs=[COLOURS_FOR_OK_IMAGES])
def token_colours(context: dg.AssetExecutionContext, data_dir: DataDirResource) -> dg.MaterializeResult:
    """Dominant colours (k-means in CIELAB, background apart) and named colour classes per token."""
    layout = data_dir.layout()
    slug = context.partition_key
    images = read_table(layout.partition_path("standardized_images", slug), schemas.STANDARDIZED_IMAGES)
    table = colour_rows(slug, images, layout.file)
    path = write_table(table, layout.partition_path("token_colours", slug), TOKEN_COLOURS)
    classes = Counter(c for cs in table["colour_classes"].to_pylist() for c in cs)
    backgrounds = Counter(c for cs in table["background_classes"].to_pylist() for c in cs)
    metadata = table_metadata(
        table, path,
        status_counts=dg.MetadataValue.json(dict(Counter(table["status"].to_pylist()))),
        colour_classes=dg.MetadataValue.json(dict(classes.most_common())),
        background_classes=dg.MetadataValue.json(dict(backgrounds.most_common())),
    )
    ok = sum(1 for s in table["status"].to_pylist() if s == "ok")
    return dg.MaterializeResult(metadata=metadata, check_results=[check_result(COLOURS_FOR_OK_IMAGES, row_counts_match(ok, _ok_images(images)))])


class TokenAuditConfig(dg.Config):
    min_agreement_ratio: float = AuditSettings.min_agreement_ratio
    placeholder_share: float = AuditSettings.placeholder_share
    max_mismatch_rate: float = 0.05  # the check warns above this share of checked tokens


@dg.asset(group_name="classify", kinds={"parquet"}, partitions_def=collection_partitions, deps=[standardized_images, captions, components], check_specs=[AUDIT_MISMATCH_RATE])
def token_audit(context: dg.AssetExecutionContext, config: TokenAuditConfig, data_dir: DataDirResource) -> dg.MaterializeResult:
    """Per token: declared traits visible in the image (agreement with their components), placeholder
    (unrevealed) images, duplicate images; flags with reasons."""
    layout = data_dir.layout()
    slug = context.partition_key
    table = audit_rows(
        slug,
        read_table(layout.partition_path("standardized_images", slug), schemas.STANDARDIZED_IMAGES),
        read_table(layout.partition_path("captions", slug), schemas.CAPTIONS),
        read_table(layout.partition_path("components", slug), schemas.COMPONENTS),
        layout.file,
        AuditSettings(min_agreement_ratio=config.min_agreement_ratio, placeholder_share=config.placeholder_share),
    )
    path = write_table(table, layout.partition_path("token_audit", slug), TOKEN_AUDIT)
    rate, bad, checked = mismatch_rate(table)
    flagged = [r for r in table.to_pylist() if r["flags"]]
    metadata = table_metadata(
        table, path,
        flag_counts=dg.MetadataValue.json(dict(Counter(f for r in flagged for f in r["flags"]))),
        mismatch_rate=dg.MetadataValue.float(round(rate, 4)),
    )
    metadata["preview"] = dg.MetadataValue.md(markdown_table([{"token_id": r["token_id"], "flags": ", ".join(r["flags"]), "reasons": "; ".join(r["reasons"])} for r in flagged[:20]], width=160))
    result = QualityResult(rate <= config.max_mismatch_rate, {"mismatch_rate": round(rate, 4), "mismatched_tokens": bad, "checked_tokens": checked, "threshold": config.max_mismatch_rate})
    return dg.MaterializeResult(metadata=metadata, check_results=[check_result(AUDIT_MISMATCH_RATE, result)])
