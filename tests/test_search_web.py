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
from dataclasses import replace
from pathlib import Path

import aiohttp
import lancedb
import pyarrow as pa
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from nft_pipeline import schemas
from nft_pipeline.embedding import EmbeddingModel
from nft_pipeline.index import (
    TABLE_NAME,
    embeddings_schema,
    lance_path,
    replace_partition,
)
from nft_pipeline.search import NftSearch
from nft_pipeline.storage import DataLayout, write_table
from nft_pipeline.train.data import TrainingExample
from nft_pipeline.train.model import build_tiny_clip
from nft_pipeline.train.sample_data import nouns_inputs, punks_inputs
from nft_pipeline.web.app import IMAGES_DIR, create_app
from nft_pipeline.web.image_query import URL_LIMITS
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
    """The app over `data_dir` on a free 127.0.0.1 port (image URLs on "localhost" allowed, for the tests' own host)."""
    limits = replace(URL_LIMITS, allowed_private=("localhost",))
    server = TestServer(create_app(await NftSearch.open(data_dir), data_dir / IMAGES_DIR, limits), host="127.0.0.1")
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
            assert status.startswith("40 results") and " ms on the server" in status  # the punks: "female" is theirs
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


# ---------------------------------------------------------------- the described search on the page


def component_rows(collection: str, components: dict) -> pa.Table:
    """A `components` partition from ground-truth parts (mask, RGBA), as the components stage writes one."""

    def png(pixels) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        return buffer.getvalue()

    rows = [
        {
            "collection": collection, "trait_type": trait_type, "value": value, "n_tokens": 1, "method": "truth",
            "status": "ok", "reason": None, "mask_png": png(mask.astype("uint8") * 255), "rgba_png": png(rgba),
            "coverage": float(mask.mean()), "rounds": 0, "images_per_round": 0, "agreement": 1.0,
        }
        for (trait_type, value), (mask, rgba) in components.items()
    ]
    return pa.Table.from_pylist(rows, schema=schemas.COMPONENTS)


@pytest.fixture(scope="module")
def described_dir(tmp_path_factory) -> Path:
    """130 punks (pages past 100), two copies of punk 0 (duplicates), 24 Nouns with their components."""
    root = tmp_path_factory.mktemp("described-page")
    punks, _ = punks_inputs(range(130), root / IMAGES_DIR)
    copies = [TrainingExample("cryptopunks", f"0-copy-{n}", punks[0].image_path, punks[0].caption) for n in (1, 2)]
    nouns, lookup = nouns_inputs(range(24), root / IMAGES_DIR)
    model_dir = root / "models" / "untrained" / "model"
    build_tiny_clip(TINY).save(model_dir)
    index_examples(root, EmbeddingModel.load(model_dir), {"cryptopunks": punks + copies, "nouns": nouns})
    layout = DataLayout(root)
    write_table(component_rows("nouns", lookup["nouns"]), layout.partition_path("components", "nouns"), schemas.COMPONENTS)
    return root


CHIP_LABELS = "[...document.querySelectorAll('#chips .interp .chip-label')].map(c => c.textContent)"
CARDS = "document.querySelectorAll('#results .card').length"


async def open_page(page, server: TestServer) -> None:
    """The page at 1280 x 900, once its collection menu is filled (the page is ready)."""
    await page.open(str(server.make_url("/")), (1280, 900))
    await page.wait_for("document.querySelectorAll('#collection option').length === 3")


async def search_for(page, text: str) -> None:
    await page.evaluate("document.querySelector('#q').value = ''")
    await page.click("#q")
    await page.type_text(text)
    await page.press_enter()


def test_page_shows_the_query_as_chips_and_filters_by_facets_in_chromium(described_dir, tmp_path):
    async def scenario() -> None:
        async with serving(described_dir) as server, chromium_page(tmp_path / "profile") as page:
            await open_page(page, server)
            await search_for(page, "female with a blond bob")
            await page.wait_for(f"{CHIP_LABELS}.length === 2")
            assert await page.evaluate(CHIP_LABELS) == ["Type: Female 1, Female 2, Female 3", "Accessory: Blonde Bob"]
            await page.wait_for("!!document.querySelector('#results .card .matched')")
            assert await page.evaluate("document.querySelector('#results .card .matched').textContent") == "✓ female, blond bob"
            await page.screenshot(ARTIFACTS / "search_chips.png")

            # Remove the "female" chip: its words leave the query.
            await page.click("#chips .interp .remove")
            await page.wait_for(f"{CHIP_LABELS}.length === 1")
            assert await page.evaluate("document.querySelector('#q').value") == "with a blond bob"

            # Tick a facet value: it becomes a required filter, shown as a chip; then flip it to NOT.
            facet = "document.querySelector('#facets .facet[data-filter=\"Type=Female 2\"]')"
            await page.wait_for(f"!!{facet}")
            await page.click("#facets .facet[data-filter='Type=Female 2'] input")
            await page.wait_for("new URLSearchParams(location.hash.slice(1)).get('trait') === 'Type=Female 2'")
            await page.wait_for(f"{CHIP_LABELS}.includes('Type=Female 2')")
            await page.wait_for("[...document.querySelectorAll('#results .card')].every(c => c.title.includes('Female 2'))")
            flip = "#chips .interp[data-filter='Type=Female 2'] .flip"
            await page.click(flip)
            await page.wait_for("new URLSearchParams(location.hash.slice(1)).get('not_trait') === 'Type=Female 2'")
            await page.wait_for(f"{CHIP_LABELS}.includes('NOT Type=Female 2')")
            await page.wait_for(
                "[...document.querySelectorAll('#results .card')].length > 0 && "
                "[...document.querySelectorAll('#results .card')].every(c => !c.title.includes('Female 2'))"
            )
            await page.screenshot(ARTIFACTS / "search_facets_not.png")
            assert page.exceptions == []

    asyncio.run(scenario())


def test_page_pages_past_100_exports_collapses_and_outlines_in_chromium(described_dir, tmp_path):
    async def scenario() -> None:
        async with serving(described_dir) as server, chromium_page(tmp_path / "profile") as page:
            await open_page(page, server)
            await search_for(page, "punks")
            await page.wait_for("document.querySelector('#pager span')?.textContent === '1–24 of 132'")
            for _ in range(5):
                before = await page.evaluate("document.querySelector('#pager span').textContent")
                await page.evaluate("document.querySelector('#pager button:last-of-type').scrollIntoView()")
                await page.click("#pager button:last-of-type")
                await page.wait_for(f"document.querySelector('#pager span').textContent !== {before!r}")
            assert await page.evaluate("document.querySelector('#pager span').textContent") == "121–132 of 132"
            assert await page.evaluate(CARDS) == 12
            csv_text = await page.evaluate(
                "fetch(document.querySelector('#pager a.export').href).then(r => r.text())"
            )
            assert csv_text.splitlines()[0].startswith("rank,collection,token_id") and len(csv_text.splitlines()) == 133

            # Two copies of punk 0 collapse into its card, with a count.
            await search_for(page, "girl with a blonde bob")
            await page.wait_for("document.querySelector('#results .card .matched')?.textContent === '✓ girl, blonde bob'")
            assert await page.evaluate("document.querySelectorAll('#results .dupes').length") == 0
            await page.evaluate("scrollTo(0, 0)")
            await page.click("#collapse")
            await page.wait_for("!!document.querySelector('#results .dupes')")
            assert await page.evaluate("document.querySelector('#results .dupes').textContent") == "×3"

            # Hovering a Noun outlines its matched glasses (a component) over the image.
            await search_for(page, "noun in blue glasses")
            await page.wait_for("!!document.querySelector('#results .card[data-collection=nouns] .matched')")
            await page.evaluate("document.querySelector('#results .card').dispatchEvent(new MouseEvent('mouseenter'))")
            await page.wait_for("(() => { const o = document.querySelector('#results .card img.outline');"
                                " return o && o.complete && o.naturalWidth === 512; })()")
            await page.screenshot(ARTIFACTS / "search_outline.png")
            assert page.exceptions == []

    asyncio.run(scenario())


def test_page_searches_by_uploaded_image_and_by_url_in_chromium(described_dir, tmp_path):
    png = (described_dir / IMAGES_DIR / "cryptopunks" / "7.png").read_bytes()

    async def scenario() -> None:
        host = web.Application()
        host.router.add_get("/punk.png", lambda request: web.Response(body=png, content_type="image/png"))
        image_server = TestServer(host, host="127.0.0.1")
        await image_server.start_server()
        try:
            async with serving(described_dir) as server, chromium_page(tmp_path / "profile") as page:
                await open_page(page, server)
                await page.evaluate(
                    "fetch('/img/cryptopunks/7').then(r => r.blob()).then(blob => {"
                    " const files = new DataTransfer(); files.items.add(new File([blob], 'mine.png', {type: 'image/png'}));"
                    " const input = document.querySelector('#upload'); input.files = files.files;"
                    " input.dispatchEvent(new Event('change')); })"
                )
                await page.wait_for("document.querySelector('#source-name').textContent === 'Similar to your image'")
                await page.wait_for(f"{CARDS} === {PAGE_SIZE}")
                assert await page.evaluate("document.querySelector('#results .card').dataset.tokenId") == "7"

                await page.click("#url")
                await page.type_text(f"http://localhost:{image_server.port}/punk.png")
                await page.click("#url-button")
                await page.wait_for("document.querySelector('#source-name').textContent === 'Similar to the image at'")
                await page.wait_for(f"{CARDS} === {PAGE_SIZE}")
                assert await page.evaluate("document.querySelector('#results .card').dataset.tokenId") == "7"
                await page.screenshot(ARTIFACTS / "search_by_url.png")

                await page.evaluate("document.querySelector('#url').value = ''")
                await page.click("#url")
                await page.type_text("http://169.254.169.254/latest/meta-data/")
                await page.click("#url-button")
                await page.wait_for("!!document.querySelector('#notices .error')")
                assert "private, loopback or reserved" in await page.evaluate("document.querySelector('#notices .error').textContent")
                assert page.exceptions == []
        finally:
            await image_server.close()

    asyncio.run(scenario())
