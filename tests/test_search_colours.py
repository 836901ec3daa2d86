"""Colour words and the `colour=` filter through the search API, on real Nouns whose `token_colours`
were computed from their images: a Noun's background is exactly one of two colours, #d5d7e1 (the
"cool" background, named blue) and #e1d7d5 (the "warm" one, named white), so which Nouns answer
"blue background" is known exactly from their metadata.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa
import pytest

from nft_pipeline.classify.colours import TOKEN_COLOURS, colour_rows
from nft_pipeline.embedding import EmbeddingModel
from nft_pipeline.samples.nouns import Nouns
from nft_pipeline.storage import DataLayout, read_table, write_table
from nft_pipeline.train.model import build_tiny_clip
from nft_pipeline.train.sample_data import nouns_inputs, punks_inputs
from nft_pipeline.web.app import IMAGES_DIR
from tests.chromium import chromium_page
from tests.conftest import ARTIFACTS
from tests.test_search_api import client_of, search
from tests.test_search_web import CARDS, CHIP_LABELS, open_page, search_for, serving
from tests.tiny_model import TINY, index_examples

NOUN_IDS = range(40)
COOL = {i for i in NOUN_IDS if any(a["trait_type"] == "background" and a["value"] == "cool" for a in Nouns().metadata(i)["attributes"])}


def _index(root: Path, with_colours: bool) -> Path:
    punks, _ = punks_inputs(range(20), root / IMAGES_DIR)
    nouns, _ = nouns_inputs(NOUN_IDS, root / IMAGES_DIR)
    model_dir = root / "models" / "untrained" / "model"
    build_tiny_clip(TINY).save(model_dir)
    index_examples(root, EmbeddingModel.load(model_dir), {"cryptopunks": punks, "nouns": nouns})
    if with_colours:
        layout = DataLayout(root)
        for slug, examples in (("nouns", nouns), ("cryptopunks", punks)):
            images = pa.table({
                "token_id": [e.token_id for e in examples], "status": ["ok"] * len(examples),
                "png_path": [str(e.image_path) for e in examples],
            })
            write_table(colour_rows(slug, images, Path), layout.partition_path("token_colours", slug), TOKEN_COLOURS)
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return _index(tmp_path_factory.mktemp("colours"), with_colours=True)


def _ids(body: dict) -> set[int]:
    assert {hit["collection"] for hit in body["hits"]} == {"nouns"}
    return {int(hit["token_id"]) for hit in body["hits"]}


def test_blue_background_in_the_query_finds_exactly_the_cool_nouns(data_dir):
    assert 0 < len(COOL) < len(NOUN_IDS)

    async def run():
        async with client_of(data_dir) as client:
            body = await search(client, q="nouns blue background", k=100)
            assert _ids(body) == COOL
            assert body["total"] == len(COOL)
            chip = next(chip for chip in body["interpretation"]["chips"] if chip["kind"] == "colour")
            assert (chip["label"], chip["source"], chip["filter"]) == ("blue background", "query", "blue background")
            assert body["interpretation"]["query"][slice(*chip["span"])] == "blue background"
            assert body["interpretation"]["residual"] == []
            warm = await search(client, q="noun with a white background", k=100)
            assert _ids(warm) == set(NOUN_IDS) - COOL
            # A mood names no trait: read as a colour class of the figure, combined with the background.
            pastel = _with_class(data_dir, "pastel")
            assert 0 < len(pastel) < len(NOUN_IDS)
            body = await search(client, q="pastel nouns on a blue background", k=100)
            assert _ids(body) == pastel & COOL
            assert [c["label"] for c in body["interpretation"]["chips"] if c["kind"] == "colour"] == ["blue background", "pastel"]

    asyncio.run(run())


def _with_class(data_dir: Path, colour_class: str) -> set[int]:
    table = read_table(DataLayout(data_dir).partition_path("token_colours", "nouns"), TOKEN_COLOURS)
    return {int(row["token_id"]) for row in table.to_pylist() if colour_class in row["colour_classes"]}


def test_colour_filter_narrows_and_shows_as_a_filter_chip(data_dir):
    async def run():
        async with client_of(data_dir) as client:
            body = await search(client, q="", collection="nouns", colour="blue background", k=100)
            assert _ids(body) == COOL
            chip = body["interpretation"]["chips"][-1]
            assert (chip["kind"], chip["source"], chip["filter"]) == ("colour", "filter", "blue background")
            # A punk's background is transparent: no punk answers a blue background, every one a transparent one.
            punks = await search(client, q="", collection="cryptopunks", colour="transparent background", k=100)
            assert len(punks["hits"]) == 20
            none = await search(client, q="", collection="cryptopunks", colour="blue background", k=100)
            assert none["hits"] == [] and none["total"] == 0
            async with client.get("/api/search", params={"q": "noun", "colour": "sky"}) as response:
                assert response.status == 400
                assert "colour words" in (await response.json())["error"]

    asyncio.run(run())


def test_without_colour_tables_colour_words_stay_text(tmp_path):
    data_dir = _index(tmp_path, with_colours=False)

    async def run():
        async with client_of(data_dir) as client:
            for query in ("nouns blue background", "pastel noun"):
                body = await search(client, q=query, k=5)
                assert all(chip["kind"] != "colour" for chip in body["interpretation"]["chips"])
            assert body["interpretation"]["residual"] == ["pastel"]
            async with client.get("/api/search", params={"q": "noun", "colour": "blue"}) as response:
                assert response.status == 400
                assert "token_colours" in (await response.json())["error"]

    asyncio.run(run())


def test_page_shows_the_colour_chip_and_removes_its_words_in_chromium(data_dir, tmp_path):
    async def scenario() -> None:
        async with serving(data_dir) as server, chromium_page(tmp_path / "profile") as page:
            await open_page(page, server)
            await search_for(page, "nouns blue background")
            await page.wait_for(f"{CHIP_LABELS}.includes('blue background')")
            await page.wait_for(f"{CARDS} === {min(len(COOL), 24)}")  # 24: the page size
            await page.screenshot(ARTIFACTS / "search_colour_chip.png")
            await page.click("#chips .interp[data-kind='colour'] .remove")
            await page.wait_for("document.querySelector('#q').value.trim() === 'nouns'")
            assert page.exceptions == []

    asyncio.run(scenario())
