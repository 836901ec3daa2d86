"""Ingest assets: the `collections` catalog table and the per-collection `tokens` table."""


from collections import Counter
from datetime import UTC, datetime

import dagster as dg

from assets.batching import collection_asset
from assets.checks import check_result, check_spec
from assets.partitions import collection_partitions
from assets.table_metadata import table_metadata
from nft_pipeline import schemas
from nft_pipeline.discovery import collections_table, discover_collection_tokens
from nft_pipeline.quality import unique_keys
from nft_pipeline.storage import read_table, write_table
from nft_pipeline.versions import table_fingerprint
from resources import DataDirResource, HttpResource, NftSourcesResource

UNIQUE_SLUGS = check_spec("collections", "unique_slugs", "Each catalog slug appears once.")
UNIQUE_TOKENS = check_spec("tokens", "unique_token_ids", "No (collection, token_id) appears twice.")


@dg.asset(group_name="ingest", kinds={"parquet"}, check_specs=[UNIQUE_SLUGS])
def collections(
    context: dg.AssetExecutionContext, data_dir: DataDirResource, http: HttpResource, sources: NftSourcesResource
) -> dg.MaterializeResult:
    """Catalog entries enriched with contract metadata; registers each valid slug as a partition."""
    entries = sources.entries()
    table = collections_table(entries, sources.endpoints(), http.limits(), datetime.now(UTC))
    path = write_table(table, data_dir.layout().table_path("collections"), schemas.COLLECTIONS)
    known = set(context.instance.get_dynamic_partitions(collection_partitions.name))
    new = [e.slug for e in entries if e.problem is None and e.slug not in known]
    if new:
        context.instance.add_dynamic_partitions(collection_partitions.name, new)
        context.log.info(f"registered {len(new)} new collection partition(s): {', '.join(new[:20])}")
    statuses = Counter(table.column("status").to_pylist())
    return dg.MaterializeResult(
        metadata=table_metadata(table, path, status_counts=dict(statuses), new_partitions=len(new)),
        check_results=[check_result(UNIQUE_SLUGS, unique_keys(table, ["slug"]))],
    )


@collection_asset(
    group_name="ingest",
    kinds={"parquet"},
    deps=[collections],
    check_specs=[UNIQUE_TOKENS],
)
def tokens(
    context: dg.AssetExecutionContext, data_dir: DataDirResource, http: HttpResource, sources: NftSourcesResource
) -> dg.MaterializeResult:
    """One row per token with normalized attributes and metadata, and why metadata is missing."""
    entry = sources.entry(context.partition_key)
    path = data_dir.layout().partition_path("tokens", entry.slug)
    previous = read_table(path, schemas.TOKENS)

    logged = 0

    def log_progress(n: int) -> None:
        # Every 2,000 tokens, so only a long listing logs: a log line is an event-log row, and at
        # NFT1000's scale most collections list in one or two pages.
        nonlocal logged
        if n - logged >= 2000:
            logged = n
            context.log.info(f"{entry.slug}: {n} tokens listed")

    table, report = discover_collection_tokens(
        entry, sources.endpoint(entry.source), http.limits(), previous, datetime.now(UTC), log_progress
    )
    write_table(table, path, schemas.TOKENS)
    known = set(previous.column("token_id").to_pylist())
    new_tokens = sum(1 for token_id in table.column("token_id").to_pylist() if token_id not in known)
    return dg.MaterializeResult(
        # What the source said, without the discovery times: an unchanged listing keeps its version.
        data_version=dg.DataVersion(table_fingerprint(table, [n for n in table.schema.names if n != "discovered_at"])),
        metadata=table_metadata(table, path, new_tokens=new_tokens, **report.as_dict()),
        check_results=[check_result(UNIQUE_TOKENS, unique_keys(table, ["collection", "token_id"]))],
    )
