"""Clone detection on the copycat collection: altered CryptoPunks under another contract.

The copies are served by the sample gateway, standardized by the pipeline and grouped by the real
`clones` asset on a temporary instance (slow); a smaller set checks the search's duplicate collapse
through the HTTP API, and the signatures' cache.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from nft_pipeline.captions import caption_token
from nft_pipeline.classify.clones import CLONES, cached_signatures, clone_accuracy, clone_rows, collection_signatures
from nft_pipeline.definitions import ALL_ASSETS
from nft_pipeline.embedding import EmbeddingModel
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.ranking import merged_groups
from nft_pipeline.samples import sample_collections
from nft_pipeline.samples.copycat import COPYCAT_SLUG, CopycatPunks, write_copycat_catalog
from nft_pipeline.samples.punks import CryptoPunks
from nft_pipeline.standardize import StandardizeSettings, standardize_image
from nft_pipeline.storage import DataLayout, read_table, write_table
from nft_pipeline.train.data import TrainingExample
from nft_pipeline.train.model import build_tiny_clip
from nft_pipeline.train.sample_data import punks_inputs
from nft_pipeline.web.app import IMAGES_DIR
from resources import NftSourcesResource, local_resources
from tests.conftest import temp_instance
from tests.test_search_api import client_of, search
from tests.tiny_model import TINY, index_examples

ASSETS = {a.key.path[-1]: a for a in ALL_ASSETS}
PUNKS = 2000  # the originals served; the copies copy punks among them
COPIES = 300


def _truth(copycat: CopycatPunks) -> dict[tuple[str, str], tuple[str, str]]:
    return {(COPYCAT_SLUG, str(i)): ("cryptopunks", str(copycat.source_punk(i))) for i in range(copycat.default_supply)}


@pytest.mark.slow
def test_copycat_punks_are_found_through_the_gateway_and_a_rerun_does_no_work(tmp_path):
    copycat = CopycatPunks(COPIES, seed=0, source_supply=PUNKS)
    collections = {**sample_collections(), COPYCAT_SLUG: copycat}
    gateway = SampleGateway({"cryptopunks": PUNKS, "nouns": 40, "mixedmedia": 40}, collections=collections)
    catalog = write_copycat_catalog(copycat, tmp_path / "catalog.csv")
    with running_gateway(gateway) as running, temp_instance(tmp_path / "dagster") as instance:
        resources = {**local_resources(running.base_url, tmp_path / "data"),
                     "sources": NftSourcesResource(sample_gateway_url=running.base_url, catalog=str(catalog))}
        assert dg.materialize([ASSETS["collections"]], instance=instance, resources=resources).success
        for slug in ("cryptopunks", "nouns", "mixedmedia", COPYCAT_SLUG):
            prepare = [ASSETS[name] for name in ("tokens", "raw_media", "standardized_images")]
            assert dg.materialize(prepare, partition_key=slug, instance=instance, resources=resources).success
        first = dg.materialize([ASSETS["clones"]], instance=instance, resources=resources)
        assert first.success
        again = dg.materialize([ASSETS["clones"]], instance=instance, resources=resources)
    table = read_table(DataLayout(tmp_path / "data").table_path("clones"), CLONES)
    accuracy = clone_accuracy(table, _truth(copycat))
    # The goal is 0.95 found; measured 0.89 here and 0.91 over all 10,000 punks (docs/benchmarks.md,
    # "Clone detection"): the misses are near twins (punks 1-8 shaded pixels apart). This guards the level reached.
    assert accuracy.found_share >= 0.85, accuracy
    assert accuracy.falsely_grouped_originals <= 0.01 * PUNKS, accuracy  # distinct punks put in a false group (goal met)
    assert {r["original_collection"] for r in table.to_pylist()} == {"cryptopunks"}  # nouns and critters copy nothing
    metadata = first.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["copies"].value == table.num_rows - metadata["groups"].value
    assert "copycat-punks" in metadata["copies_per_collection"].value
    assert all(e.passed for e in first.get_asset_check_evaluations())
    rerun = again.get_asset_materialization_events()[0].materialization.metadata
    assert rerun["signatures_computed"].value == [] and rerun["groups_reused"].value is True


def _standardized(copycat: CopycatPunks, token_id: int, directory: Path) -> Path:
    served = copycat.ipfs_files()[copycat.image_cid](token_id, copycat.image_format(token_id))
    result = standardize_image(served.body, StandardizeSettings(), f"{COPYCAT_SLUG}/{token_id}")
    path = directory / COPYCAT_SLUG / f"{token_id}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(result.png)
    return path


def _images_table(paths: dict[str, Path]) -> pa.Table:
    return pa.table({"token_id": list(paths), "status": ["ok"] * len(paths), "png_path": [str(p) for p in paths.values()],
                     "png_sha256": [str(p.stat().st_mtime_ns) for p in paths.values()]})


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, CopycatPunks]:
    """60 punks and 12 copies of them indexed with a tiny model, and their `clones` table."""
    root = tmp_path_factory.mktemp("clones")
    punks, _ = punks_inputs(range(60), root / IMAGES_DIR)
    copycat = CopycatPunks(12, seed=3, source_supply=60)
    copy_paths = {str(i): _standardized(copycat, i, root / IMAGES_DIR) for i in range(12)}
    copies = [
        TrainingExample(COPYCAT_SLUG, token, path, caption_token(copycat.name, f"Copycat Punk #{token}", token, copycat.metadata(int(token))["attributes"], None))
        for token, path in copy_paths.items()
    ]
    model_dir = root / "models" / "untrained" / "model"
    build_tiny_clip(TINY).save(model_dir)
    index_examples(root, EmbeddingModel.load(model_dir), {"cryptopunks": punks, COPYCAT_SLUG: copies})
    signatures = [
        collection_signatures("cryptopunks", _images_table({e.token_id: Path(e.image_path) for e in punks}), Path),
        collection_signatures(COPYCAT_SLUG, _images_table(copy_paths), Path),
    ]
    write_table(clone_rows(signatures), DataLayout(root).table_path("clones"), CLONES)
    return root, copycat


def test_search_collapses_a_copy_with_its_original_through_the_api(indexed):
    root, copycat = indexed
    table = read_table(DataLayout(root).table_path("clones"), CLONES)
    grouped = {int(r["token_id"]) for r in table.to_pylist() if r["role"] == "copy"}
    assert clone_accuracy(table, _truth(copycat)).found == len(grouped) >= 10  # no wrong group
    every_type = "Type=Male 1|Male 2|Male 3|Male 4|Female 1|Female 2|Female 3|Female 4|Zombie|Ape|Alien"

    async def run():
        async with client_of(root) as client:
            plain = await search(client, q="", trait=every_type, k=100)
            collapsed = await search(client, q="", trait=every_type, k=100, collapse=1)
        assert plain["total"] == 72
        assert collapsed["total"] <= 72 - len(grouped)
        hit_of = {}
        for hit in collapsed["hits"]:
            for token in [{"collection": hit["collection"], "token_id": hit["token_id"]}, *hit["duplicate_tokens"]]:
                hit_of[(token["collection"], token["token_id"])] = hit
            assert hit["duplicates"] == 1 + len(hit["duplicate_tokens"])
        for copy in grouped:
            original = ("cryptopunks", str(copycat.source_punk(copy)))
            hit = hit_of[(COPYCAT_SLUG, str(copy))]
            assert hit is hit_of[original]  # one hit for the copy and its original
            listed = {(t["collection"], t["token_id"]): t["original"] for t in hit["duplicate_tokens"]}
            if (hit["collection"], hit["token_id"]) != original:
                assert listed[original] is True

    asyncio.run(run())


def test_signatures_are_reused_until_an_image_changes(tmp_path):
    layout = DataLayout(tmp_path)
    paths = {}
    for token in range(3):
        paths[str(token)] = tmp_path / f"{token}.png"
        Image.fromarray(CryptoPunks().tile(token)).resize((240, 240), Image.Resampling.NEAREST).save(paths[str(token)])
    images = _images_table(paths)
    first = cached_signatures(layout, "cryptopunks", images)
    second = cached_signatures(layout, "cryptopunks", images)
    assert first.computed and not second.computed and first.fingerprint == second.fingerprint
    assert second.table.num_rows == 3 and set(second.table["status"].to_pylist()) == {"ok"}
    changed = images.set_column(images.schema.get_field_index("png_sha256"), "png_sha256", pa.array(["a", "b", "c"]))
    assert cached_signatures(layout, "cryptopunks", changed).computed


def test_unreadable_and_missing_images_become_rows_with_a_status(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    images = pa.table({"token_id": ["0", "1"], "status": ["ok", "fetch_error"], "png_path": [str(broken), None], "png_sha256": ["x", None]})
    table = collection_signatures("c", images, Path)
    assert table["status"].to_pylist() == ["unreadable", "no_image"]
    assert clone_rows([table, table]).num_rows == 0


def test_merged_groups_join_identical_pictures_and_clones():
    identical = np.array([0, 0, 1, 2, 3])
    clones = np.array([-1, 5, 5, -1, -1])  # row 1 (identical to row 0) is a clone of row 2
    groups = merged_groups(identical, clones)
    assert groups[0] == groups[1] == groups[2] and len({groups[0], groups[3], groups[4]}) == 3


def test_copycat_is_deterministic_and_lossy(tmp_path):
    a, b = CopycatPunks(20, seed=1), CopycatPunks(20, seed=1)
    assert [a.source_punk(i) for i in range(20)] == [b.source_punk(i) for i in range(20)]
    assert len({a.source_punk(i) for i in range(20)}) == 20
    served = a.ipfs_files()[a.image_cid](0, a.image_format(0))
    assert served.body == b.ipfs_files()[b.image_cid](0, b.image_format(0)).body
    assert served.content_type in ("image/jpeg", "image/webp")
    with Image.open(io.BytesIO(served.body)) as image:
        assert image.size[0] > 24 * 7
    assert a.metadata(0)["attributes"] == CryptoPunks().metadata(a.source_punk(0))["attributes"]
    assert CopycatPunks(20, seed=2).contract != a.contract != CryptoPunks().contract
