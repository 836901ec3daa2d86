"""Several collections in one run (assets/batching.py): a real range run, and the sensor's and schedule's range requests."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg
import pytest
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.automation import PIPELINE_JOB, catalog_discovery, collection_runs, daily_refresh
from assets.batching import COLLECTION_BATCH, COLLECTIONS_PER_RUN, INDEX_BATCH
from assets.index import nft_index
from assets.partitions import collection_partitions
from nft_pipeline.definitions import PARTITIONED_ASSETS, build_definitions
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.samples.nft1000_mini import generated_collections, write_catalog
from nft_pipeline.storage import DataLayout
from resources import NftSourcesResource, local_resources
from tests.conftest import temp_instance

BROKEN = "not-in-the-catalog"  # a partition whose collection the catalog no longer lists: `tokens` raises


def materializations(instance: dg.DagsterInstance, asset: str, run_id: str) -> dict[str, dict]:
    """Per partition, the metadata of `asset`'s materialization in `run_id`."""
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    return {
        r.partition_key: {k: v.value for k, v in r.asset_materialization.metadata.items()}
        for r in records
        if r.run_id == run_id
    }


def data_versions(instance: dg.DagsterInstance, asset: str, run_id: str) -> dict[str, str]:
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    return {r.partition_key: r.asset_materialization.tags[DATA_VERSION_TAG] for r in records if r.run_id == run_id}


@pytest.mark.slow
def test_a_range_run_materializes_every_collection_and_a_broken_one_becomes_a_row(tmp_path, monkeypatch):
    collections = generated_collections(4)
    catalog = write_catalog(collections, tmp_path / "catalog.csv")
    monkeypatch.setenv("NFT_PIPELINE_CATALOG", str(catalog))
    slugs = list(collections)
    partitions = [slugs[0], slugs[1], BROKEN, slugs[2], slugs[3]]
    with (
        running_gateway(SampleGateway(collections=collections)) as running,
        temp_instance(tmp_path / "dagster") as instance,
    ):
        defs = build_definitions(local_resources(running.base_url, tmp_path / "data"))
        job = defs.resolve_job_def(PIPELINE_JOB)
        instance.add_dynamic_partitions(collection_partitions.name, partitions)
        tags = {ASSET_PARTITION_RANGE_START_TAG: partitions[0], ASSET_PARTITION_RANGE_END_TAG: partitions[-1]}
        result = job.execute_in_process(instance=instance, tags=tags)
        assert result.success  # the broken collection did not fail the run

        tokens = materializations(instance, "tokens", result.run_id)
        assert sorted(tokens) == sorted(partitions)
        assert tokens[BROKEN]["collection_status"] == "failed" and "not a valid entry" in tokens[BROKEN]["reason"]
        layout = DataLayout(tmp_path / "data")
        for slug in slugs:
            assert tokens[slug]["collection_status"] == "ok"
            assert (
                tokens[slug]["dagster/row_count"] == collections[slug].default_supply
            )  # its own count, not the range's
            rows = layout.query(f"SELECT count(*) AS n FROM {{standardized_images}} WHERE collection = '{slug}'")["n"][
                0
            ].as_py()
            assert rows == collections[slug].default_supply
        for asset in ("raw_media", "standardized_images", "captions", "components"):
            assert sorted(materializations(instance, asset, result.run_id)) == sorted(partitions), asset

        [output] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("tokens")][:1]
        metadata = output.materialization.metadata
        assert metadata["collections"].value == 5 and metadata["collections_failed"].value == 1
        assert metadata["failed_collections"].value == [BROKEN]
        table = metadata["per_collection"].value
        assert all(f"| {slug} | ok |" in table for slug in slugs) and f"| {BROKEN} | failed |" in table

        # Again with nothing changed: every collection keeps its data version, so the range keeps its own.
        first_version = data_versions(instance, "captions", result.run_id)
        again = job.execute_in_process(instance=instance, tags=tags)
        assert again.success
        captions = materializations(instance, "captions", again.run_id)
        assert all(captions[slug]["captioned"] == 0 for slug in slugs)  # nothing recomputed
        assert data_versions(instance, "captions", again.run_id) == first_version


def test_every_per_collection_asset_of_the_job_takes_ranges():
    """A range run calls every asset of the job with several partitions: each must loop over them."""
    job_assets = build_definitions().resolve_job_def(PIPELINE_JOB).asset_layer.executable_asset_keys
    assert {a.key for a in PARTITIONED_ASSETS} == set(job_assets)
    for asset in PARTITIONED_ASSETS:
        assert asset.backfill_policy == COLLECTION_BATCH, asset.key
    # The index loops over its ranges too, in ranges of its own size (fewer, larger runs).
    assert nft_index.backfill_policy == INDEX_BATCH
    assert INDEX_BATCH.max_partitions_per_run > COLLECTION_BATCH.max_partitions_per_run


def range_of(request: dg.RunRequest) -> tuple[str, str]:
    if request.partition_key:
        return request.partition_key, request.partition_key
    return request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]


def test_the_schedule_and_the_sensor_request_ranges_of_collections(tmp_path):
    count = 2 * COLLECTIONS_PER_RUN + 1
    collections = generated_collections(count)
    catalog = write_catalog(collections, tmp_path / "catalog.csv")
    slugs = list(collections)
    with temp_instance(tmp_path / "dagster") as instance:
        context = dg.build_sensor_context(
            instance=instance, resources={"sources": NftSourcesResource(catalog=str(catalog))}
        )
        discovered = catalog_discovery(context)
        [add] = discovered.dynamic_partitions_requests
        assert list(add.partition_keys) == slugs
        ranges = [range_of(r) for r in discovered.run_requests]
        per_run = COLLECTIONS_PER_RUN
        assert ranges == [
            (slugs[0], slugs[per_run - 1]),
            (slugs[per_run], slugs[2 * per_run - 1]),
            (slugs[-1], slugs[-1]),
        ]
        assert len({r.run_key for r in discovered.run_requests}) == 3
        assert json.loads(discovered.cursor)["known"] == count

        instance.add_dynamic_partitions(collection_partitions.name, list(add.partition_keys))
        again = catalog_discovery(
            dg.build_sensor_context(instance=instance, resources={"sources": NftSourcesResource(catalog=str(catalog))})
        )
        assert again.run_requests == []

        schedule = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 12, 7, 4, tzinfo=UTC)
        )
        refresh = daily_refresh(schedule)
        assert [range_of(r) for r in refresh] == ranges
        assert all(
            r.tags["nft_pipeline/refresh"] == "2026-12-07" and r.run_key.startswith("refresh-2026-12-07-")
            for r in refresh
        )
        # Each range covers exactly its chunk of the partitions, in the order they were added.
        for request, start in zip(refresh, range(0, count, per_run), strict=True):
            first, last = range_of(request)
            with partition_loading_context(dynamic_partitions_store=instance):
                keys = collection_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
            assert keys == slugs[start : start + per_run]


def test_one_collection_is_a_plain_partition_run():
    [request] = collection_runs(["cryptopunks"], "discover")
    assert request.partition_key == "cryptopunks" and ASSET_PARTITION_RANGE_START_TAG not in request.tags
