"""The `captions` asset: one templated caption per token, with its tags' exact phrases."""

import dagster as dg

from assets.checks import check_result, check_spec
from assets.ingest import tokens
from assets.partitions import collection_partitions
from assets.table_metadata import table_metadata
from nft_pipeline import schemas
from nft_pipeline.captions import captions_table
from nft_pipeline.quality import no_empty_text
from nft_pipeline.storage import read_table, write_table
from resources import DataDirResource, NftSourcesResource

NO_EMPTY_CAPTIONS = check_spec("captions", "no_empty_captions", "Every token has a non-blank caption.")


@dg.asset(
    group_name="text",
    kinds={"parquet"},
    partitions_def=collection_partitions,
    deps=[tokens],
    check_specs=[NO_EMPTY_CAPTIONS],
)
def captions(
    context: dg.AssetExecutionContext, data_dir: DataDirResource, sources: NftSourcesResource
) -> dg.MaterializeResult:
    """Sentence-template captions over the attributes; long attribute lists shortened to 77 tokens."""
    layout = data_dir.layout()
    entry = sources.entry(context.partition_key)
    table = captions_table(read_table(layout.partition_path("tokens", entry.slug), schemas.TOKENS), entry.name)
    path = write_table(table, layout.partition_path("captions", entry.slug), schemas.CAPTIONS)
    shortened = sum(table.column("shortened").to_pylist())
    statuses = dict(zip(*[c.to_pylist() for c in table.group_by("status").aggregate([("status", "count")]).columns]))
    examples = "\n".join(f"- {c}" for c in table.column("caption").to_pylist()[:5])
    return dg.MaterializeResult(
        metadata=table_metadata(
            table,
            path,
            status_counts=dg.MetadataValue.json(statuses),
            shortened=shortened,
            token_counter=table.schema.metadata[b"token_counter"].decode(),
            max_text_tokens=max(table.column("n_text_tokens").to_pylist(), default=0),
            examples=dg.MetadataValue.md(examples),
        ),
        check_results=[check_result(NO_EMPTY_CAPTIONS, no_empty_text(table, "caption"))],
    )
