"""The described search through its JSON API, on real CryptoPunks and Nouns: exact token sets, filters,
facets, paging, export, duplicates, search by image and by URL, and bad input.

The index holds the first 200 CryptoPunks and 40 Nouns, embedded by an untrained tiny model: which
tokens answer a trait query depends on their traits alone, so the expected sets below are exact
(read off the bundled collections' metadata), while their order is the model's business.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from nft_pipeline.embedding import EmbeddingModel
from nft_pipeline.search import NftSearch
from nft_pipeline.train.data import TrainingExample
from nft_pipeline.train.model import build_tiny_clip
from nft_pipeline.train.sample_data import nouns_inputs, punks_inputs
from nft_pipeline.web.app import IMAGES_DIR, create_app
from nft_pipeline.web.image_query import URL_LIMITS
from tests.tiny_model import TINY, index_examples

# Tests fetch from their own server by name; the literal addresses stay refused.
TEST_URL_LIMITS = replace(URL_LIMITS, allowed_private=("localhost",), total_timeout_s=3.0, read_timeout_s=2.0)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("described")
    punks, _ = punks_inputs(range(200), root / IMAGES_DIR)
    nouns, _ = nouns_inputs(range(40), root / IMAGES_DIR)
    model_dir = root / "models" / "untrained" / "model"
    build_tiny_clip(TINY).save(model_dir)
    index_examples(root, EmbeddingModel.load(model_dir), {"cryptopunks": punks, "nouns": nouns})
    return root


@asynccontextmanager
async def client_of(data_dir: Path) -> AsyncIterator[aiohttp.ClientSession]:
    server = TestServer(
        create_app(await NftSearch.open(data_dir), data_dir / IMAGES_DIR, TEST_URL_LIMITS), host="127.0.0.1"
    )
    await server.start_server()
    try:
        async with aiohttp.ClientSession(server.make_url("")) as client:
            yield client
    finally:
        await server.close()


async def search(client: aiohttp.ClientSession, **params) -> dict:
    async with client.get("/api/search", params=params) as response:
        body = await response.json()
        assert response.status == 200, body
        return body


def ids(body: dict, collection: str = "cryptopunks") -> set[int]:
    """The tokens carrying every understood trait: the first `exact` hits (partial matches follow them
    when k asks for more); all from `collection`."""
    exact = body["hits"][: body["exact"]]
    assert {hit["collection"] for hit in body["hits"]} <= {collection}
    assert all(len(hit["matched"]) < len(body["hits"][0]["matched"]) for hit in body["hits"][body["exact"] :])
    return {int(hit["token_id"]) for hit in exact}


MALE_WITH_SHADES = {4, 15, 16, 21, 28, 39, 48, 63, 81, 83, 84, 142, 147, 149, 156, 158, 166, 170, 175, 179}


def test_trait_queries_return_exactly_the_tokens_carrying_every_trait(data_dir):
    async def scenario() -> None:
        async with client_of(data_dir) as client:
            body = await search(client, q="punk girl with a blond bob", k="100")
            assert ids(body) == {0, 96, 103, 168, 172, 184}
            assert body["total"] == 200 and body["exact"] == 6  # the punks; six carry both traits
            labels = [(chip["kind"], chip["label"]) for chip in body["interpretation"]["chips"]]
            assert labels == [
                ("collection", "cryptopunks"),
                ("trait", "Type: Female 1, Female 2, Female 3"),  # no Female 4 among the first 200
                ("trait", "Accessory: Blonde Bob"),
            ]
            assert all(hit["matched"] == ["girl", "blond bob"] for hit in body["hits"][:6])

            assert ids(await search(client, q="guy in sunglasses", k="100")) == MALE_WITH_SHADES
            assert ids(await search(client, q="male punk wearing a hoodie", k="100")) == {54, 58, 87, 90, 99, 148, 154}
            assert ids(await search(client, q="3D Glasses", k="100")) == {67, 141, 172}
            assert ids(await search(client, q="noun in blue glasses", k="100"), "nouns") == {2, 9, 11, 18, 20, 21, 32, 36}

            # Too few carry every trait: those first, then tokens with some of them, in the same collection.
            zombie = await search(client, q="zombie smoking a pipe", k="10")
            assert zombie["exact"] == 0 and "only 0 tokens carry every trait" in zombie["notices"][0]
            assert {hit["collection"] for hit in zombie["hits"]} == {"cryptopunks"}
            assert {int(hit["token_id"]) for hit in zombie["hits"]} >= {117, 3, 14, 133, 173}  # the zombie, the pipes

            # Nothing understood: the embedding ranks everything, and says nothing was read.
            free = await search(client, q="driving through the night", k="5")
            assert free["interpretation"]["chips"] == [] and len(free["hits"]) == 5
            assert free["interpretation"]["residual"] == ["driving", "through", "night"]

    asyncio.run(scenario())


def test_trait_and_not_trait_filters_facets_and_negation(data_dir):
    async def scenario() -> None:
        async with client_of(data_dir) as client:
            women = await search(client, q="female", k="100", not_trait="Accessory=Earring")
            assert women["total"] == 200 - 43 and women["exact"] == 66  # 43 of the 200 wear an earring
            assert all("Earring" not in hit["caption"] for hit in women["hits"])
            said = await search(client, q="female without an earring", k="100")
            assert ids(said) == ids(women) and said["interpretation"]["chips"][1]["negated"] is True

            body = await search(client, q="", trait="Type=Male 1|Male 2|Male 3|Male 4", k="100")
            shades = await search(client, q="", trait=["Type=Male 1|Male 2|Male 3|Male 4", "Accessory=Big Shades|Classic Shades|Regular Shades|Small Shades"], k="100")
            assert ids(shades) == MALE_WITH_SHADES
            facets = {(f["collection"], f["trait_type"]): f for f in shades["facets"]}
            counts = {v["value"]: v["count"] for v in facets[("cryptopunks", "Type")]["values"]}
            assert sum(counts.values()) == len(MALE_WITH_SHADES) and set(counts) <= {"Male 1", "Male 2", "Male 3", "Male 4"}
            assert body["total"] > shades["total"]
            chips = shades["interpretation"]["chips"]
            assert [chip["source"] for chip in chips] == ["filter", "filter"]

            for bad in ("Female", "=x", "Type="):
                async with client.get("/api/search", params={"q": "x", "trait": bad}) as response:
                    assert response.status == 400 and "TYPE=VALUE" in (await response.json())["error"]

    asyncio.run(scenario())


def test_paging_past_100_and_export(data_dir):
    async def scenario() -> None:
        async with client_of(data_dir) as client:
            pages = [await search(client, q="punk", k="100", offset=str(offset)) for offset in (0, 100, 200)]
            keys = [hit["token_id"] for page in pages for hit in page["hits"]]
            assert [len(page["hits"]) for page in pages] == [100, 100, 0]
            assert len(set(keys)) == 200 and pages[1]["hits"][0]["rank"] == 101
            async with client.get("/api/export", params={"q": "punk", "format": "csv"}) as response:
                assert response.status == 200 and response.content_type == "text/csv"
                assert "attachment" in response.headers["Content-Disposition"]
                rows = list(csv.DictReader(io.StringIO(await response.text())))
            assert [row["token_id"] for row in rows] == keys
            async with client.get("/api/export", params={"q": "guy in sunglasses", "format": "json"}) as response:
                exported = await response.json()
            assert {int(hit["token_id"]) for hit in exported["hits"]} >= MALE_WITH_SHADES
            assert exported["hits"][0]["matched"] == "guy; sunglasses"

    asyncio.run(scenario())


def test_identical_pictures_collapse_into_one_hit_with_a_count(tmp_path):
    punks, _ = punks_inputs(range(6), tmp_path / IMAGES_DIR)
    copies = [TrainingExample("cryptopunks", f"{punks[0].token_id}-copy-{n}", punks[0].image_path, punks[0].caption) for n in range(3)]
    model_dir = tmp_path / "models" / "untrained" / "model"
    build_tiny_clip(TINY).save(model_dir)
    index_examples(tmp_path, EmbeddingModel.load(model_dir), {"cryptopunks": punks + copies})

    async def scenario() -> None:
        async with client_of(tmp_path) as client:
            plain = await search(client, q="female with a blonde bob", k="10")
            collapsed = await search(client, q="female with a blonde bob", k="10", collapse="1")
            assert plain["total"] == 9 and collapsed["total"] == 6
            assert [hit["duplicates"] for hit in plain["hits"]] == [1] * 9
            assert sorted(hit["duplicates"] for hit in collapsed["hits"]) == [1, 1, 1, 1, 1, 4]

    asyncio.run(scenario())


@asynccontextmanager
async def image_host(png: bytes) -> AsyncIterator[str]:
    """A server at http://localhost:PORT with /punk.png, /doc.pdf and /hang (never answers)."""

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response()

    app = web.Application()
    app.router.add_get("/punk.png", lambda r: web.Response(body=png, content_type="image/png"))
    app.router.add_get("/doc.pdf", lambda r: web.Response(body=PDF, content_type="image/png"))  # a lying label
    app.router.add_get("/hang", hang)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://localhost:{server.port}"
    finally:
        await server.close()


def test_search_by_uploaded_image_and_url_and_bad_input_gets_clear_errors(data_dir):
    png = (data_dir / IMAGES_DIR / "cryptopunks" / "7.png").read_bytes()

    async def scenario() -> None:
        async with client_of(data_dir) as client, image_host(png) as host:
            async with client.post("/api/search/image", data=png, params={"k": "3"}) as response:
                by_upload = await response.json()
            assert response.status == 200 and by_upload["hits"][0]["token_id"] == "7"
            async with client.get("/api/search/url", params={"url": f"{host}/punk.png", "k": "3"}) as response:
                by_url = await response.json()
            assert response.status == 200 and by_url["hits"][0]["token_id"] == "7"

            bad = [
                ("get", "/api/search", {"q": "x" * 100_000}, None, None),  # cut to 1,000 characters, answered
                ("get", "/api/search", {"q": "🐸 ünïcödé 漢字 \u202e"}, None, None),
                ("get", "/api/search", {"q": ""}, 400, "empty query"),
                ("get", "/api/search", {"q": "x", "offset": "-1"}, 400, "whole number"),
                ("post", "/api/search/image", None, 400, "larger than 20 MiB"),
                ("post", "/api/search/image", PDF, 400, "not an image"),
                ("post", "/api/search/image", b"", 400, "empty"),
                ("get", "/api/search/url", {"url": f"{host}/doc.pdf"}, 400, "not an image"),
                ("get", "/api/search/url", {"url": "http://127.0.0.1:9/x.png"}, 400, "private, loopback or reserved"),
                ("get", "/api/search/url", {"url": "http://169.254.169.254/latest/meta-data/"}, 400, "private, loopback or reserved"),
                ("get", "/api/search/url", {"url": "file:///etc/passwd"}, 400, "not an http(s) URL"),
                ("get", "/api/search/url", {"url": f"{host}/hang"}, 400, "did not answer in time"),
            ]
            for method, path, payload, status, message in bad:
                if method == "get":
                    request = client.get(path, params=payload)
                elif payload is None:  # 60 MB, refused on its declared length
                    request = client.post(path, data=b"\0" * (60 * 1024 * 1024))
                else:
                    request = client.post(path, data=payload)
                async with request as response:
                    body = await response.json()
                if status is None:
                    assert response.status == 200, body
                    continue
                assert (response.status, message in body["error"]) == (status, True), (path, body)
            # Still serving.
            assert ids(await search(client, q="3d glasses", k="10")) == {67, 141, 172}

    asyncio.run(scenario())
