"""Refresh schedule and catalog discovery sensor, evaluated and run for real."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import dagster as dg

from assets.automation import PIPELINE_JOB, catalog_discovery, daily_refresh
from assets.partitions import collection_partitions
from nft_pipeline.catalog import BUNDLED_CATALOGS
from nft_pipeline.definitions import build_definitions
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.storage import DataLayout
from resources import NftSourcesResource, local_resources
from tests.conftest import temp_instance


def test_daily_refresh_fetches_exactly_the_new_tokens(tmp_path):
    gateway = SampleGateway(supplies={"cryptopunks": 300})
    with running_gateway(gateway) as running, temp_instance(tmp_path / "dagster") as instance:
        defs = build_definitions(local_resources(running.base_url, tmp_path / "data"))
        job = defs.resolve_job_def(PIPELINE_JOB)
        instance.add_dynamic_partitions(collection_partitions.name, ["cryptopunks"])
        assert job.execute_in_process(partition_key="cryptopunks", instance=instance).success

        gateway.set_supply("cryptopunks", 350)
        gateway.reset_counters()
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime(2026, 11, 23, 4, tzinfo=UTC))
        [request] = list(daily_refresh(context))
        assert request.partition_key == "cryptopunks" and request.run_key == "refresh-2026-11-23-cryptopunks"
        started = time.perf_counter()
        assert job.execute_in_process(partition_key=request.partition_key, instance=instance, tags=request.tags).success
        refresh_seconds = time.perf_counter() - started

        counters = gateway.counters()
        fetched = sorted(counters.ipfs_paths)
        assert len(fetched) == 50 and all(count == 1 for count in counters.ipfs_paths.values())
        assert {path.rsplit("/", 1)[1] for path in fetched} == {f"{i}.png" for i in range(300, 350)}
        layout = DataLayout(tmp_path / "data")
        for table in ("tokens", "raw_media"):
            row = layout.query(f"SELECT count(*) AS n, count(DISTINCT token_id) AS ids FROM {{{table}}}").to_pylist()[0]
            assert row == {"n": 350, "ids": 350}, table
    print(f"refresh of 300 -> 350 punks took {refresh_seconds:.1f} s")


def test_discovery_sensor_adds_new_collections_and_keeps_removed_ones(tmp_path):
    catalog = tmp_path / "catalog.csv"
    rows = BUNDLED_CATALOGS["samples"].read_text().splitlines()
    catalog.write_text("\n".join(rows[:3]) + "\n")  # header + cryptopunks + nouns
    with temp_instance(tmp_path / "dagster") as instance:
        context = dg.build_sensor_context(instance=instance, resources={"sources": NftSourcesResource(catalog=str(catalog))})
        first = catalog_discovery(context)
        assert sorted(r.partition_key for r in first.run_requests) == ["cryptopunks", "nouns"]
        instance.add_dynamic_partitions(collection_partitions.name, ["cryptopunks", "nouns"])

        catalog.write_text("\n".join([rows[0], rows[1], rows[3]]) + "\n")  # nouns removed, mixedmedia added
        second = catalog_discovery(dg.build_sensor_context(instance=instance, resources={"sources": NftSourcesResource(catalog=str(catalog))}))
        assert [r.partition_key for r in second.run_requests] == ["mixedmedia"]
        [add] = second.dynamic_partitions_requests
        assert list(add.partition_keys) == ["mixedmedia"]
        assert '"removed": ["nouns"]' in second.cursor
        assert "nouns" in instance.get_dynamic_partitions(collection_partitions.name)  # kept
