"""Several collections in one run: the per-collection assets handle a partition range one collection at a time.

A run per collection pays the run's fixed cost (process start, imports, resources, event writes)
a thousand times a day at NFT1000's scale; a run over a range of N partitions pays it once per N
(docs/scale.md, "Cheap runs per collection"). Each per-collection asset carries
`BackfillPolicy.multi_run(COLLECTIONS_PER_RUN)`, so backfills from the UI, the automation sensor's
requests (grouped by backfill policy) and the discovery sensor and daily schedule
(`assets.automation`) all ask for ranges of at most that many collections.

Dagster (1.13) records one output per step, so in a range run:
- each collection's metadata goes to its own partition's materialization (`add_asset_metadata`
  with the partition key), and the run's output carries a table of every collection's counts;
- the data version is one for the range: a fingerprint of the collections' own versions, so a
  range whose collections all kept their versions keeps its version (the index is not re-requested);
- a collection that raises becomes a row with status `failed` and the reason, in the table and
  in its partition's metadata, and the others go on (one failing partition would fail the run);
- a check's result is one for the range: it fails if any collection's failed, names those
  collections, and warns instead of blocking (blocking would stop every collection of the range).
A one-partition run is exactly the asset's own result, per partition as before.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Any

import dagster as dg

from assets.partitions import collection_partitions
from nft_pipeline.reporting import markdown_table
from nft_pipeline.versions import fingerprint

# How many collections one run handles (backfill policy and the sensor's and schedule's ranges).
# At 25 a no-op range spent 0.13 s per collection outside steps against 3.1 s for one run each
# (docs/scale.md); larger ranges would save little more, and share one data version among more
# collections (one changed collection re-requests the index for its whole range). Other sizes
# were not measured.
COLLECTIONS_PER_RUN = int(os.environ.get("NFT_PIPELINE_COLLECTIONS_PER_RUN", "25"))
COLLECTION_BATCH = dg.BackfillPolicy.multi_run(max_partitions_per_run=COLLECTIONS_PER_RUN)
# The index's ranges are ten times larger. Its runs pay more per run (torch and the model load,
# the vector index is brought up to date once per run) and run one at a time (the `search_index`
# pool), while an unchanged collection costs it little (no embedding); and a daily refresh that
# touches 1% of the tokens changes the data version of nearly every pipeline range, so the index
# is asked for nearly every collection (docs/scale.md, "NFT1000 in miniature").
INDEX_COLLECTIONS_PER_RUN = int(os.environ.get("NFT_PIPELINE_INDEX_COLLECTIONS_PER_RUN", str(10 * COLLECTIONS_PER_RUN)))
INDEX_BATCH = dg.BackfillPolicy.multi_run(max_partitions_per_run=INDEX_COLLECTIONS_PER_RUN)
# `backfill_policy` is a beta parameter in Dagster 1.13; its warning would print once per asset on
# every import of the definitions (every CLI call, run and code server). Known and chosen: silenced.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
# Counts shown per collection in a range run's table: the metadata entries of these kinds.
COUNTED = (int, float, dg.IntMetadataValue, dg.FloatMetadataValue)
REASON_CHARS = 300


class OneCollectionContext:
    """The asset context of a range run seen as a run of one collection: `partition_key` is that
    collection, everything else is the run's context."""

    def __init__(self, context: dg.AssetExecutionContext, partition_key: str) -> None:
        self._context = context
        self.partition_key = partition_key
        self.partition_keys = [partition_key]
        self.has_partition_key = True
        self.has_partition_key_range = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def materialize_each(
    context: dg.AssetExecutionContext, materialize_one: Callable[[str], dg.MaterializeResult]
) -> dg.MaterializeResult:
    """`materialize_one(slug)` for each collection of the run: its own result in a one-partition
    run, the combined result (see the module docstring) in a range run."""
    keys = list(context.partition_keys)
    if len(keys) == 1:
        return materialize_one(keys[0])
    rows: list[dict[str, Any]] = []
    versions: list[str] = []
    checks: dict[dg.AssetCheckKey, list[tuple[str, dg.AssetCheckResult]]] = {}
    for slug in keys:
        try:
            result = materialize_one(slug)
        except Exception as error:  # noqa: BLE001 - a collection's failure is its row, not the range's
            reason = f"{type(error).__name__}: {error}"[:REASON_CHARS]
            context.log.error(f"{slug}: failed, the range goes on: {reason}")
            context.add_asset_metadata({"collection_status": "failed", "reason": reason}, partition_key=slug)
            rows.append({"collection": slug, "status": "failed", "reason": reason})
            versions.append(f"{slug}=failed")
            continue
        metadata = dict(result.metadata or {})
        context.add_asset_metadata({**metadata, "collection_status": "ok"}, partition_key=slug)
        counts = {k: _plain(v) for k, v in metadata.items() if isinstance(v, COUNTED) and not isinstance(v, bool)}
        rows.append({"collection": slug, "status": "ok", "reason": "", **counts})
        versions.append(f"{slug}={result.data_version.value if result.data_version else ''}")
        for check in result.check_results or []:
            checks.setdefault(dg.AssetCheckKey(check.asset_key, check.check_name), []).append((slug, check))
    failed = [row["collection"] for row in rows if row["status"] == "failed"]
    columns = list(dict.fromkeys(column for row in rows for column in row))
    metadata: dict[str, Any] = {
        "collections": len(keys),
        "collections_failed": len(failed),
        "failed_collections": dg.MetadataValue.json(failed),
        "per_collection": dg.MetadataValue.md(markdown_table([{c: row.get(c, "") for c in columns} for row in rows])),
    }
    return dg.MaterializeResult(
        metadata=metadata,
        data_version=dg.DataVersion(fingerprint(versions)),
        check_results=[_combined_check(key, results) for key, results in checks.items()],
    )


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, dg.MetadataValue) else value


def _combined_check(key: dg.AssetCheckKey, results: list[tuple[str, dg.AssetCheckResult]]) -> dg.AssetCheckResult:
    failing = [slug for slug, result in results if not result.passed]
    return dg.AssetCheckResult(
        check_name=key.name,
        asset_key=key.asset_key,
        passed=not failing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"collections_checked": len(results), "collections_failing": dg.MetadataValue.json(failing)},
    )


def collection_asset(**asset_arguments: Any) -> Callable[[Callable[..., dg.MaterializeResult]], dg.AssetsDefinition]:
    """`dg.asset` for an asset written for one collection (it reads `context.partition_key`):
    partitioned by collection, `COLLECTION_BATCH`, and in a range run called once per collection
    with a `OneCollectionContext`, its results combined by `materialize_each`."""

    def decorate(materialize: Callable[..., dg.MaterializeResult]) -> dg.AssetsDefinition:
        @functools.wraps(materialize)
        def each_collection(context: dg.AssetExecutionContext, *args: Any, **kwargs: Any) -> dg.MaterializeResult:
            if len(context.partition_keys) == 1:
                return materialize(context, *args, **kwargs)
            return materialize_each(
                context, lambda slug: materialize(OneCollectionContext(context, slug), *args, **kwargs)
            )

        return dg.asset(partitions_def=collection_partitions, backfill_policy=COLLECTION_BATCH, **asset_arguments)(
            each_collection
        )

    return decorate
