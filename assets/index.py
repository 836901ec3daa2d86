"""The `nft_index` asset: each collection's images embedded by the trained CLIP, searchable in LanceDB.

Per collection partition, like the stages it reads, because a partition's rows can then be
replaced on their own (`replace_partition`) when its images change. It is not in the refresh job
(which runs before any model exists) but follows its inputs declaratively (its `automation_condition`),
evaluated by the automation condition sensor (ARCHITECTURE.md, "Refresh").
"""

import dagster as dg
import pyarrow.compute as pc

from assets.automation import PipelineRunsFinished
from assets.batching import INDEX_BATCH, materialize_each
from assets.checks import check_result, check_spec
from assets.images import standardized_images
from assets.model import clip_model
from assets.partitions import collection_partitions
from assets.table_metadata import table_metadata
from assets.text import captions
from nft_pipeline import schemas
from nft_pipeline.quality import row_counts_match
from nft_pipeline.reporting import markdown_preview
from nft_pipeline.storage import read_table
from nft_pipeline.versions import fingerprint, table_fingerprint
from resources import DataDirResource

INDEX_ROWS_EQUAL_IMAGES = check_spec(
    "nft_index",
    "index_rows_equal_images",
    "The collection's rows in the LanceDB table equal its standardized images with status ok "
    "(a shortfall is a token search cannot find).",
)


# Eager, with "a dependency updated" narrowed to "a dependency has a new data version" (the daily
# refresh materializes every collection's inputs, and most of them with unchanged data versions),
# and held while any run of the pipeline job is queued or running, so that a refresh of many
# ranges makes one round of index runs, not one per range (`PipelineRunsFinished`).
INDEX_AUTOMATION = (
    dg.AutomationCondition.eager().replace(
        "any_deps_updated",
        dg.AutomationCondition.any_deps_match(
            dg.AutomationCondition.data_version_changed() | dg.AutomationCondition.will_be_requested()
        ).with_label("any_deps_changed"),
    )
    & PipelineRunsFinished()
)


class NftIndexConfig(dg.Config):
    """Which model embeds the images, and how many at a time."""

    run_id: str = ""  # empty: the latest finished training run (`trained_run`, as `cvi_report` picks it)
    batch_size: int = 64
    decode_threads: int = 2


@dg.asset(
    group_name="search",
    kinds={"lancedb", "pytorch"},
    partitions_def=collection_partitions,
    deps=[clip_model, standardized_images, captions],
    check_specs=[INDEX_ROWS_EQUAL_IMAGES],
    # `eager`: a partition is requested once any of its inputs updated since it was last run or requested,
    # i.e. its own `standardized_images` / `captions` (the daily refresh of that collection) or
    # `clip_model` (unpartitioned, so a new model re-indexes every partition: vectors of two models
    # are not comparable), and a new collection's partition once it has inputs. Never while an input
    # is missing (no model yet: the run would fail) or in progress (the refresh run or the training
    # still writing), and not while any run of the pipeline job is queued or running, so a refresh
    # of many ranges or a training run triggers one round of re-indexing when it finishes.
    # "Updated" means a new data version (see INDEX_AUTOMATION), so a refresh that changed nothing
    # requests no index run.
    automation_condition=INDEX_AUTOMATION,
    backfill_policy=INDEX_BATCH,  # the automation sensor's requests come as ranges of collections
    pool="search_index",  # one index writer at a time: index builds commit like writes (see ensure_indexes)
)
def nft_index(context: dg.AssetExecutionContext, config: NftIndexConfig, data_dir: DataDirResource) -> dg.MaterializeResult:
    """Brings the collection's rows of `nft_embeddings` up to date with its images and captions, then indexes.

    Only rows that are new, or whose image, caption or model changed, are embedded; rows of tokens
    that are gone are deleted; the rest keep their vectors (`nft_pipeline.index`, `partition_changes`).
    """
    # torch, transformers and lancedb load here, in the step that embeds, not with the code location.
    from nft_pipeline.embedding import EmbeddingModel
    from nft_pipeline.index import (
        TABLE_NAME,
        VECTOR_COLUMN,
        embedding_rows,
        ensure_indexes,
        index_inputs,
        lance_path,
        partition_changes,
        update_partition,
    )
    from nft_pipeline.train.tables import trained_run

    layout = data_dir.layout()
    model_dir = trained_run(layout, config.run_id)["model_dir"]
    try:
        model = EmbeddingModel.load(model_dir)  # once per run, for every collection of its range
    except OSError as error:
        raise dg.Failure(f"cannot load the model at {model_dir} ({error}): materialize `clip_model` again") from error
    db_path = lance_path(layout.root)

    def index_collection(slug: str) -> dg.MaterializeResult:
        images = read_table(layout.partition_path("standardized_images", slug), schemas.STANDARDIZED_IMAGES)
        inputs = index_inputs(images, read_table(layout.partition_path("captions", slug), schemas.CAPTIONS))
        changes = partition_changes(db_path, slug, inputs, model.run_id)
        rows = embedding_rows(model, changes.to_embed, config.batch_size, config.decode_threads)
        write = update_partition(db_path, slug, rows, changes.gone)
        ok_images = pc.sum(pc.equal(images["status"], "ok")).as_py() or 0
        if not ok_images:
            context.log.warning(f"{slug}: no standardized image with status ok ({images.num_rows} rows): nothing to index")
        metadata = table_metadata(
            inputs,
            db_path / f"{TABLE_NAME}.lance",
            model_run_id=model.run_id,
            model_dir=dg.MetadataValue.path(str(model.model_dir)),
            ok_images=ok_images,
            embedded=rows.num_rows,
            unchanged=changes.unchanged,
            inserted=write.inserted,
            updated=write.updated,
            deleted=write.deleted,
            table_version=write.version,
        )
        metadata["preview"] = dg.MetadataValue.md(markdown_preview(rows, skip=(VECTOR_COLUMN, "tags", "model_dir")))
        return dg.MaterializeResult(
            metadata=metadata,
            data_version=dg.DataVersion(fingerprint(model.run_id, table_fingerprint(inputs))),
            check_results=[check_result(INDEX_ROWS_EQUAL_IMAGES, row_counts_match(write.rows, ok_images))],
        )

    result = materialize_each(context, index_collection)
    state = ensure_indexes(db_path)  # the ANN index only once exact search would be too slow; once per run
    indexed = {"rows_in_table": state.rows, "vector_index": state.vector_index, "indexes_built": dg.MetadataValue.json(list(state.built))}
    return dg.MaterializeResult(
        metadata={**(result.metadata or {}), **indexed},
        data_version=result.data_version,
        check_results=result.check_results,
    )
