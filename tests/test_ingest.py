"""Discovery assets materialized for real: catalog -> partitions -> tokens, read back with DuckDB."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets import ingest
from assets.partitions import collection_partitions
from nft_pipeline.storage import DataLayout
from resources import local_resources
from tests.conftest import temp_instance

PUNK_TYPES = {
    "Male 1": 1723, "Male 2": 1857, "Male 3": 1861, "Male 4": 598, "Female 1": 1101, "Female 2": 1174,
    "Female 3": 1145, "Female 4": 420, "Zombie": 88, "Ape": 24, "Alien": 9,
}
PUNKS_JSONL = Path(__file__).resolve().parent.parent / "nft_pipeline/samples/data/cryptopunks/metadata.jsonl"


@pytest.fixture(scope="module")
def materialized(gateway, tmp_path_factory):
    """`collections`, then `tokens` for every registered partition, on one temporary instance."""
    root = tmp_path_factory.mktemp("ingest")
    resources = local_resources(gateway.base_url, root / "data")
    with temp_instance(root / "dagster") as instance:
        result = dg.materialize([ingest.collections], instance=instance, resources=resources)
        assert result.success
        partitions = instance.get_dynamic_partitions(collection_partitions.name)
        for key in partitions:
            assert dg.materialize([ingest.tokens], partition_key=key, instance=instance, resources=resources).success
        yield {"layout": DataLayout(root / "data"), "instance": instance, "resources": resources, "partitions": partitions}


def test_collections_asset_registers_a_partition_per_sample(materialized):
    assert sorted(materialized["partitions"]) == ["cryptopunks", "mixedmedia", "nouns"]
    rows = materialized["layout"].query("SELECT slug, status, total_supply, token_type FROM {collections}").to_pylist()
    by_slug = {r["slug"]: r for r in rows}
    assert {r["status"] for r in rows} == {"ok"}
    assert by_slug["cryptopunks"]["total_supply"] == 10_000
    assert by_slug["nouns"]["total_supply"] == 1_000


def test_cryptopunks_tokens_have_the_readme_attribute_counts(materialized):
    layout = materialized["layout"]
    types = layout.query(
        "SELECT a.value, count(*) AS n FROM (SELECT unnest(attributes) AS a FROM {tokens} "
        "WHERE collection = 'cryptopunks') WHERE a.trait_type = 'Type' GROUP BY a.value"
    ).to_pylist()
    assert {r["value"]: r["n"] for r in types} == PUNK_TYPES
    summary = layout.query(
        "SELECT count(*) AS n, count(DISTINCT token_id) AS ids, sum(len(attributes)) AS attrs, "
        "count(*) FILTER (WHERE metadata_status = 'ok') AS ok FROM {tokens} WHERE collection = 'cryptopunks'"
    ).to_pylist()[0]
    expected_attrs = sum(len(json.loads(line)["attributes"]) for line in PUNKS_JSONL.open())
    assert summary == {"n": 10_000, "ids": 10_000, "attrs": expected_attrs, "ok": 10_000}
    accessories = layout.query(
        "SELECT count(DISTINCT a.value) AS n FROM (SELECT unnest(attributes) AS a FROM {tokens} "
        "WHERE collection = 'cryptopunks') WHERE a.trait_type = 'Accessory'"
    ).to_pylist()[0]["n"]
    assert accessories == 87


def test_nouns_tokens_come_from_data_uris(materialized):
    rows = materialized["layout"].query(
        "SELECT token_id, token_uri, image_uri, attributes FROM {tokens} WHERE collection = 'nouns'"
    ).to_pylist()
    assert len(rows) == 1_000
    assert all(r["token_uri"].startswith("data:application/json;base64,") for r in rows)
    assert all(r["image_uri"].startswith("data:image/svg+xml;base64,") for r in rows)
    assert all([a["trait_type"] for a in r["attributes"]] == ["background", "body", "accessory", "head", "glasses"] for r in rows)


def test_messy_mixedmedia_metadata_is_recorded_not_fatal(materialized):
    layout = materialized["layout"]
    rows = layout.query("SELECT * FROM {tokens} WHERE collection = 'mixedmedia'").to_pylist()
    statuses = Counter(r["metadata_status"] for r in rows)
    sources = Counter(r["metadata_source"] for r in rows)
    attributes = Counter(r["attributes_status"] for r in rows)
    assert len(rows) == 600
    assert statuses["ok"] > 500
    assert {"recovered", "fetch_error", "invalid_json"} <= set(statuses)
    assert sources["token_uri"] >= 50  # tokens whose metadata the source did not inline
    assert {"missing", "not_a_list", "repaired"} <= set(attributes)
    failed = [r for r in rows if r["metadata_status"] not in ("ok", "recovered")]
    assert all(r["metadata_error"] for r in failed)


def test_rematerializing_a_partition_gives_the_same_rows(materialized):
    layout, instance, resources = materialized["layout"], materialized["instance"], materialized["resources"]
    path = layout.partition_path("tokens", "mixedmedia")
    before = pq.read_table(path)
    result = dg.materialize([ingest.tokens], partition_key="mixedmedia", instance=instance, resources=resources)
    assert result.success
    after = pq.read_table(path)
    assert after.equals(before)
    materialization = result.asset_materializations_for_node("tokens")[0]
    assert materialization.metadata["new_tokens"].value == 0
    assert materialization.metadata["token_uri_reused"].value > 0
    assert materialization.metadata["dagster/row_count"].value == 600


def test_uniqueness_checks_pass_on_every_partition(materialized):
    instance, resources = materialized["instance"], materialized["resources"]
    result = dg.materialize([ingest.tokens], partition_key="nouns", instance=instance, resources=resources)
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == "unique_token_ids" and evaluation.passed
    assert evaluation.metadata["rows"].value == 1000 and evaluation.metadata["duplicate_rows"].value == 0
