"""Tokens without metadata found by their predicted traits through the search API, marked predicted.

200 real CryptoPunks are indexed, 6 of them (3 female, 3 male) with their metadata left out, as a
failed metadata fetch leaves a token; `trait_predictions` for them comes from the real kNN over the
images. "female" must then answer exactly the female punks, the hidden ones included and marked.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from nft_pipeline.captions import caption_token
from nft_pipeline.classify.pixels import read_samples
from nft_pipeline.classify.trait_labels import collection_labels
from nft_pipeline.classify.traits import TRAIT_PREDICTIONS, TraitFeatures, predict_traits
from nft_pipeline.embedding import EmbeddingModel
from nft_pipeline.samples.punks import CryptoPunks
from nft_pipeline.storage import DataLayout, write_table
from nft_pipeline.train.model import build_tiny_clip
from nft_pipeline.train.sample_data import punks_inputs
from nft_pipeline.web.app import IMAGES_DIR
from tests.chromium import chromium_page
from tests.conftest import ARTIFACTS
from tests.test_search_api import client_of, search
from tests.test_search_web import serving
from tests.tiny_model import TINY, index_examples

PUNK_IDS = range(200)
ATTRIBUTES = {str(i): CryptoPunks().metadata(i)["attributes"] for i in PUNK_IDS}
FEMALE = {t for t, attributes in ATTRIBUTES.items() if any(a["trait_type"] == "Type" and a["value"].startswith("Female") for a in attributes)}
MALE = {t for t, attributes in ATTRIBUTES.items() if any(a["trait_type"] == "Type" and a["value"].startswith("Male") for a in attributes)}
HIDDEN = sorted(FEMALE, key=int)[:3] + sorted(set(ATTRIBUTES) - FEMALE, key=int)[:3]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("predicted")
    punks, _ = punks_inputs(PUNK_IDS, root / IMAGES_DIR)
    name = CryptoPunks().name
    punks = [
        replace(e, caption=caption_token(name, f"CryptoPunk #{e.token_id}", e.token_id, [], None)) if e.token_id in HIDDEN else e
        for e in punks
    ]
    model_dir = root / "models" / "untrained" / "model"
    build_tiny_clip(TINY).save(model_dir)
    index_examples(root, EmbeddingModel.load(model_dir), {"cryptopunks": punks})
    token_ids = [e.token_id for e in punks]
    labels = collection_labels(token_ids, {t: ([] if t in HIDDEN else ATTRIBUTES[t]) for t in token_ids})
    samples, _ = read_samples([Path(e.image_path) for e in punks])
    table = predict_traits("cryptopunks", labels, TraitFeatures(samples=samples))
    write_table(table, DataLayout(root).partition_path("trait_predictions", "cryptopunks"), TRAIT_PREDICTIONS)
    return root


def test_tokens_without_metadata_answer_by_predicted_traits_marked_predicted(data_dir):
    async def run():
        async with client_of(data_dir) as client:
            body = await search(client, q="female", k=100)
            found = {hit["token_id"]: hit for hit in body["hits"][: body["exact"]]}
            assert set(found) == FEMALE
            for token, hit in found.items():
                predicted = token in HIDDEN
                assert [trait["predicted"] for trait in hit["outline_traits"]] == [predicted], hit
                assert bool(hit["predicted_traits"]) == predicted
            hidden = found[HIDDEN[0]]["predicted_traits"]
            assert [t["trait_type"] for t in hidden if t["trait_type"] == "Type"] == ["Type"]
            assert all(0.5 <= t["confidence"] <= 1 for t in hidden)
            # A trait filter sees predicted traits too: every male, the hidden ones included.
            males = await search(client, q="", collection="cryptopunks", trait="Type=Male 1|Male 2|Male 3|Male 4", k=5)
            assert males["total"] == len(MALE)

    asyncio.run(run())


def test_page_marks_predicted_traits_in_chromium(data_dir, tmp_path):
    async def scenario() -> None:
        async with serving(data_dir) as server, chromium_page(tmp_path / "profile") as page:
            async with aiohttp.ClientSession(server.make_url("")) as client:
                body = await search(client, q="female", k=100)
            first = next(hit["rank"] for hit in body["hits"] if hit["token_id"] in HIDDEN)
            await page.open(str(server.make_url("/")) + f"#q=female&offset={first - 1}", (1280, 900))
            await page.wait_for("!!document.querySelector('#results .card .predicted')")
            marked = await page.evaluate("[...document.querySelectorAll('#results .card .predicted')].map(n => n.textContent)")
            assert marked and all(text.startswith("predicted · ") and "Type: Female" in text for text in marked), marked
            await page.screenshot(ARTIFACTS / "search_predicted.png")
            assert page.exceptions == []

    asyncio.run(scenario())
