"""The `/map` page and its JSON API: the collection maps (the `collection_map` / `combined_map`
assets) drawn in the browser, linked to the search API of app.py.

Routes (added to an app by `add_map_routes`; they need only the data directory, so a map can be
served without a search index, as the benchmark does):

- `GET /map`: the page. map.html with map.css and map.js inlined, because the app's
  Content-Security-Policy allows inline scripts and styles only;
- `GET /api/map/maps`: the maps there are (`__all__` for everything, then one per collection)
  with their token and cluster counts;
- `GET /api/map/points?map=`: one map, column by column (compact for 100,000 points): keys,
  positions, clusters, thumbnail slots, the clusters with their labels, and each token's traits
  (read from the search index when there is one) for the trait filter;
- `GET /map/atlas/<sha256>.png`: a thumbnail sheet. The name must be a sha256 (no path is taken
  from the request) and, being content-addressed, the sheet is cached for good.

Map tables are read once per file version (path, mtime, size), so a refreshed map is served on
the next request.
"""

from __future__ import annotations

import asyncio
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from aiohttp import web

from nft_pipeline.collection_map.atlas import ATLAS_NAME, atlas_path
from nft_pipeline.collection_map.build import ALL_MAP, COLLECTION_MAP
from nft_pipeline.collection_map.settings import MapSettings
from nft_pipeline.storage import read_table, safe_name

STATIC = Path(__file__).parent / "static"
MAP_DATA_DIR = web.AppKey("map_data_dir", Path)
COMBINED_TABLE, PARTITIONED_TABLE = "combined_map", "collection_map"


def map_page_html() -> str:
    """map.html with its stylesheet and script inlined (read per request: the files are small, and edits show at once)."""
    page = (STATIC / "map.html").read_text()
    page = page.replace("/*MAP_CSS*/", (STATIC / "map.css").read_text())
    return page.replace("/*MAP_JS*/", (STATIC / "map.js").read_text())


def map_table_path(data_dir: Path, name: str) -> Path:
    """Where the assets write map `name` (`safe_name` keeps a request's name inside the tables directory)."""
    tables_dir = Path(data_dir) / "tables"
    return tables_dir / f"{COMBINED_TABLE}.parquet" if name == ALL_MAP else tables_dir / PARTITIONED_TABLE / f"{safe_name(name)}.parquet"


def _map_tables(data_dir: Path) -> dict[str, Path]:
    """Map name -> its table file: `__all__` for the combined map, the collection slug for the others."""
    found = {}
    combined = map_table_path(data_dir, ALL_MAP)
    if combined.is_file():
        found[ALL_MAP] = combined
    for path in sorted((Path(data_dir) / "tables" / PARTITIONED_TABLE).glob("*.parquet")):
        collection = pq.read_table(path, columns=["collection"]).slice(0, 1)["collection"].to_pylist()
        if collection:
            found[collection[0]] = path
    return found


def _traits(data_dir: Path, collection: str | None) -> dict[tuple[str, str], list[str]]:
    """'Type: Zombie'-style traits of each indexed token of `collection` (all when None); empty without an index."""
    import lancedb  # only when a map is first served

    from nft_pipeline.index import TABLE_NAME, lance_path, sql_literal

    db = lancedb.connect(lance_path(data_dir))
    if TABLE_NAME not in db.list_tables().tables:
        return {}
    query = db.open_table(TABLE_NAME).search().select(["collection", "token_id", "tags"]).limit(None)
    if collection is not None:
        query = query.where(f"collection = {sql_literal(collection)}")
    rows = query.to_arrow().to_pylist()
    return {
        (row["collection"], row["token_id"]): [f"{tag['trait_type']}: {tag['value']}" if tag["trait_type"] else tag["value"] for tag in row["tags"]]
        for row in rows
    }


@lru_cache(maxsize=8)
def _points(data_dir: Path, name: str, path: Path, mtime_ns: int, size: int) -> bytes:
    """The points of one map version as JSON bytes (cached per file version: mtime and size are part of the key)."""
    table = read_table(path, COLLECTION_MAP)
    table = table.filter(pc.equal(table["status"], "ok"))
    collections = sorted(set(table["collection"].to_pylist()))
    collection_index = {c: i for i, c in enumerate(collections)}
    atlases = sorted({a for a in table["atlas"].to_pylist() if a})
    atlas_index = {a: i for i, a in enumerate(atlases)}
    keys = list(zip(table["collection"].to_pylist(), table["token_id"].to_pylist(), strict=True))
    traits_by_key = _traits(data_dir, None if name == ALL_MAP else name)
    trait_names: dict[str, int] = {}
    token_traits = [[trait_names.setdefault(t, len(trait_names)) for t in traits_by_key.get(key, [])] for key in keys]
    clusters: dict[int, dict[str, Any]] = {}
    for cluster, label, x, y in zip(*(table[c].to_pylist() for c in ("cluster", "cluster_label", "x", "y")), strict=True):
        if cluster >= 0:
            entry = clusters.setdefault(cluster, {"cluster": cluster, "label": label, "size": 0, "sx": 0.0, "sy": 0.0})
            entry["size"] += 1
            entry["sx"] += x
            entry["sy"] += y
    settings = MapSettings()
    body = {
        "map": name,
        "layout_version": table["layout_version"][0].as_py() if table.num_rows else None,
        "collections": collections,
        "collection": [collection_index[c] for c, _ in keys],
        "token_id": [t for _, t in keys],
        "x": [round(v, 6) for v in table["x"].to_pylist()],
        "y": [round(v, 6) for v in table["y"].to_pylist()],
        "cluster": table["cluster"].to_pylist(),
        "atlases": atlases,
        "atlas": [atlas_index.get(a, -1) for a in table["atlas"].to_pylist()],
        "slot": table["atlas_slot"].to_pylist(),
        "thumbnail_px": settings.thumbnail_px,
        "atlas_columns": settings.atlas_columns,
        "clusters": [
            {"cluster": c["cluster"], "label": c["label"], "size": c["size"], "x": c["sx"] / c["size"], "y": c["sy"] / c["size"]}
            for c in sorted(clusters.values(), key=lambda c: (-c["size"], c["cluster"]))
        ],
        "trait_names": list(trait_names),
        "traits": token_traits,
    }
    return json.dumps(body, separators=(",", ":")).encode()


async def page(request: web.Request) -> web.Response:
    return web.Response(text=map_page_html(), content_type="text/html", headers={"Cache-Control": "no-cache"})


async def api_maps(request: web.Request) -> web.Response:
    data_dir = request.app[MAP_DATA_DIR]
    maps = []
    for name, path in (await asyncio.to_thread(_map_tables, data_dir)).items():
        table = await asyncio.to_thread(read_table, path, COLLECTION_MAP)
        ok = pc.equal(table["status"], "ok")
        clusters = {c for c in table["cluster"].filter(ok).to_pylist() if c >= 0}
        maps.append({"map": name, "tokens": pc.sum(ok).as_py() or 0, "clusters": len(clusters)})
    return web.json_response(maps)


async def api_points(request: web.Request) -> web.Response:
    data_dir = request.app[MAP_DATA_DIR]
    name = request.query.get("map", ALL_MAP)
    path = map_table_path(data_dir, name)
    if not path.is_file():
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"no map named {name!r}: materialize the `collection_map` (or `combined_map`) asset"}),
            content_type="application/json",
        )
    stat = path.stat()
    body = await asyncio.to_thread(_points, data_dir, name, path, stat.st_mtime_ns, stat.st_size)
    return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-cache"})


async def atlas(request: web.Request) -> web.FileResponse:
    digest = request.match_info["digest"]
    path = atlas_path(request.app[MAP_DATA_DIR], digest) if ATLAS_NAME.match(digest) else None
    if path is None or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable"})


def add_map_routes(app: web.Application, data_dir: Path) -> web.Application:
    """The map page and its API on `app`, reading maps and atlases under `data_dir`."""
    app[MAP_DATA_DIR] = Path(data_dir)
    app.router.add_get("/map", page)
    app.router.add_get("/api/map/maps", api_maps)
    app.router.add_get("/api/map/points", api_points)
    app.router.add_get("/map/atlas/{digest}.png", atlas)
    return app
