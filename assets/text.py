"""The `captions` asset: one templated caption per token, with its tags' exact phrases."""

import dagster as dg

from assets.batching import collection_asset
from assets.checks import check_result, check_spec
from assets.ingest import tokens
from assets.table_metadata import table_metadata
from nft_pipeline import schemas
from nft_pipeline.captions import captions_table, token_counter
from nft_pipeline.quality import no_empty_text
from nft_pipeline.storage import read_table, write_table
from nft_pipeline.versions import fingerprint, stored_fingerprint, table_fingerprint, with_fingerprint
from resources import DataDirResource, NftSourcesResource

# Bumped when a change of code changes the captions (nft_pipeline/versions.py).
CAPTIONS_CODE_VERSION = "1"
# What captions are made of: `captions_table` reads these columns of `tokens` (not its fetch times).
CAPTIONED_COLUMNS = ["collection", "token_id", "name", "attributes"]

NO_EMPTY_CAPTIONS = check_spec("captions", "no_empty_captions", "Every token has a non-blank caption.")


@collection_asset(
    group_name="text",
    kinds={"parquet"},
    deps=[tokens],
    check_specs=[NO_EMPTY_CAPTIONS],
    code_version=CAPTIONS_CODE_VERSION,
)
def captions(
    context: dg.AssetExecutionContext, data_dir: DataDirResource, sources: NftSourcesResource
) -> dg.MaterializeResult:
    """Sentence-template captions over the attributes; long attribute lists shortened to 77 tokens.

    Rebuilt only when the tokens' names or attributes changed (their fingerprint is the data version).
    """
    layout = data_dir.layout()
    entry = sources.entry(context.partition_key)
    tokens = read_table(layout.partition_path("tokens", entry.slug), schemas.TOKENS)
    version = fingerprint(CAPTIONS_CODE_VERSION, entry.name, token_counter(), table_fingerprint(tokens, CAPTIONED_COLUMNS))
    path = layout.partition_path("captions", entry.slug)
    if stored_fingerprint(path) == version:
        table, captioned = read_table(path, schemas.CAPTIONS), 0
    else:
        table = captions_table(tokens, entry.name)
        write_table(with_fingerprint(table, version), path, schemas.CAPTIONS)
        captioned = table.num_rows
    shortened = sum(table.column("shortened").to_pylist())
    statuses = dict(zip(*[c.to_pylist() for c in table.group_by("status").aggregate([("status", "count")]).columns]))
    examples = "\n".join(f"- {c}" for c in table.column("caption").to_pylist()[:5])
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata=table_metadata(
            table,
            path,
            status_counts=dg.MetadataValue.json(statuses),
            shortened=shortened,
            captioned=captioned,
            token_counter=token_counter(),
            max_text_tokens=max(table.column("n_text_tokens").to_pylist(), default=0),
            examples=dg.MetadataValue.md(examples),
        ),
        check_results=[check_result(NO_EMPTY_CAPTIONS, no_empty_text(table, "caption"))],
    )
