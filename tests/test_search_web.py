"""The search page in headless Chromium, its JSON API, and the image route's refusal to leave the images dir.

A real aiohttp server on 127.0.0.1 serves a real index: 40 Nouns and 40 CryptoPunks embedded by an
untrained tiny model (the page's behaviour is under test here, not retrieval quality). Chromium is
driven over the DevTools protocol with aiohttp's websocket client: the test types a query, presses
Enter, waits for the results, clicks one and waits for its similar tokens, then saves a screenshot
to test-artifacts/search_page.png. Chromium comes from Debian (`apt-get install chromium`); without
it the browser test is skipped and says so.
"""

from __future__ import annotations

import asyncio
import io
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import lancedb
import pyarrow as pa
import pytest
from aiohttp.test_utils import TestServer
from PIL import Image

from nft_pipeline.index import (
    TABLE_NAME,
    EmbeddingModel,
    embeddings_schema,
    lance_path,
    replace_partition,
)
from nft_pipeline.search import NftSearch
from nft_pipeline.train.model import build_tiny_clip
from nft_pipeline.train.sample_data import nouns_inputs, punks_inputs
from nft_pipeline.web.app import IMAGES_DIR, create_app
from tests.chromium import chromium_page
from tests.conftest import ARTIFACTS
from tests.tiny_model import TINY, index_examples

PAGE_SIZE = 24  # results the page asks for


def indexed_data_dir(root: Path, tokens: int) -> Path:
    """`root` made a data directory: images, an untrained tiny model, and the index of `tokens` Nouns and punks."""
    nouns, _ = nouns_inputs(range(tokens), root / IMAGES_DIR)
    punks, _ = punks_inputs(range(tokens), root / IMAGES_DIR)
    model_dir = root / "models" / "untrained" / "model"
    build_tiny_clip(TINY).save(model_dir)
    index_examples(root, EmbeddingModel.load(model_dir), {"nouns": nouns, "cryptopunks": punks})
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return indexed_data_dir(tmp_path_factory.mktemp("web"), tokens=40)


@asynccontextmanager
async def serving(data_dir: Path) -> AsyncIterator[TestServer]:
    """The app over `data_dir` on a free 127.0.0.1 port."""
    server = TestServer(create_app(await NftSearch.open(data_dir), data_dir / IMAGES_DIR), host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def test_search_page_finds_results_and_similar_tokens_in_chromium(data_dir, tmp_path):
    async def scenario() -> None:
        async with serving(data_dir) as server, chromium_page(tmp_path / "profile") as page:
            await page.open(str(server.make_url("/")), (1280, 900))
            await page.wait_for("document.querySelectorAll('#collection option').length === 3")  # all + 2 collections
            await page.click("#q")
            await page.type_text("female with blonde bob and earring")
            await page.press_enter()
            await page.wait_for(f"document.querySelectorAll('#results .card').length === {PAGE_SIZE}")
            assert "q=female+with+blonde+bob" in await page.evaluate("location.hash")
            status = await page.evaluate("document.querySelector('#status').textContent")
            assert status.startswith(f"{PAGE_SIZE} results") and " ms on the server" in status
            visible_images_loaded = (
                "[...document.querySelectorAll('#results .card img')].filter(img => img.getBoundingClientRect().top"
                " < innerHeight).every(img => img.complete && img.naturalWidth === 512)"
            )
            await page.wait_for(visible_images_loaded)  # real PNGs through /img/, rendered
            assert (
                await page.evaluate("getComputedStyle(document.querySelector('.card img')).imageRendering")
                == "pixelated"
            )

            clicked = await page.evaluate(
                "(() => { const c = document.querySelector('#results .card');"
                " return [c.dataset.collection, c.dataset.tokenId, c.querySelector('.name').textContent]; })()"
            )
            await page.click("#results .card")
            await page.wait_for("document.querySelector('#source').classList.contains('shown')")
            await page.wait_for(f"document.querySelectorAll('#results .card').length === {PAGE_SIZE}")
            assert (
                await page.evaluate("document.querySelector('#source-name').textContent") == f"Similar to {clicked[2]}"
            )
            shown = await page.evaluate(
                "[...document.querySelectorAll('#results .card')].map(c => [c.dataset.collection, c.dataset.tokenId])"
            )
            assert clicked[:2] not in shown  # the token itself is left out of its similar tokens
            await page.wait_for(visible_images_loaded)
            png = await page.screenshot(ARTIFACTS / "search_page.png")
            assert Image.open(io.BytesIO(png)).size == (1280, 900)
            assert page.exceptions == []

    asyncio.run(scenario())


def test_json_api_answers_and_explains_bad_requests(data_dir):
    async def scenario() -> None:
        async with serving(data_dir) as server, aiohttp.ClientSession(server.make_url("")) as client:
            async with client.get(
                "/api/search", params={"q": "blonde bob", "k": "5", "collection": "cryptopunks"}
            ) as r:
                body = await r.json()
                assert r.status == 200 and r.headers["X-Content-Type-Options"] == "nosniff"
            assert [hit["rank"] for hit in body["hits"]] == [1, 2, 3, 4, 5]
            assert {hit["collection"] for hit in body["hits"]} == {"cryptopunks"}
            assert "png_path" not in body["hits"][0]  # server paths stay on the server
            assert set(body["timings_ms"]) == {"encode", "search", "total"}

            async with client.get("/api/similar", params={"collection": "nouns", "token_id": "3", "k": "4"}) as r:
                similar = await r.json()
            assert r.status == 200 and len(similar["hits"]) == 4
            assert ("nouns", "3") not in [(hit["collection"], hit["token_id"]) for hit in similar["hits"]]

            async with client.get("/api/collections") as r:
                assert await r.json() == [
                    {"collection": "nouns", "tokens": 40},
                    {"collection": "cryptopunks", "tokens": 40},
                ]

            for path, params, status, message in [
                ("/api/search", {"q": "  "}, 400, "empty query"),
                ("/api/search", {"q": "x", "k": "lots"}, 400, "whole number"),
                ("/api/search", {"q": "x", "k": "500"}, 400, "between 1 and 100"),
                ("/api/search", {"q": "x", "trait": "Female"}, 400, "TYPE=VALUE"),
                ("/api/similar", {"collection": "nouns"}, 400, "collection and token_id"),
                ("/api/similar", {"collection": "nouns", "token_id": "4040"}, 404, "not in the index"),
            ]:
                async with client.get(path, params=params) as r:
                    assert (r.status, r.content_type) == (status, "application/json")
                    assert message in (await r.json())["error"]

    asyncio.run(scenario())


async def raw_get(server: TestServer, target: str) -> tuple[int, bytes]:
    """GET `target` exactly as written (no client-side normalisation of `..` or escapes)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_image_route_serves_only_indexed_files_inside_the_images_dir(tmp_path):
    root = indexed_data_dir(tmp_path / "data", tokens=2)  # its own: the rows added below point outside
    images = root / IMAGES_DIR
    outside_png = root / "outside.png"  # a real image, but not under images/
    shutil.copy(images / "nouns" / "0.png", outside_png)
    (images / "evil").mkdir()
    (images / "evil" / "link.png").symlink_to("/etc/passwd")
    (images / "evil" / "dir-link").symlink_to(root, target_is_directory=True)
    escapes = {
        "absolute": "/etc/passwd",
        "dotdot": str(images / ".." / ".." / ".." / "etc" / "passwd"),
        "relative-dotdot": "images/../../../../etc/passwd",
        "symlink": str(images / "evil" / "link.png"),
        "symlinked-dir": str(images / "evil" / "dir-link" / "outside.png"),
        "outside": str(outside_png),
    }
    # Index rows that point outside the images dir, as a corrupted or hostile table could.
    row = lancedb.connect(lance_path(root)).open_table(TABLE_NAME).search().limit(1).to_arrow().to_pylist()[0]
    evil = [{**row, "collection": "evil", "token_id": name, "png_path": path} for name, path in escapes.items()]
    replace_partition(
        lance_path(root), "evil", pa.Table.from_pylist(evil, schema=embeddings_schema(len(row["vector"])))
    )

    async def scenario() -> None:
        async with serving(root) as server:
            status, body = await raw_get(server, "/img/nouns/0")
            assert status == 200 and body == (images / "nouns" / "0.png").read_bytes()
            for name in escapes:
                assert (await raw_get(server, f"/img/evil/{name}"))[0] == 404, name
            for target in [
                "/img/../../etc/passwd",
                "/img/%2e%2e/%2e%2e/etc/passwd",
                "/img/nouns/..%2F..%2F..%2Fetc%2Fpasswd",
                "/img/%2Fetc/passwd",
                "/img//etc/passwd",
                "/img/nouns/0/../../../../../etc/passwd",
                "/img/nouns/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                "/img/..%5C..%5Cetc%5Cpasswd/0",
            ]:
                status, body = await raw_get(server, target)
                assert status == 404 and b"root:x" not in body, target

    asyncio.run(scenario())
