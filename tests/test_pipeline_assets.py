"""Every per-collection asset, then `clip_model`, materialized for real on small sample slices."""

from __future__ import annotations

import dagster as dg
import pytest
from PIL import Image

from nft_pipeline.definitions import ALL_ASSETS, PARTITIONED_ASSETS
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.storage import DataLayout
from resources import local_resources
from tests.conftest import temp_instance

SUPPLIES = {"cryptopunks": 160, "nouns": 120, "mixedmedia": 80}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    with running_gateway(SampleGateway(supplies=SUPPLIES)) as running, temp_instance(root / "dagster") as instance:
        resources = local_resources(running.base_url, root / "data")
        collections = next(a for a in ALL_ASSETS if a.key.path == ["collections"])
        assert dg.materialize([collections], instance=instance, resources=resources).success
        results = {
            slug: dg.materialize(PARTITIONED_ASSETS, partition_key=slug, instance=instance, resources=resources)
            for slug in SUPPLIES
        }
        yield {"layout": DataLayout(root / "data"), "instance": instance, "resources": resources, "results": results}


def test_every_partition_run_succeeds_with_passing_checks(pipeline):
    for slug, result in pipeline["results"].items():
        assert result.success, slug
        failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
        assert failed == [], (slug, failed)


def test_standardized_images_are_512_wide_pngs_for_every_downloaded_token(pipeline):
    layout = pipeline["layout"]
    rows = layout.query("SELECT collection, status, png_path, width, source_type FROM {standardized_images}").to_pylist()
    assert len(rows) == sum(SUPPLIES.values())
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["collection"] for r in ok} == set(SUPPLIES)
    assert all(r["width"] == 512 for r in ok)
    for row in ok[::17]:
        with Image.open(row["png_path"]) as image:
            assert image.format == "PNG" and image.width == 512
    mixed_types = {r["source_type"] for r in ok if r["collection"] == "mixedmedia"}
    assert {"image/png", "image/jpeg", "image/webp", "image/gif", "image/svg+xml", "video/mp4"} <= mixed_types


def test_captions_and_components_cover_the_collections(pipeline):
    layout = pipeline["layout"]
    captions = layout.query("SELECT collection, count(*) AS n FROM {captions} GROUP BY 1 ORDER BY 1").to_pylist()
    assert {r["collection"]: r["n"] for r in captions} == SUPPLIES
    punk0 = layout.query("SELECT caption FROM {captions} WHERE collection = 'cryptopunks' AND token_id = '0'").to_pylist()
    assert punk0[0]["caption"] == "CryptoPunk #0: a Female 2 with a Blonde Bob, Green Eye Shadow and an Earring."
    components = layout.query(
        "SELECT collection, count(*) FILTER (WHERE status = 'ok') AS ok FROM {components} GROUP BY 1"
    ).to_pylist()
    ok = {r["collection"]: r["ok"] for r in components}
    assert ok["cryptopunks"] >= 5 and ok["nouns"] >= 5


def test_clip_model_trains_and_records_its_run(pipeline):
    layout, instance, resources = pipeline["layout"], pipeline["instance"], pipeline["resources"]
    clip_model = next(a for a in ALL_ASSETS if a.key.path == ["clip_model"])
    config = {"ops": {"clip_model": {"config": {"collections": ["cryptopunks", "nouns"], "epochs": 2, "batch_size": 32}}}}
    result = dg.materialize([clip_model], instance=instance, resources=resources, run_config=config)
    assert result.success
    [run] = layout.query("SELECT * FROM {training_runs}").to_pylist()
    assert run["epochs"] == 2 and run["collections"] == ["cryptopunks", "nouns"]
    assert 0.0 <= run["fine_tuned_t2i_r10"] <= 1.0
    epochs = layout.query("SELECT epoch, train_loss FROM {training_epochs} ORDER BY epoch").to_pylist()
    assert [e["epoch"] for e in epochs] == [1, 2] and epochs[1]["train_loss"] < epochs[0]["train_loss"]
    assert (layout.root / "models" / run["run_id"] / "model" / "config.json").exists() or run["model_dir"]


def test_cvi_report_names_every_collection_for_both_models(pipeline):
    layout, instance, resources = pipeline["layout"], pipeline["instance"], pipeline["resources"]
    cvi_report = next(a for a in ALL_ASSETS if a.key.path == ["cvi_report"])
    result = dg.materialize([cvi_report], instance=instance, resources=resources)
    assert result.success
    rows = layout.query("SELECT collection, model, n_pairs, cvi, top1 FROM {cvi_report}").to_pylist()
    assert {(r["collection"], r["model"]) for r in rows} == {
        (c, m) for c in ("cryptopunks", "nouns") for m in ("zero_shot", "fine_tuned")
    }
    assert all(r["cvi"] > 0 and 0 <= r["top1"] <= 1 for r in rows)
    report = (layout.root / "reports" / "cvi" / "report.md").read_text()
    assert "cryptopunks" in report and "nouns" in report and "Best alpha" in report
    assert (layout.root / "reports" / "cvi" / "cvi_vs_top1.png").stat().st_size > 1000
