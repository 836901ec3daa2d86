"""Refresh schedule, catalog discovery sensor and the index's automation condition, evaluated and run for real."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.automation import PIPELINE_JOB, automation_conditions, catalog_discovery, daily_refresh
from assets.index import nft_index
from assets.model import clip_model
from assets.partitions import collection_partitions
from nft_pipeline.catalog import BUNDLED_CATALOGS
from nft_pipeline.definitions import build_definitions
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.index import lance_path, partition_row_count
from nft_pipeline.storage import DataLayout
from resources import NftSourcesResource, local_resources
from tests.conftest import temp_instance
from tests.tiny_model import one_torch_thread

INDEX = dg.AssetKey("nft_index")


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
        [both] = first.run_requests  # one run over the range of the new partitions (assets/batching.py)
        assert (both.tags[ASSET_PARTITION_RANGE_START_TAG], both.tags[ASSET_PARTITION_RANGE_END_TAG]) == ("cryptopunks", "nouns")
        instance.add_dynamic_partitions(collection_partitions.name, ["cryptopunks", "nouns"])

        catalog.write_text("\n".join([rows[0], rows[1], rows[3]]) + "\n")  # nouns removed, mixedmedia added
        second = catalog_discovery(dg.build_sensor_context(instance=instance, resources={"sources": NftSourcesResource(catalog=str(catalog))}))
        assert [r.partition_key for r in second.run_requests] == ["mixedmedia"]
        [add] = second.dynamic_partitions_requests
        assert list(add.partition_keys) == ["mixedmedia"]
        assert '"removed": ["nouns"]' in second.cursor
        assert "nouns" in instance.get_dynamic_partitions(collection_partitions.name)  # kept


def test_the_automation_sensor_runs_by_default_and_covers_the_index():
    defs = build_definitions()
    sensor = defs.resolve_sensor_def(automation_conditions.name)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert INDEX in sensor.asset_selection.resolve(defs.resolve_asset_graph())
    # Declared under the default name, Dagster adds no second (stopped) automation sensor beside it.
    sensors = sorted(sensor.name for sensor in defs.get_repository_def().sensor_defs)
    assert sensors == [catalog_discovery.name, automation_conditions.name]


def test_the_index_follows_refreshed_partitions_and_new_models_once_a_model_exists(tmp_path):
    """Ticks of the automation sensor's evaluation between real runs: nothing before a model
    exists, every partition after one, none once indexed, only the refreshed partition after a
    refresh and once no run of the pipeline is left, every partition after the model is trained again."""
    gateway = SampleGateway(supplies={"cryptopunks": 12, "nouns": 12})
    training = {"ops": {"clip_model": {"config": {"collections": ["cryptopunks", "nouns"], "epochs": 1, "batch_size": 16, "split": "by_token"}}}}
    with (
        running_gateway(gateway) as running,
        temp_instance(tmp_path / "dagster") as instance,
        one_torch_thread(),
    ):
        resources = local_resources(running.base_url, tmp_path / "data")
        defs = build_definitions(resources)
        job = defs.resolve_job_def(PIPELINE_JOB)
        cursor = None

        def tick() -> set[str | None]:
            nonlocal cursor
            result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
            cursor = result.cursor
            requested = set(result.get_requested_partitions(INDEX))
            assert result.total_requested == len(requested)  # nothing but the index automates
            return requested

        def materialize(asset: dg.AssetsDefinition, partition: str | None = None, run_config: dict | None = None) -> None:
            result = dg.materialize([asset], partition_key=partition, instance=instance, resources=resources, run_config=run_config)
            assert result.success

        instance.add_dynamic_partitions(collection_partitions.name, ["cryptopunks", "nouns"])
        assert tick() == set()
        for slug in ("cryptopunks", "nouns"):
            assert job.execute_in_process(partition_key=slug, instance=instance).success
        assert tick() == set()  # images and captions updated, but there is no model to index with
        assert tick() == set()  # nor on later ticks

        materialize(clip_model, run_config=training)
        assert tick() == {"cryptopunks", "nouns"}
        for slug in ("cryptopunks", "nouns"):
            materialize(nft_index, partition=slug)
        assert tick() == set()  # indexed: nothing changed since

        assert job.execute_in_process(partition_key="cryptopunks", instance=instance).success
        assert tick() == set()  # a refresh that changed nothing: same data versions, no index run

        gateway.set_supply("nouns", 15)  # the daily refresh finds 3 new nouns
        assert job.execute_in_process(partition_key="nouns", instance=instance).success
        # Another run of the refresh has not finished (created, not started): the index waits for
        # it, then asks for nouns.
        waiting = instance.create_run_for_job(job, tags={"dagster/partition": "cryptopunks"})
        assert waiting.status == dg.DagsterRunStatus.NOT_STARTED
        assert tick() == set()
        assert tick() == set()
        instance.report_run_canceled(waiting)
        assert tick() == {"nouns"}
        materialize(nft_index, partition="nouns")
        layout = DataLayout(tmp_path / "data")
        [ok] = layout.query("SELECT count(*) AS n FROM {standardized_images} WHERE collection = 'nouns' AND status = 'ok'")["n"].to_pylist()
        assert partition_row_count(lance_path(tmp_path / "data"), "nouns") == ok == 15  # the new tokens are searchable
        assert tick() == set()

        materialize(clip_model, run_config=training)  # the model materialized again: every partition again
        assert tick() == {"cryptopunks", "nouns"}
