"""`raw_media` materialized for real against the sample gateway, and rerun incrementally."""

from __future__ import annotations

from collections import Counter

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets import ingest, media
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.samples.mixedmedia import Fault, fault_of
from nft_pipeline.storage import DataLayout
from resources import local_resources
from tests.conftest import temp_instance

EXPECTED_BY_FAULT = {
    Fault.IMAGE_404: "http_error",
    Fault.IMAGE_HTML_200: "bad_mime",
    Fault.IMAGE_TRUNCATED_PNG: "truncated",
    Fault.IMAGE_CONTENT_TYPE_LIES: "ok",
}


@pytest.fixture(scope="module")
def media_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    gateway = SampleGateway(supplies={"cryptopunks": 300, "nouns": 200})
    with running_gateway(gateway) as running, temp_instance(root / "dagster") as instance:
        resources = local_resources(running.base_url, root / "data")
        assert dg.materialize([ingest.collections], instance=instance, resources=resources).success
        for slug in ("cryptopunks", "nouns", "mixedmedia"):
            result = dg.materialize([ingest.tokens, media.raw_media], partition_key=slug, instance=instance, resources=resources)
            assert result.success
        yield {"layout": DataLayout(root / "data"), "instance": instance, "resources": resources, "gateway": gateway}


def rows_of(layout: DataLayout, slug: str) -> list[dict]:
    return layout.query("SELECT * FROM {raw_media} WHERE collection = ?", [slug]).to_pylist()


def test_every_token_has_an_image_row_and_good_media_is_stored(media_run):
    layout = media_run["layout"]
    for slug, supply, sniffed in (("cryptopunks", 300, {"image/png"}), ("nouns", 200, {"image/svg+xml"})):
        rows = [r for r in rows_of(layout, slug) if r["role"] == "image"]
        assert len(rows) == supply
        assert {r["status"] for r in rows} == {"ok"}
        assert {r["sniffed_type"] for r in rows} == sniffed
        assert all(layout.blobs.has(r["sha256"]) for r in rows)


def test_mixedmedia_faults_end_as_statuses_and_every_format_arrives(media_run):
    rows = [r for r in rows_of(media_run["layout"], "mixedmedia") if r["role"] == "image"]
    assert len(rows) == 600
    by_token = {int(r["token_id"]): r for r in rows}
    for token_id, row in by_token.items():
        fault = fault_of(token_id)
        if fault in EXPECTED_BY_FAULT:
            assert row["status"] == EXPECTED_BY_FAULT[fault], (token_id, fault, row)
    assert by_token[41]["sniffed_type"] == "image/jpeg" and by_token[41]["declared_type"].startswith("image/png")
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 550
    sniffed = Counter(r["sniffed_type"] for r in ok)
    assert set(sniffed) >= {"image/png", "image/jpeg", "image/webp", "image/gif", "image/svg+xml", "video/mp4"}
    failed = [r for r in rows if r["status"] != "ok"]
    assert all(r["error"] for r in failed)


def test_blobs_are_content_addressed_once(media_run):
    layout = media_run["layout"]
    shas = {r["sha256"] for r in layout.query("SELECT sha256 FROM {raw_media} WHERE status = 'ok'").to_pylist()}
    stored = {p.name for p in (layout.root / "blobs").glob("??/*")}
    assert stored == shas


def test_rematerializing_fetches_nothing_and_keeps_every_row(media_run):
    layout, instance, resources, gateway = (media_run[k] for k in ("layout", "instance", "resources", "gateway"))
    before = pq.read_table(layout.partition_path("raw_media", "mixedmedia"))
    ipfs_before = gateway.counters().requests["ipfs"]
    result = dg.materialize([media.raw_media], partition_key="mixedmedia", instance=instance, resources=resources)
    assert result.success
    assert gateway.counters().requests["ipfs"] == ipfs_before
    assert pq.read_table(layout.partition_path("raw_media", "mixedmedia")).equals(before)
    metadata = result.asset_materializations_for_node("raw_media")[0].metadata
    assert metadata["fetched"].value == 0 and metadata["reused"].value == before.num_rows
    assert not layout.journal_path("raw_media", "mixedmedia").exists()


def test_download_success_check_reports_the_rate_and_blocks_below_the_floor(media_run):
    instance, resources = media_run["instance"], media_run["resources"]
    strict = {"ops": {"raw_media": {"config": {"min_success_rate": 0.99}}}}
    result = dg.materialize(
        [media.raw_media], partition_key="mixedmedia", instance=instance, resources=resources,
        run_config=strict, raise_on_error=False,
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = evaluations["download_success_rate"]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.metadata["floor"].value == 0.99 and 0.9 < failed.metadata["success_rate"].value < 0.99
    assert evaluations["unique_media_rows"].passed


def test_cli_download_retries_only_the_failed_rows_with_a_progress_bar(media_run):
    import os
    import subprocess
    import sys

    layout, gateway = media_run["layout"], media_run["gateway"]
    failed = layout.query("SELECT count(*) AS n FROM {raw_media} WHERE collection = 'nouns' AND status <> 'ok'").to_pylist()[0]["n"]
    url = next(iter(media_run["resources"]["sources"].endpoints().values())).base_url
    env = {**os.environ, "NFT_PIPELINE_DATA": str(layout.root)}
    done = subprocess.run(
        [sys.executable, "-m", "nft_pipeline.cli", "download", "mixedmedia", "--retry-failed", "--gateway-url", url],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    )
    retried = layout.query("SELECT count(*) AS n FROM {raw_media} WHERE collection = 'mixedmedia' AND status <> 'ok'").to_pylist()[0]["n"]
    assert failed == 0 and f"fetched {retried}, reused" in done.stdout
    assert "mixedmedia media" in done.stderr and "file" in done.stderr  # the tqdm bar
    assert gateway.counters().requests["ipfs"] > 0
