"""The search web page and its JSON API, served by aiohttp on 127.0.0.1.

Routes:

- `GET /`: the page (static/index.html: one file, its CSS and JS inline);
- `GET /api/search?q=&k=&offset=&collection=&trait=&not_trait=&collapse=1`: the described search
  (search.py `described`): hits, the query's `interpretation`, `facets`, `total` for paging;
  `hybrid=1` or `mode=embedding` for the other rankings (`trait`/`not_trait` repeatable,
  TYPE=VALUE with alternatives joined by "|");
- `GET /api/export?format=csv|json&...`: the whole described result set (up to 10,000 rows);
- `POST /api/search/image` (the image as the body) and `GET /api/search/url?url=`: tokens that look
  like an uploaded image or an image on the web (web/image_query.py: capped, sniffed, SSRF-guarded);
- `GET /api/similar?collection=&token_id=&k=&in_collection=`: tokens that look like a token;
- `GET /api/collections`: indexed collections and their token counts;
- `GET /api/token/<collection>/<token_id>`: one token's name, caption and tags;
- `GET /img/<collection>/<token_id>`: a token's standardized PNG;
- `GET /api/outline/<collection>/<token_id>?trait_type=&value=`: that trait's component outlined as
  it shows in the token (web/outlines.py), laid over a hit on hover.

Images are looked up by key in the index, never by a path taken from the request, and a file is
only served when its real path (symlinks resolved) lies inside `<data dir>/images`: an index row
pointing elsewhere, or a symlink out of that directory, is a 404 like an unknown token. Captions
and names come from untrusted metadata, so the page inserts them as text, never as HTML, and the
Content-Security-Policy allows no script or image from anywhere but this server.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from dataclasses import dataclass
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from nft_pipeline.http_client import HttpLimits
from nft_pipeline.index import IndexMissing
from nft_pipeline.search import MAX_EXPORT, MAX_IMAGE_BYTES, MAX_K, NftSearch, SearchError, SearchResults, UnknownToken
from nft_pipeline.storage import default_data_dir
from nft_pipeline.web.image_query import URL_LIMITS, fetched_image, uploaded_image
from nft_pipeline.web.map_routes import add_map_routes
from nft_pipeline.web.outlines import ComponentOutlines

IMAGES_DIR = "images"  # under the data directory: where the standardize stage writes PNGs
PAGE = Path(__file__).parent / "static" / "index.html"
DEFAULT_K = 24
SEARCH = web.AppKey("search", NftSearch)
IMAGES_ROOT = web.AppKey("images_root", Path)
URL_FETCH_LIMITS = web.AppKey("url_fetch_limits", HttpLimits)
OUTLINES = web.AppKey("outlines", ComponentOutlines)
MAX_REQUEST_LINE = 1024 * 1024  # bytes of a request line: a query of up to ~300 KB, URL-encoded
EXPORT_COLUMNS = ["rank", "collection", "token_id", "name", "similarity", "matched", "duplicates", "caption"]
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


def _whole_number(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name, str(default))
    if not text.isdigit():
        raise SearchError(f"{name} must be a whole number, got {text[:40]!r}")
    return int(text)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name) in ("1", "true", "on")


def _results(results: SearchResults) -> web.Response:
    return web.json_response(results.to_json(), dumps=_dumps)


def _dumps(body: object) -> str:
    return json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True)
class SearchFilters:
    """The filters every result-returning route takes from the query string, read in one place.

    Why one place: the search, export, image and URL routes share them, and a new filter (a colour,
    a predicted trait) is one field here and one keyword of `NftSearch.described`.
    """

    collection: str | None
    traits: list[str]
    not_traits: list[str]
    collapse: bool
    colours: list[str]  # "blue", "blue background" (needs the `token_colours` asset)

    @classmethod
    def from_request(cls, request: web.Request) -> SearchFilters:
        query = request.query
        return cls(
            collection=query.get("collection") or None,
            traits=query.getall("trait", []),
            not_traits=query.getall("not_trait", []),
            collapse=_flag(request, "collapse"),
            colours=query.getall("colour", []),
        )

    def as_kwargs(self) -> dict:
        return {
            "collection": self.collection,
            "traits": self.traits,
            "not_traits": self.not_traits,
            "collapse": self.collapse,
            "colours": self.colours,
        }


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})


async def api_search(request: web.Request) -> web.Response:
    query = request.query
    search = request.app[SEARCH]
    filters = SearchFilters.from_request(request)
    if _flag(request, "hybrid") or query.get("mode") == "embedding":
        return _results(
            await search.text(
                query.get("q", ""), _k(request), filters.collection, filters.traits, hybrid=_flag(request, "hybrid")
            )
        )
    return _results(
        await search.described(
            query.get("q", ""),
            _k(request),
            offset=_whole_number(request, "offset", 0),
            facets=query.get("facets") != "0",
            **filters.as_kwargs(),
        )
    )


async def api_export(request: web.Request) -> web.Response:
    """The whole described result set as CSV or JSON, as a download."""
    export_format = request.query.get("format", "csv")
    if export_format not in ("csv", "json"):
        raise SearchError(f"format must be csv or json, got {export_format[:20]!r}")
    limit = min(_whole_number(request, "limit", MAX_EXPORT), MAX_EXPORT)
    results = await request.app[SEARCH].described(
        request.query.get("q", ""), max(limit, 1), facets=False, most=MAX_EXPORT,
        **SearchFilters.from_request(request).as_kwargs(),
    )
    rows = [
        {
            "rank": hit.rank, "collection": hit.collection, "token_id": hit.token_id, "name": hit.name,
            "similarity": round(hit.similarity, 5), "matched": "; ".join(hit.matched),
            "duplicates": hit.duplicates, "caption": hit.caption,
        }
        for hit in results.hits
    ]
    disposition = {"Content-Disposition": f'attachment; filename="nft-search.{export_format}"'}
    if export_format == "json":
        body = {"interpretation": results.interpretation, "total": results.total, "hits": rows}
        return web.json_response(body, headers=disposition, dumps=_dumps)
    text = io.StringIO()
    writer = csv.DictWriter(text, EXPORT_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return web.Response(text=text.getvalue(), content_type="text/csv", headers=disposition)


async def api_search_image(request: web.Request) -> web.Response:
    filters = SearchFilters.from_request(request)
    image = await uploaded_image(request)
    return _results(await request.app[SEARCH].similar_to_image(image, _k(request), filters.collection, filters.traits))


async def api_search_url(request: web.Request) -> web.Response:
    filters = SearchFilters.from_request(request)
    image = await fetched_image(request.query.get("url", ""), request.app[URL_FETCH_LIMITS])
    return _results(await request.app[SEARCH].similar_to_image(image, _k(request), filters.collection, filters.traits))


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


async def _token_png(request: web.Request) -> Path:
    """The token's standardized PNG, if the index has it inside the images dir; 404 otherwise."""
    png_path = await request.app[SEARCH].png_path(request.match_info["collection"], request.match_info["token_id"])
    root = request.app[IMAGES_ROOT]
    path = contained_file(root.parent / png_path, root) if png_path else None
    if path is None:
        raise web.HTTPNotFound()
    return path


async def image(request: web.Request) -> web.FileResponse:
    return web.FileResponse(await _token_png(request), headers={"Cache-Control": "max-age=3600"})


async def outline(request: web.Request) -> web.Response:
    """A trait's component outlined as it shows in the token's image (a transparent PNG); 404 without one."""
    path = await _token_png(request)
    trait_type, value = request.query.get("trait_type", ""), request.query.get("value", "")
    png = await asyncio.to_thread(
        request.app[OUTLINES].outline, request.match_info["collection"], trait_type, value, path
    )
    if png is None:
        raise web.HTTPNotFound()
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "max-age=3600"})


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


def create_app(search: NftSearch, images_root: Path, url_fetch_limits: HttpLimits = URL_LIMITS) -> web.Application:
    """The page and API over an open `NftSearch`; images are served from `images_root` only, and
    searched-by URLs fetched under `url_fetch_limits` (tests allow their own loopback host there)."""
    app = web.Application(
        middlewares=[json_errors_and_headers],
        client_max_size=MAX_IMAGE_BYTES + 1,
        # A pasted essay is answered (cut, with a notice) rather than refused by the HTTP parser.
        handler_args={"max_line_size": MAX_REQUEST_LINE, "max_field_size": MAX_REQUEST_LINE},
    )
    app[SEARCH] = search
    app[IMAGES_ROOT] = images_root
    app[URL_FETCH_LIMITS] = url_fetch_limits
    app[OUTLINES] = ComponentOutlines(images_root.parent)
    app.router.add_get("/", page)
    app.router.add_get("/api/search", api_search)
    app.router.add_get("/api/export", api_export)
    app.router.add_post("/api/search/image", api_search_image)
    app.router.add_get("/api/search/url", api_search_url)
    app.router.add_get("/api/similar", api_similar)
    app.router.add_get("/api/collections", api_collections)
    app.router.add_get("/api/token/{collection}/{token_id}", api_token)
    app.router.add_get("/img/{collection}/{token_id}", image)
    app.router.add_get("/api/outline/{collection}/{token_id}", outline)
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
