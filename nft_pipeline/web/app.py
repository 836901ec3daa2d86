"""The search web page and its JSON API, served by aiohttp on 127.0.0.1.

Routes:

- `GET /`: the page (static/index.html: one file, its CSS and JS inline);
- `GET /api/search?q=&k=&collection=&trait=&hybrid=1`: text search (`trait` repeatable);
- `GET /api/similar?collection=&token_id=&k=&in_collection=`: tokens that look like a token;
- `GET /api/collections`: indexed collections and their token counts;
- `GET /api/token/<collection>/<token_id>`: one token's name, caption and tags;
- `GET /img/<collection>/<token_id>`: a token's standardized PNG.

Images are looked up by key in the index, never by a path taken from the request, and a file is
only served when its real path (symlinks resolved) lies inside `<data dir>/images`: an index row
pointing elsewhere, or a symlink out of that directory, is a 404 like an unknown token. Captions
and names come from untrusted metadata, so the page inserts them as text, never as HTML, and the
Content-Security-Policy allows no script or image from anywhere but this server.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from nft_pipeline.index import IndexMissing
from nft_pipeline.search import MAX_K, NftSearch, SearchError, SearchResults, UnknownToken
from nft_pipeline.storage import default_data_dir
from nft_pipeline.web.map_routes import add_map_routes

IMAGES_DIR = "images"  # under the data directory: where the standardize stage writes PNGs
PAGE = Path(__file__).parent / "static" / "index.html"
DEFAULT_K = 24
SEARCH = web.AppKey("search", NftSearch)
IMAGES_ROOT = web.AppKey("images_root", Path)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def contained_file(path: Path, root: Path) -> Path | None:
    """`path` with every symlink resolved, if that is a regular file inside `root`; else None."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop
        return None
    return resolved if resolved.is_relative_to(root.resolve()) and resolved.is_file() else None


def _k(request: web.Request) -> int:
    text = request.query.get("k", str(DEFAULT_K))
    if not text.isdigit():
        raise SearchError(f"k must be a whole number between 1 and {MAX_K}, got {text!r}")
    return int(text)


def _results(results: SearchResults) -> web.Response:
    return web.json_response(results.to_json())


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})


async def api_search(request: web.Request) -> web.Response:
    query = request.query
    search = request.app[SEARCH]
    return _results(
        await search.text(
            query.get("q", ""),
            _k(request),
            collection=query.get("collection") or None,
            traits=query.getall("trait", []),
            hybrid=query.get("hybrid") in ("1", "true", "on"),
        )
    )


async def api_similar(request: web.Request) -> web.Response:
    query = request.query
    if not query.get("collection") or not query.get("token_id"):
        raise SearchError("similar needs collection and token_id")
    search = request.app[SEARCH]
    return _results(
        await search.similar_to_token(
            query["collection"], query["token_id"], _k(request), in_collection=query.get("in_collection") or None
        )
    )


async def api_collections(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SEARCH].collections())


async def api_token(request: web.Request) -> web.Response:
    hit = await request.app[SEARCH].token(request.match_info["collection"], request.match_info["token_id"])
    if hit is None:
        raise UnknownToken("no such token in the index")
    return web.json_response(hit.to_json())


async def image(request: web.Request) -> web.FileResponse:
    png_path = await request.app[SEARCH].png_path(request.match_info["collection"], request.match_info["token_id"])
    root = request.app[IMAGES_ROOT]
    path = contained_file(root.parent / png_path, root) if png_path else None
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "max-age=3600"})


@web.middleware
async def json_errors_and_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Search errors as JSON (404 for an unknown token, 400 otherwise) and security headers on every response."""
    try:
        response = await handler(request)
    except UnknownToken as error:
        response = web.json_response({"error": str(error)}, status=404)
    except SearchError as error:
        response = web.json_response({"error": str(error)}, status=400)
    except web.HTTPException as error:
        error.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


def create_app(search: NftSearch, images_root: Path) -> web.Application:
    """The page and API over an open `NftSearch`; images are served from `images_root` only."""
    app = web.Application(middlewares=[json_errors_and_headers])
    app[SEARCH] = search
    app[IMAGES_ROOT] = images_root
    app.router.add_get("/", page)
    app.router.add_get("/api/search", api_search)
    app.router.add_get("/api/similar", api_similar)
    app.router.add_get("/api/collections", api_collections)
    app.router.add_get("/api/token/{collection}/{token_id}", api_token)
    app.router.add_get("/img/{collection}/{token_id}", image)
    add_map_routes(app, images_root.parent)  # the /map page (map_routes.py): maps live beside the images
    return app


async def _app_for(data_dir: Path, model_dir: Path | None) -> web.Application:
    return create_app(await NftSearch.open(data_dir, model_dir), data_dir / IMAGES_DIR)


def serve_command(args: argparse.Namespace) -> None:
    """`nft-pipeline serve`: the page on http://127.0.0.1:PORT until Ctrl-C (never on other interfaces)."""
    data_dir = (args.data_dir or default_data_dir()).resolve()
    try:
        web.run_app(
            _app_for(data_dir, args.model_dir),
            host="127.0.0.1",
            port=args.port,
            print=lambda _: print(f"search page on http://127.0.0.1:{args.port}/ (index in {data_dir}); Ctrl-C stops"),
            access_log=None,
        )
    except (SearchError, IndexMissing) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
