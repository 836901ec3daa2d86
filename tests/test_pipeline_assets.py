"""Every per-collection asset, then `clip_model`, `cvi_report` and `nft_index`, materialized for real on small
sample slices; then the index searched through the library and the `nft-pipeline search` command."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from PIL import Image

from assets.automation import PIPELINE_JOB
from assets.partitions import collection_partitions
from nft_pipeline import schemas
from nft_pipeline.definitions import ALL_ASSETS, PARTITIONED_ASSETS, defs
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.index import lance_path, open_table, partition_row_count
from nft_pipeline.search import NftSearch
from nft_pipeline.storage import DataLayout, read_table, write_table
from nft_pipeline.train.tables import trained_run
from resources import local_resources
from tests.conftest import temp_instance
from tests.tiny_model import TINY

SUPPLIES = {"cryptopunks": 160, "nouns": 120, "mixedmedia": 80}
REPO = Path(__file__).resolve().parent.parent


def asset(name: str) -> dg.AssetsDefinition:
    return next(a for a in ALL_ASSETS if a.key.path == [name])


def check_evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    with running_gateway(SampleGateway(supplies=SUPPLIES)) as running, temp_instance(root / "dagster") as instance:
        resources = local_resources(running.base_url, root / "data")
        assert dg.materialize([asset("collections")], instance=instance, resources=resources).success
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


# Explicit, so the test does not move with TrainConfig's defaults (made for fine-tuning a pretrained
# CLIP); the tests' small tiny shape (tests/tiny_model.py), so training takes seconds, not minutes.
TRAINING = {
    "collections": ["cryptopunks", "nouns"],
    "epochs": 2,
    "batch_size": 32,
    "split": "by_token",
    "learning_rate": 1e-3,
    "num_workers": 0,
    **{name: getattr(TINY, name) for name in ("tiny_image_size", "tiny_patch_size", "tiny_width", "tiny_layers", "tiny_heads", "tiny_projection_dim")},
}


@pytest.fixture(scope="module")
def trained(pipeline) -> dg.ExecuteInProcessResult:
    """`clip_model` materialized once per module, for whichever test needs a model first (any order)."""
    config = {"ops": {"clip_model": {"config": TRAINING}}}
    return dg.materialize([asset("clip_model")], instance=pipeline["instance"], resources=pipeline["resources"], run_config=config)


@pytest.fixture(scope="module")
def indexed(pipeline, trained) -> None:
    """Every partition indexed with the trained model, for the tests that search."""
    for slug in SUPPLIES:
        assert materialize_index(pipeline, slug).success, slug


def test_clip_model_config_is_train_config_field_for_field():
    from assets.model import ClipModelConfig
    from nft_pipeline.train.config import TrainConfig

    defaults = ClipModelConfig()
    assert set(ClipModelConfig.model_fields) == {f.name for f in dataclasses.fields(TrainConfig)} | {"collections", "max_examples"}
    assert defaults.train_config() == TrainConfig()  # same defaults: the asset and the library cannot drift
    changed = ClipModelConfig(epochs=4, split_ratios=[0.7, 0.1, 0.2], split="by_token").train_config()
    assert (changed.epochs, changed.split_ratios, changed.split) == (4, (0.7, 0.1, 0.2), "by_token")


def test_clip_model_trains_and_records_its_run(pipeline, trained):
    layout = pipeline["layout"]
    assert trained.success
    checks = check_evaluations(trained)
    assert sorted(checks) == ["fine_tuned_metrics_present", "losses_finite", "run_finished"]
    assert all(check.passed for check in checks.values())
    assert checks["run_finished"].metadata["rows"].value == checks["run_finished"].metadata["expected"].value == 2
    [run] = layout.query("SELECT * FROM {training_runs}").to_pylist()
    assert run["epochs"] == 2 and run["collections"] == ["cryptopunks", "nouns"]
    assert 0.0 <= run["fine_tuned_t2i_r10"] <= 1.0
    epochs = layout.query("SELECT epoch, train_loss FROM {training_epochs} ORDER BY epoch").to_pylist()
    assert [e["epoch"] for e in epochs] == [1, 2] and epochs[1]["train_loss"] < epochs[0]["train_loss"]
    messages = [entry.user_message for entry in pipeline["instance"].all_logs(trained.run_id)]
    assert any(f"run {run['run_id']} epoch 2:" in message for message in messages)  # progress shows in the UI
    model_dir = layout.root / "models" / run["run_id"] / "model"
    assert Path(run["model_dir"]) == model_dir and (model_dir / "config.json").exists()
    assert trained_run(layout) == trained_run(layout, run["run_id"]) == run  # the model nft_index and cvi_report use
    with pytest.raises(LookupError, match="'elsewhere'"):
        trained_run(layout, "elsewhere")


def test_without_a_training_run_there_is_no_model_to_use(tmp_path):
    with pytest.raises(LookupError, match="materialize `clip_model` first"):
        trained_run(DataLayout(tmp_path / "data"))


def test_cvi_report_names_every_collection_for_both_models(pipeline, trained):
    layout, instance, resources = pipeline["layout"], pipeline["instance"], pipeline["resources"]
    result = dg.materialize([asset("cvi_report")], instance=instance, resources=resources)
    assert result.success
    rows = layout.query("SELECT collection, in_training, model, n_pairs, cvi, top1 FROM {cvi_report}").to_pylist()
    assert {(r["collection"], r["model"]) for r in rows} == {
        (c, m) for c in SUPPLIES for m in ("zero_shot", "fine_tuned")
    }  # the model trained on punks and nouns; mixedmedia is held out
    assert {r["collection"]: r["in_training"] for r in rows} == {"cryptopunks": True, "nouns": True, "mixedmedia": False}
    assert all(r["cvi"] > 0 and 0 <= r["top1"] <= 1 for r in rows)
    report = (layout.root / "reports" / "cvi" / "report.md").read_text()
    assert all(collection in report for collection in SUPPLIES) and "Best alpha" in report

    only_nouns = {"ops": {"cvi_report": {"config": {"collections": ["nouns"]}}}}
    assert dg.materialize([asset("cvi_report")], instance=instance, resources=resources, run_config=only_nouns).success
    assert layout.query("SELECT DISTINCT collection FROM {cvi_report}").to_pylist() == [{"collection": "nouns"}]
    typo = {"ops": {"cvi_report": {"config": {"collections": ["noun"]}}}}
    failed = dg.materialize([asset("cvi_report")], instance=instance, resources=resources, run_config=typo, raise_on_error=False)
    assert not failed.success and "no collection partition named ['noun']" in str(failed.all_events)
    assert (layout.root / "reports" / "cvi" / "cvi_vs_top1.png").stat().st_size > 1000


def test_the_collection_job_and_daily_refresh_leave_the_index_to_follow_the_model():
    selected = defs.resolve_job_def(PIPELINE_JOB).asset_layer.executable_asset_keys
    assert dg.AssetKey("nft_index") not in selected  # it needs a trained model, which the refresh runs before
    assert selected == {a.key for a in PARTITIONED_ASSETS} >= {dg.AssetKey("standardized_images"), dg.AssetKey("captions")}


def materialize_index(pipeline, slug: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [asset("nft_index")], partition_key=slug, instance=pipeline["instance"], resources=pipeline["resources"],
        raise_on_error=False,
    )


def ok_images(layout: DataLayout) -> dict[str, int]:
    rows = layout.query("SELECT collection, count(*) FILTER (WHERE status = 'ok') AS n FROM {standardized_images} GROUP BY 1")
    return {r["collection"]: r["n"] for r in rows.to_pylist()}


def test_nft_index_holds_one_row_per_ok_image_even_when_rerun(pipeline, trained):
    layout = pipeline["layout"]
    db_path = lance_path(layout.root)
    expected = ok_images(layout)
    for slug in SUPPLIES:
        result = materialize_index(pipeline, slug)
        assert result.success, slug
        check = check_evaluations(result)["index_rows_equal_images"]
        assert check.passed and check.metadata["rows"].value == expected[slug] > 0, slug
        metadata = result.asset_materializations_for_node("nft_index")[0].metadata
        assert metadata["dagster/row_count"].value == metadata["ok_images"].value == expected[slug]
    assert {slug: partition_row_count(db_path, slug) for slug in SUPPLIES} == expected
    [run_id] = layout.query("SELECT run_id FROM {training_runs}")["run_id"].to_pylist()
    table = open_table(db_path)
    assert set(table.to_arrow().column("model_run_id").to_pylist()) == {run_id}
    assert "caption" in {index.columns[0] for index in table.list_indices()}  # the full-text index

    rerun = materialize_index(pipeline, "cryptopunks")
    assert rerun.success
    metadata = rerun.asset_materializations_for_node("nft_index")[0].metadata
    assert (metadata["inserted"].value, metadata["updated"].value, metadata["deleted"].value) == (0, 0, 0)
    assert (metadata["embedded"].value, metadata["unchanged"].value) == (0, expected["cryptopunks"])  # nothing changed
    assert metadata["rows_in_table"].value == table.count_rows() == sum(expected.values())
    assert {slug: partition_row_count(db_path, slug) for slug in SUPPLIES} == expected


def test_the_index_answers_text_and_similar_token_queries(pipeline, indexed):
    caption = "CryptoPunk #0: a Female 2 with a Blonde Bob, Green Eye Shadow and an Earring."

    async def queries():
        search = await NftSearch.open(pipeline["layout"].root)
        return (
            await search.text("female with blonde bob", k=10),
            await search.text(caption, k=5, hybrid=True),
            await search.similar_to_token("cryptopunks", "0", k=5, in_collection="cryptopunks"),
        )

    text, hybrid, similar = asyncio.run(queries())
    assert len(text.hits) == 10 and {hit.collection for hit in text.hits} <= set(SUPPLIES)
    assert [hit.rank for hit in text.hits] == list(range(1, 11))
    assert all(-1.0 <= hit.similarity <= 1.0 for hit in text.hits)
    assert (hybrid.hits[0].collection, hybrid.hits[0].token_id) == ("cryptopunks", "0")
    assert len(similar.hits) == 5 and all(h.collection == "cryptopunks" and h.token_id != "0" for h in similar.hits)


def start_cli(*argv: str) -> subprocess.Popen:
    """`nft-pipeline ARGV` in its own process, as a person runs it (started together: each imports torch)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "nft_pipeline.cli", *argv]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_search_command_prints_a_table_or_names_the_missing_asset(pipeline, indexed, tmp_path):
    found = start_cli("search", "female with blonde bob", "-k", "4", "--data-dir", str(pipeline["layout"].root))
    missing = start_cli("search", "female with blonde bob", "--data-dir", str(tmp_path))
    (out, err), (missing_out, missing_err) = found.communicate(timeout=300), missing.communicate(timeout=300)
    assert found.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["rank", "score", "collection", "token_id", "name", "caption"]
    assert [line.split()[0] for line in lines[2:6]] == ["1", "2", "3", "4"]
    assert lines[-1].startswith("4 results in")

    assert missing.returncode == 2 and missing_out == ""
    assert "materialize the `nft_index` asset" in missing_err


def test_index_check_fails_with_numbers_when_images_lack_captions(pipeline, trained):
    layout = pipeline["layout"]
    path = layout.partition_path("captions", "mixedmedia")
    captions = read_table(path, schemas.CAPTIONS)
    write_table(captions.slice(5), path, schemas.CAPTIONS)  # five tokens with ok images lose their captions
    try:
        result = materialize_index(pipeline, "mixedmedia")
    finally:
        write_table(captions, path, schemas.CAPTIONS)
    expected = ok_images(layout)["mixedmedia"]
    assert not result.success  # blocking: the step fails after recording the materialization
    check = check_evaluations(result)["index_rows_equal_images"]
    assert not check.passed
    assert (check.metadata["rows"].value, check.metadata["expected"].value) == (expected - 5, expected)
    assert materialize_index(pipeline, "mixedmedia").success
    assert partition_row_count(lance_path(layout.root), "mixedmedia") == expected


def test_a_collection_without_ok_images_indexes_zero_rows(pipeline, indexed):
    layout, instance = pipeline["layout"], pipeline["instance"]
    images = read_table(layout.partition_path("standardized_images", "mixedmedia"), schemas.STANDARDIZED_IMAGES)
    broken = images.set_column(0, "collection", pa.array(["broken"] * images.num_rows))
    broken = broken.set_column(broken.schema.get_field_index("status"), "status", pa.array(["no_source"] * images.num_rows))
    write_table(broken, layout.partition_path("standardized_images", "broken"), schemas.STANDARDIZED_IMAGES)
    instance.add_dynamic_partitions(collection_partitions.name, ["broken"])
    try:
        rows_before = open_table(lance_path(layout.root)).count_rows()
        result = materialize_index(pipeline, "broken")
        assert result.success and check_evaluations(result)["index_rows_equal_images"].passed
        metadata = result.asset_materializations_for_node("nft_index")[0].metadata
        assert metadata["dagster/row_count"].value == metadata["ok_images"].value == 0
        assert metadata["rows_in_table"].value == rows_before == sum(ok_images(layout).values())
    finally:  # leave the module's pipeline as the other tests expect it, whatever runs next
        instance.delete_dynamic_partition(collection_partitions.name, "broken")
        layout.partition_path("standardized_images", "broken").unlink()
