"""Real sources at scale: ERC-1155 `{id}` URIs, Alchemy's cached copies as the last resort, and
subdomain IPFS gateways, end to end against servers on 127.0.0.1.

A small Alchemy-style server lists three ERC-1155 tokens whose `tokenUri` carries `{id}`; their
metadata points at images that are gone, and the listing carries `image.cachedUrl` / `pngUrl`.
Discovery fills in the ids as the standard says, the downloader falls back to the cached copies
and records which source served the bytes.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pyarrow as pa
from aiohttp import web

from nft_pipeline.blobs import BlobStore
from nft_pipeline.catalog import CatalogEntry
from nft_pipeline.discovery import discover_collection_tokens
from nft_pipeline.download import DownloadSettings, MediaDownloader, media_jobs
from nft_pipeline.http_client import HttpLimits
from nft_pipeline.local_server import running_app
from nft_pipeline.source import SourceEndpoint
from tests.hostile_server import JPEG, PNG, running_hostile_servers

CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
CONTRACT = "0x" + "ab" * 20


def erc1155_source(hits: dict[str, int]) -> web.Application:
    """getNFTsForContract for tokens 1, 2, 255; metadata only at the ERC-1155 form of each id."""

    async def nfts(request: web.Request) -> web.Response:
        base = f"http://{request.host}"
        listed = []
        for token_id in (1, 2, 255):
            image = {"originalUrl": None, "cachedUrl": f"{base}/cache/{token_id}.png", "pngUrl": f"{base}/png/{token_id}.png"}
            if token_id == 2:
                image["cachedUrl"] = f"{base}/status/503"  # the cache fails too: the PNG copy serves
            listed.append({"tokenId": str(token_id), "tokenUri": f"{base}/meta/{{id}}.json", "image": image, "raw": {}})
        return web.json_response({"nfts": listed, "pageKey": None})

    async def metadata(request: web.Request) -> web.Response:
        hex_id = request.match_info["hex_id"]
        hits[hex_id] = hits.get(hex_id, 0) + 1
        if len(hex_id) != 64 or hex_id != hex_id.lower():
            raise web.HTTPNotFound(text="ERC-1155 ids are 64 lower-case hex digits")
        token_id = int(hex_id, 16)
        image = f"http://{request.host}/gone/{token_id}.png" if token_id != 255 else f"http://{request.host}/art/255.png"
        return web.json_response({"name": f"Item {token_id}", "image": image, "attributes": [{"trait_type": "id", "value": str(token_id)}]})

    async def image(request: web.Request) -> web.Response:
        body = JPEG if request.path.startswith("/png/") else PNG
        return web.Response(body=body, content_type="image/png")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="no")

    app = web.Application()
    app.add_routes(
        [
            web.get("/nft/v3/demo/getNFTsForContract", nfts),
            web.get("/meta/{hex_id}.json", metadata),
            web.get("/cache/{name}", image),
            web.get("/png/{name}", image),
            web.get("/art/{name}", image),
            web.get("/status/{code}", status),
        ]
    )
    return app


def test_erc1155_ids_and_alchemy_copies_as_the_last_resort(tmp_path):
    hits: dict[str, int] = {}
    with running_app(erc1155_source(hits)) as server:
        base = server.base_url
        limits = HttpLimits(allowed_private=("127.0.0.1",), max_attempts=1, total_timeout_s=5.0)
        entry = CatalogEntry("items", "Items", "ethereum", CONTRACT, "alchemy")
        empty = pa.table({"token_id": pa.array([], pa.string())})
        tokens, report = discover_collection_tokens(entry, SourceEndpoint(base), limits, empty, datetime.now(UTC))
        rows = {r["token_id"]: r for r in tokens.to_pylist()}
        assert rows["255"]["token_uri"] == f"{base}/meta/{'0' * 62}ff.json"
        assert {r["metadata_status"] for r in rows.values()} == {"ok"} and set(hits) == {format(i, "064x") for i in (1, 2, 255)}
        assert rows["1"]["alchemy_cached_url"] == f"{base}/cache/1.png" and rows["1"]["alchemy_png_url"] == f"{base}/png/1.png"

        downloader = MediaDownloader(BlobStore(tmp_path / "blobs"), tmp_path / "journal" / "items.jsonl", DownloadSettings())
        media, _ = downloader.run(media_jobs(tokens, DownloadSettings()), [], limits)
    served = {r.token_id: (r.status, r.served_by, r.resolved_url) for r in media}
    assert served == {
        "1": ("ok", "alchemy_cached", f"{base}/cache/1.png"),  # the original is gone: Alchemy's cache
        "2": ("ok", "alchemy_png", f"{base}/png/2.png"),  # the cache fails as well: the PNG copy
        "255": ("ok", "original", f"{base}/art/255.png"),  # the original works: no fallback tried
    }
    by_token = {r.token_id: r for r in media}
    assert by_token["1"].url == f"{base}/gone/1.png" and "http_error" in by_token["1"].error  # why the original failed
    assert by_token["2"].sha256 == hashlib.sha256(JPEG).hexdigest()


def test_subdomain_gateway_urls_go_through_the_configured_gateways(tmp_path):
    with running_hostile_servers() as (base, _, state):
        limits = HttpLimits(allowed_private=("127.0.0.1",), max_attempts=1, ipfs_gateways=(f"{base}/dead/ipfs/", f"{base}/good/ipfs/"))
        tokens = pa.table(
            {
                "collection": ["c", "c"],
                "token_id": ["1", "16"],
                # A subdomain gateway that does not resolve here, and an ERC-1155 placeholder under a CID.
                "image_uri": [f"https://{CID}.ipfs.nftstorage.invalid/art/1.png", f"ipfs://{CID}/{{id}}.png"],
                "animation_uri": [None, None],
                "alchemy_cached_url": [None, None],
                "alchemy_png_url": [None, None],
            }
        )
        downloader = MediaDownloader(BlobStore(tmp_path / "blobs"), tmp_path / "journal" / "c.jsonl", DownloadSettings())
        media, _ = downloader.run(media_jobs(tokens, DownloadSettings()), [], limits)
    rows = {r.token_id: r for r in media}
    assert rows["1"].status == "ok" and rows["1"].resolved_url == f"{base}/good/ipfs/{CID}/art/1.png"
    assert rows["16"].status == "ok" and rows["16"].resolved_url == f"{base}/good/ipfs/{CID}/{'0' * 62}10.png"
    assert state.hits["dead-gateway"] >= 2  # the first configured gateway was tried first, for both
    assert rows["1"].served_by == rows["16"].served_by == "original"
