"""Unchanged inputs, no work, for the classification assets (issues #16, #18).

Real materializations of the per-collection assets on a temporary instance against the sample
gateway: the second with the same source computes no colour, prediction or audit row, rewrites
none of their tables and reports the same data versions; one token added at the source makes all
three recompute, under new data versions. In a range run (several collections, one data version
for the range: assets/batching.py) the same holds per collection and for the range's version.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.automation import PIPELINE_JOB
from assets.partitions import collection_partitions
from nft_pipeline.definitions import ALL_ASSETS, PARTITIONED_ASSETS, build_definitions
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.storage import DataLayout
from resources import local_resources
from tests.conftest import temp_instance

SLUG = "nouns"
CLASSIFY = ("trait_predictions", "token_colours", "token_audit")
TABLES = (*CLASSIFY, "trait_evaluation")


def computed_and_versions(result: dg.ExecuteInProcessResult) -> tuple[dict[str, int], dict[str, str]]:
    """Per classification asset: the rows it computed, and the data version it recorded."""
    computed, versions = {}, {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        name = materialization.asset_key.to_user_string()
        if name in CLASSIFY:
            computed[name] = materialization.metadata["rows_computed"].value
            versions[name] = materialization.tags["dagster/data_version"]
    return computed, versions


def table_mtimes(layout: DataLayout) -> dict[str, int]:
    return {name: layout.partition_path(name, SLUG).stat().st_mtime_ns for name in TABLES}


def test_classification_with_unchanged_inputs_computes_nothing(tmp_path):
    gateway = SampleGateway(supplies={SLUG: 30})
    collections = next(a for a in ALL_ASSETS if a.key.path == ["collections"])
    with running_gateway(gateway) as running, temp_instance(tmp_path / "dagster") as instance:
        resources = local_resources(running.base_url, tmp_path / "data")
        layout = DataLayout(tmp_path / "data")
        assert dg.materialize([collections], instance=instance, resources=resources).success

        def refresh() -> tuple[dict[str, int], dict[str, str]]:
            result = dg.materialize(PARTITIONED_ASSETS, partition_key=SLUG, instance=instance, resources=resources)
            assert result.success
            return computed_and_versions(result)

        computed, versions = refresh()
        assert all(computed[name] > 0 for name in CLASSIFY), computed
        mtimes = table_mtimes(layout)

        unchanged, unchanged_versions = refresh()
        assert unchanged == {name: 0 for name in CLASSIFY}
        assert unchanged_versions == versions
        assert table_mtimes(layout) == mtimes  # no table written again

        gateway.set_supply(SLUG, 31)  # one new token at the source
        recomputed, new_versions = refresh()
        assert recomputed["token_colours"] == 31 and recomputed["token_audit"] == 31 and recomputed["trait_predictions"] > 0
        assert all(new_versions[name] != versions[name] for name in CLASSIFY)
        assert all(table_mtimes(layout)[name] != mtimes[name] for name in TABLES)


def range_computed_and_versions(instance: dg.DagsterInstance, run_id: str) -> tuple[dict, dict]:
    """Per (classification asset, collection) of the range run: rows computed, data version recorded."""
    computed, versions = {}, {}
    for name in CLASSIFY:
        for record in instance.fetch_materializations(dg.AssetKey(name), limit=100).records:
            if record.run_id == run_id:
                computed[name, record.partition_key] = record.asset_materialization.metadata["rows_computed"].value
                versions[name, record.partition_key] = record.asset_materialization.tags[DATA_VERSION_TAG]
    return computed, versions


def test_a_range_run_with_unchanged_inputs_keeps_its_versions_and_computes_nothing(tmp_path):
    slugs = ["mixedmedia", "nouns"]
    gateway = SampleGateway(supplies={"mixedmedia": 24, "nouns": 24})
    with running_gateway(gateway) as running, temp_instance(tmp_path / "dagster") as instance:
        job = build_definitions(local_resources(running.base_url, tmp_path / "data")).resolve_job_def(PIPELINE_JOB)
        instance.add_dynamic_partitions(collection_partitions.name, slugs)
        tags = {ASSET_PARTITION_RANGE_START_TAG: slugs[0], ASSET_PARTITION_RANGE_END_TAG: slugs[-1]}

        def refresh() -> tuple[dict, dict]:
            result = job.execute_in_process(instance=instance, tags=tags)
            assert result.success
            return range_computed_and_versions(instance, result.run_id)

        computed, versions = refresh()
        assert sorted(computed) == sorted((name, slug) for name in CLASSIFY for slug in slugs)
        assert all(n > 0 for n in computed.values()), computed
        unchanged, unchanged_versions = refresh()
        assert set(unchanged.values()) == {0}
        assert unchanged_versions == versions

        gateway.set_supply("nouns", 25)  # one new token in one collection of the range
        recomputed, new_versions = refresh()
        assert all(recomputed[name, "nouns"] > 0 and recomputed[name, "mixedmedia"] == 0 for name in CLASSIFY), recomputed
        assert all(new_versions[key] != versions[key] for key in versions)  # the range's version is one for both
