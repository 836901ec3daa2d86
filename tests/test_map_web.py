"""The `/map` page in headless Chromium and its JSON API, over real maps of a real index.

The index holds 150 real CryptoPunks and 30 Nouns embedded by an untrained tiny model; their maps
are built by `build_map` and written where the assets write them. The test hovers a token, runs a
text search and a trait filter and checks what they highlight, draws a lasso with the mouse and
checks the exported CSV/JSON against the tokens inside it, opens a token and its similar tokens,
and saves a screenshot to test-artifacts/map.png.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import aiohttp
import pytest

from nft_pipeline.collection_map.build import ALL_MAP, COLLECTION_MAP, build_map
from nft_pipeline.collection_map.embeddings import read_map_input
from nft_pipeline.location import data_location
from nft_pipeline.storage import DataLayout, write_table
from tests.chromium import chromium_page
from tests.conftest import ARTIFACTS
from tests.test_search_web import indexed_data_dir, serving

BACKGROUND = "16,18,23"


def write_maps(data_dir: Path) -> None:
    """The cryptopunks map and the combined map, written as the `collection_map` / `combined_map` assets write them."""
    layout = DataLayout(data_location(str(data_dir)))
    for name, collection, path in [
        ("cryptopunks", "cryptopunks", layout.partition_path("collection_map", "cryptopunks")),
        (ALL_MAP, None, layout.table_path("combined_map")),
    ]:
        built = build_map(read_map_input(data_dir, collection), COLLECTION_MAP.empty_table(), data_dir, name)
        write_table(built.table, path, COLLECTION_MAP)


@pytest.fixture(scope="module")
def map_data_dir(tmp_path_factory) -> Path:
    data_dir = indexed_data_dir(tmp_path_factory.mktemp("map_web"), tokens=150)
    write_maps(data_dir)
    return data_dir


def test_map_page_hover_search_lasso_and_similar_in_chromium(map_data_dir, tmp_path):
    async def scenario() -> None:
        async with serving(map_data_dir) as server, chromium_page(tmp_path / "profile") as page:
            await page.open(str(server.make_url("/map?map=cryptopunks")), (1400, 900))
            await page.wait_for("window.mapApp && mapApp.ready && mapApp.firstPaintMs !== null")
            assert await page.evaluate("document.querySelectorAll('#map option').length") == 2  # everything + cryptopunks
            count = await page.evaluate("mapApp.state.count")
            assert count == 150
            clusters = await page.evaluate("mapApp.state.data.clusters.length")
            assert clusters >= 2 and await page.evaluate("document.querySelectorAll('#clusters li').length") == clusters
            await page.wait_for("mapApp.thumbnailsPaintMs !== null")  # the atlas sheets loaded
            drawn = await page.evaluate(
                "(() => { const c = document.querySelector('#canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                f" let n = 0; for (let i = 0; i < d.length; i += 4) if (`${{d[i]}},${{d[i+1]}},${{d[i+2]}}` !== '{BACKGROUND}') n++; return n; }})()"
            )
            assert drawn > 150 * 20  # every token drawn as more than a few pixels

            # Hover: the token under the mouse, with its caption from the API.
            origin = await page.evaluate("(() => { const r = document.querySelector('#canvas').getBoundingClientRect(); return [r.left, r.top]; })()")
            target = await page.evaluate("mapApp.state.data.clusters[0] && mapApp.state.data.cluster.indexOf(mapApp.state.data.clusters[0].cluster)")
            sx, sy = await page.evaluate(f"mapApp.screenOf({target})")
            await page.call("Input.dispatchMouseEvent", type="mouseMoved", x=origin[0] + sx, y=origin[1] + sy)
            await page.wait_for("!document.querySelector('#tooltip').hidden && document.querySelector('#tooltip .caption').textContent.length > 0")
            token_id = await page.evaluate(f"mapApp.state.data.token_id[{target}]")
            async with aiohttp.ClientSession() as client, client.get(server.make_url(f"/api/token/cryptopunks/{token_id}")) as response:
                token = await response.json()
            assert await page.evaluate("document.querySelector('#tooltip .caption').textContent") == token["caption"]
            assert await page.evaluate("document.querySelector('#tooltip .name').textContent") == token["name"]

            # A text search highlights its hits (all 100 are on this map) and dims the rest.
            await page.click("#q")
            await page.type_text("female with blonde bob")
            await page.press_enter()
            await page.wait_for("mapApp.state.highlight !== null")
            lit = await page.evaluate("mapApp.state.highlight.reduce((a, b) => a + b, 0)")
            assert lit == 100 and "100 of the 100 best hits" in await page.evaluate("document.querySelector('#status').textContent")
            assert "q=female+with+blonde+bob" in await page.evaluate("location.search")
            # A trait filter alone highlights exactly the tokens with the trait.
            await page.evaluate("document.querySelector('#q').value = ''; document.querySelector('#trait').value = 'Type=Male 1'")
            await page.click("#query-form button[type=submit]")
            await page.wait_for("document.querySelector('#status').textContent.includes('with Type=Male 1')")
            lit_keys = await page.evaluate("[...mapApp.state.highlight.keys()].filter(i => mapApp.state.highlight[i]).map(i => mapApp.state.data.token_id[i])")
            with_trait = await page.evaluate(
                "(() => { const d = mapApp.state.data, t = d.trait_names.indexOf('Type: Male 1'); return d.token_id.filter((_, i) => d.traits[i].includes(t)); })()"
            )
            assert sorted(lit_keys) == sorted(with_trait) and len(with_trait) > 10
            await page.click("#clear")

            # Lasso: a real drag around the middle of the map; the export lists exactly the tokens inside it.
            await page.click("#lasso-mode")
            width, height = await page.evaluate("[mapApp.state.width, mapApp.state.height]")
            box = [(width * 0.3, height * 0.3), (width * 0.7, height * 0.3), (width * 0.7, height * 0.7), (width * 0.3, height * 0.7)]
            path = [*box, box[0]]
            await page.call("Input.dispatchMouseEvent", type="mousePressed", x=origin[0] + path[0][0], y=origin[1] + path[0][1], button="left", clickCount=1)
            for (x0, y0), (x1, y1) in zip(path, path[1:], strict=False):
                for step in range(1, 6):
                    x, y = x0 + (x1 - x0) * step / 5, y0 + (y1 - y0) * step / 5
                    await page.call("Input.dispatchMouseEvent", type="mouseMoved", x=origin[0] + x, y=origin[1] + y, button="left", buttons=1)
            await page.call("Input.dispatchMouseEvent", type="mouseReleased", x=origin[0] + path[-1][0], y=origin[1] + path[-1][1], button="left", clickCount=1)
            await page.wait_for("!document.querySelector('#selection-panel').hidden")
            positions = await page.evaluate("mapApp.state.data.token_id.map((t, i) => [t, ...mapApp.screenOf(i)])")
            inside = {t for t, x, y in positions if width * 0.3 < x < width * 0.7 and height * 0.3 < y < height * 0.7}
            rows = list(csv.DictReader(io.StringIO(await page.evaluate("mapApp.selectionCsv()"))))
            assert inside and {row["token_id"] for row in rows} == inside and {row["collection"] for row in rows} == {"cryptopunks"}
            exported = json.loads(await page.evaluate("mapApp.selectionJson()"))
            assert {t["token_id"] for t in exported["tokens"]} == inside and exported["map"] == "cryptopunks"
            assert await page.evaluate("document.querySelector('#export-csv').href.startsWith('blob:')")
            assert await page.evaluate("document.querySelector('#selection-count').textContent") == str(len(inside))
            await page.click("#lasso-mode")

            # Click a token: its panel, then its similar tokens highlighted and listed.
            await page.call("Input.dispatchMouseEvent", type="mousePressed", x=origin[0] + sx, y=origin[1] + sy, button="left", clickCount=1)
            await page.call("Input.dispatchMouseEvent", type="mouseReleased", x=origin[0] + sx, y=origin[1] + sy, button="left", clickCount=1)
            await page.wait_for(f"!document.querySelector('#token-panel').hidden && mapApp.state.active === {target}")
            await page.click("#similar")
            await page.wait_for("document.querySelectorAll('#similar-list li').length === 24")
            assert await page.evaluate("mapApp.state.highlight.reduce((a, b) => a + b, 0)") == 25  # the token and its 24
            await page.click("#search-cluster")
            await page.wait_for("mapApp.state.scope !== null && document.querySelector('#clusters li.active') !== null")
            await page.screenshot(ARTIFACTS / "map.png")
            assert page.exceptions == []

    asyncio.run(scenario())


def test_map_api_lists_maps_serves_points_and_refuses_bad_names(map_data_dir):
    async def scenario() -> None:
        async with serving(map_data_dir) as server, aiohttp.ClientSession(server.make_url("")) as client:
            async with client.get("/api/map/maps") as r:
                maps = await r.json()
            assert [m["map"] for m in maps] == [ALL_MAP, "cryptopunks"] and [m["tokens"] for m in maps] == [300, 150]
            async with client.get("/api/map/points", params={"map": ALL_MAP}) as r:
                points = await r.json()
            assert r.status == 200 and len(points["token_id"]) == 300 and points["collections"] == ["cryptopunks", "nouns"]
            assert all(0 <= v <= 1 for v in points["x"] + points["y"])
            async with client.get(f"/map/atlas/{points['atlases'][0]}.png") as r:
                assert r.status == 200 and r.headers["Content-Type"] == "image/png" and "immutable" in r.headers["Cache-Control"]
            for path, status in [("/api/map/points?map=nope", 404), ("/map/atlas/..%2F..%2Fsecret.png", 404), ("/map/atlas/abc.png", 404)]:
                async with client.get(path) as r:
                    assert r.status == status, path
            async with client.get("/api/map/points", params={"map": "nope"}) as r:
                assert "collection_map" in (await r.json())["error"]
            async with client.get("/map") as r:
                page = await r.text()
            assert "/*MAP_JS*/" not in page and "mapApp" in page and r.headers["Content-Security-Policy"].startswith("default-src 'none'")

    asyncio.run(scenario())
