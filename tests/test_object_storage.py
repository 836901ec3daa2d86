"""Tables, blobs and standardized images on object storage: the real assets against a real S3 API.

The store is moto's S3 server on 127.0.0.1, reached through s3fs like any S3-compatible service.
The same partitions run once with a local data directory, as the reference the remote run must
match. A second test does tables and blobs on `memory://`, to show that any fsspec protocol works.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
import s3fs
from moto.server import ThreadedMotoServer
from PIL import Image

from assets import images, ingest, media, text
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.location import LocalOnlyError, data_location
from nft_pipeline.storage import DATA_DIR_ENV, DataLayout, default_data_dir, default_data_root, read_table, write_table
from resources import DataDirResource, local_resources
from tests.conftest import temp_instance

BUCKET = "nft-data"
PREFIX = f"{BUCKET}/pipeline"
SUPPLIES = {"cryptopunks": 40, "mixedmedia": 40}
PARTITION_ASSETS = [ingest.tokens, media.raw_media, images.standardized_images, text.captions, images.components]
TABLES = ["tokens", "raw_media", "standardized_images", "captions", "components"]
KEY_ENV, SECRET_ENV = "NFT_TEST_S3_KEY", "NFT_TEST_S3_SECRET"


@pytest.fixture(scope="module")
def s3():
    """A real S3 endpoint on a free loopback port, with an empty bucket."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint, skip_instance_cache=True)
        fs.mkdir(BUCKET)
        yield {"endpoint": endpoint, "fs": fs}
    finally:
        server.stop()


def stored_keys(fs: s3fs.S3FileSystem) -> set[str]:
    """Every object under the data root, listed afresh (s3fs caches listings)."""
    fs.invalidate_cache()
    return {key.removeprefix(f"{PREFIX}/") for key in fs.find(PREFIX)}


def materialize_partitions(instance, resources: dict, slugs) -> dict[str, dg.ExecuteInProcessResult]:
    assert dg.materialize([ingest.collections], instance=instance, resources=resources).success
    return {slug: dg.materialize(PARTITION_ASSETS, partition_key=slug, instance=instance, resources=resources) for slug in slugs}


def counts(layout: DataLayout) -> dict[str, list[dict]]:
    """Rows per partition of every table, and per status where a table has one."""
    found = {t: layout.query(f"SELECT collection, count(*) AS n FROM {{{t}}} GROUP BY 1 ORDER BY 1").to_pylist() for t in TABLES}
    for table in ("raw_media", "standardized_images", "components"):
        found[f"{table} by status"] = layout.query(
            f"SELECT collection, status, count(*) AS n FROM {{{table}}} GROUP BY ALL ORDER BY ALL"
        ).to_pylist()
    return found


@pytest.fixture(scope="module")
def runs(s3, tmp_path_factory):
    """Both partitions locally and on S3, then mixedmedia again on S3; the credentials come from env vars."""
    root = tmp_path_factory.mktemp("object-storage")
    with (
        pytest.MonkeyPatch.context() as env,
        running_gateway(SampleGateway(supplies=SUPPLIES)) as gateway,
        temp_instance(root / "local-dagster") as local_instance,
        temp_instance(root / "remote-dagster") as remote_instance,
    ):
        env.setenv(KEY_ENV, "testing")
        env.setenv(SECRET_ENV, "testing")
        local = local_resources(gateway.base_url, root / "local")
        data_dir = DataDirResource(
            path=f"s3://{PREFIX}",
            storage_options={"endpoint_url": s3["endpoint"]},
            storage_options_env={"key": KEY_ENV, "secret": SECRET_ENV},
            work_dir=str(root / "work"),
        )
        remote = {**local, "data_dir": data_dir}
        local_results = materialize_partitions(local_instance, local, SUPPLIES)
        remote_results = materialize_partitions(remote_instance, remote, SUPPLIES)
        layout = data_dir.layout()
        first = counts(layout)
        first_listing = stored_keys(s3["fs"])
        rerun = dg.materialize(PARTITION_ASSETS, partition_key="mixedmedia", instance=remote_instance, resources=remote)
        yield {
            "local": DataLayout(root / "local"),
            "remote": layout,
            "work_dir": root / "work",
            "results": [*local_results.values(), *remote_results.values(), rerun],
            "first": first,
            "first_listing": first_listing,
            "rerun": rerun,
        }


def test_every_run_succeeds(runs):
    for result in runs["results"]:
        assert result.success
        assert [e.check_name for e in result.get_asset_check_evaluations() if not e.passed] == []


def test_tables_blobs_and_images_are_on_the_store_and_nothing_stays_local(runs, s3):
    layout = runs["remote"]
    listing = stored_keys(s3["fs"])
    tables = {key for key in listing if key.startswith("tables/")}
    assert tables == {"tables/collections.parquet"} | {f"tables/{t}/{s}.parquet" for t in TABLES for s in SUPPLIES}
    shas = set(layout.query("SELECT sha256 FROM {raw_media} WHERE status = 'ok'").column(0).to_pylist())
    assert {key for key in listing if key.startswith("blobs/")} == {f"blobs/{sha[:2]}/{sha}" for sha in shas}
    pngs = layout.query("SELECT png_path, png_sha256 FROM {standardized_images} WHERE status = 'ok'").to_pylist()
    assert len(shas) > 40 and len(pngs) > 40
    assert {key for key in listing if key.startswith("images/")} == {
        r["png_path"].removeprefix(f"s3://{PREFIX}/") for r in pngs
    }
    assert listing == tables | {k for k in listing if k.startswith(("blobs/", "images/"))}
    for row in pngs[::9]:  # a stored path reads back through the layout, with the resource's credentials
        data = layout.file(row["png_path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["png_sha256"]
        with layout.file(row["png_path"]).open("rb") as file, Image.open(file) as image:
            assert image.format == "PNG" and image.width == 512
    work = runs["work_dir"]  # only the local side of downloads, emptied once their table is written
    assert [p for p in work.rglob("*") if p.is_file()] == []


def test_row_counts_and_images_equal_the_local_run(runs):
    local, remote = runs["local"], runs["remote"]
    assert runs["first"] == counts(local)
    assert {r["collection"]: r["n"] for r in runs["first"]["tokens"]} == SUPPLIES
    same_pixels = "SELECT collection, token_id, status, png_sha256 FROM {standardized_images} ORDER BY ALL"
    assert remote.query(same_pixels).to_pylist() == local.query(same_pixels).to_pylist()


def test_duckdb_joins_tables_across_partitions_on_the_store(runs):
    sql = """
        SELECT t.collection, count(*) AS n, count(DISTINCT m.sha256) AS blobs, count(c.caption) AS captions
        FROM {tokens} t
        JOIN {raw_media} m USING (collection, token_id)
        JOIN {standardized_images} i USING (collection, token_id)
        LEFT JOIN {captions} c USING (collection, token_id)
        WHERE m.role = 'image' AND i.status = ? GROUP BY 1 ORDER BY 1
    """
    remote = runs["remote"].query(sql, ["ok"]).to_pylist()
    assert [r["collection"] for r in remote] == sorted(SUPPLIES)
    assert all(r["n"] == r["captions"] > 0 for r in remote)
    assert remote == runs["local"].query(sql, ["ok"]).to_pylist()


def test_rerunning_a_partition_replaces_it_without_duplicates_or_refetching(runs, s3):
    layout, rerun = runs["remote"], runs["rerun"]
    assert counts(layout) == runs["first"]
    for table, key in [("tokens", "token_id"), ("raw_media", "token_id, role"), ("standardized_images", "token_id")]:
        sql = f"SELECT count(*) AS n, count(DISTINCT (collection, {key})) AS keys FROM {{{table}}}"
        [row] = layout.query(sql).to_pylist()
        assert row["n"] == row["keys"], table
    [media_run] = rerun.asset_materializations_for_node("raw_media")
    [images_run] = rerun.asset_materializations_for_node("standardized_images")
    assert media_run.metadata["fetched"].value == 0  # every blob was found on the store
    assert images_run.metadata["reused"].value > 0 and images_run.metadata["standardized"].value == 0  # every PNG too
    assert stored_keys(s3["fs"]) == runs["first_listing"]


def test_local_only_steps_say_so(monkeypatch):
    layout = DataLayout("s3://bucket/prefix")
    assert str(layout.partition_path("tokens", "punks")) == "s3://bucket/prefix/tables/tokens/punks.parquet"
    with pytest.raises(LocalOnlyError, match="s3://bucket/prefix is on object storage"):
        layout.root  # noqa: B018 (what training, the CVI report and the search index write under)
    monkeypatch.setenv(DATA_DIR_ENV, "s3://bucket/prefix")
    assert default_data_root() == "s3://bucket/prefix"
    with pytest.raises(LocalOnlyError, match="s3://bucket/prefix is on object storage"):
        default_data_dir()
    assert data_location("file:///srv/data") == Path("/srv/data")


ITEMS = pa.schema([pa.field("collection", pa.string(), nullable=False), pa.field("item", pa.int64(), nullable=False)])


def items(collection: str, n: int) -> pa.Table:
    return pa.table({"collection": [collection] * n, "item": list(range(n))}, schema=ITEMS)


def test_tables_blobs_and_queries_on_any_fsspec_protocol(tmp_path):
    layout = DataLayout(f"memory://nft-test/{tmp_path.name}", work_dir=tmp_path)
    fs, base = layout.location.fs, layout.location.path
    try:
        assert read_table(layout.partition_path("items", "a"), ITEMS).num_rows == 0  # not written yet
        write_table(items("a", 3), layout.partition_path("items", "a"), ITEMS)
        write_table(items("b", 5), layout.partition_path("items", "b"), ITEMS)
        write_table(items("b", 2), layout.partition_path("items", "b"), ITEMS)  # replaced, not appended
        write_table(items("all", 1), layout.table_path("summary"), ITEMS)
        assert read_table(layout.partition_path("items", "a"), ITEMS).equals(items("a", 3))
        by_collection = layout.query("SELECT collection, count(*) AS n FROM {items} GROUP BY 1 ORDER BY 1").to_pylist()
        assert by_collection == [{"collection": "a", "n": 3}, {"collection": "b", "n": 2}]
        assert layout.query("SELECT count(*) AS n FROM {summary}").to_pylist() == [{"n": 1}]

        blobs = layout.blobs
        sha = blobs.put_bytes(b"media bytes")
        assert blobs.has(sha) and blobs.put_bytes(b"media bytes") == sha
        staged = blobs.staging_dir() / "download"
        staged.write_bytes(b"a staged download")
        staged_sha = hashlib.sha256(b"a staged download").hexdigest()
        assert blobs.put_file(staged, staged_sha) == staged_sha and not staged.exists()
        with blobs.open(staged_sha) as file:
            assert file.read() == b"a staged download"
        assert sorted(key.removeprefix(base) for key in fs.find(base)) == sorted([
            "/tables/items/a.parquet", "/tables/items/b.parquet", "/tables/summary.parquet",
            f"/blobs/{sha[:2]}/{sha}", f"/blobs/{staged_sha[:2]}/{staged_sha}",
        ])
    finally:
        fs.rm(base, recursive=True)


def test_clip_model_trains_from_a_data_root_on_the_store(runs, s3, tmp_path):
    """With the data root a URL, `clip_model` reads the tables and the PNGs from the store; only the model is local.

    The tables are copied under their own prefix, so the training tables this writes leave the
    pipeline prefix (which other tests list) as it was; their `png_path`s still name the PNGs the
    remote run stored, which nothing has on local disk.
    """
    from assets.model import clip_model
    from tests.tiny_model import TINY

    fs, training_prefix = s3["fs"], f"{BUCKET}/training-{tmp_path.name}"
    for table in ("standardized_images", "captions", "components"):
        fs.copy(f"{PREFIX}/tables/{table}/cryptopunks.parquet", f"{training_prefix}/tables/{table}/cryptopunks.parquet")
    data_dir = DataDirResource(
        path=f"s3://{training_prefix}",
        storage_options={"endpoint_url": s3["endpoint"]},
        storage_options_env={"key": KEY_ENV, "secret": SECRET_ENV},
        work_dir=str(tmp_path / "work"),
    )
    layout = data_dir.layout()
    pngs = layout.query("SELECT png_path FROM {standardized_images} WHERE status = 'ok'").column("png_path").to_pylist()
    assert len(pngs) == SUPPLIES["cryptopunks"] and all(path.startswith(f"s3://{PREFIX}/") for path in pngs)
    shape = ("tiny_image_size", "tiny_patch_size", "tiny_width", "tiny_layers", "tiny_heads", "tiny_projection_dim")
    training = {
        "collections": ["cryptopunks"], "epochs": 1, "batch_size": 8, "split": "by_token", "num_workers": 0,
        **{name: getattr(TINY, name) for name in shape},
    }
    with temp_instance(tmp_path / "dagster") as instance:
        result = dg.materialize(
            [clip_model], instance=instance, resources={"data_dir": data_dir},
            run_config={"ops": {"clip_model": {"config": training}}},
        )
    assert result.success
    assert result.asset_materializations_for_node("clip_model")[0].metadata["examples"].value == len(pngs)
    [run] = layout.query("SELECT run_id, epochs, model_dir FROM {training_runs}").to_pylist()  # written to the store
    assert run["epochs"] == 1 and Path(run["model_dir"]) == tmp_path / "work" / "models" / run["run_id"] / "model"
    assert (Path(run["model_dir"]) / "config.json").exists()
    assert not list((tmp_path / "work").rglob("*.png"))  # the images were read from the store, never copied here
