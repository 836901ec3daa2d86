"""A local stand-in for the NFT web: an Alchemy NFT API v3 subset plus an IPFS-style gateway.

It serves the sample collections the way the real services do (same JSON shapes, `ipfs://`
token URIs resolved under `/ipfs/<cid>/<path>`, `data:` URIs, broken files), so the offline demo
and the tests run the real download code over real HTTP. Tests steer it at run time: grow a
collection's supply, inject latency, 500s and 429s (with Retry-After), and read request counters.

Routes:
  GET  /nft/v3/{api_key}/getContractMetadata?contractAddress=
  GET  /nft/v3/{api_key}/getNFTsForContract?contractAddress=&withMetadata=&limit=&pageKey=
  GET  /ipfs/{cid}/{path}
  POST /admin/supply?slug=&n=      POST /admin/faults (JSON GatewayFaults fields)
  GET  /admin/counters
The API key is accepted whatever it is. Handlers only look up cached bytes after the first
request for a file, so the gateway keeps up with a downloader on the same machine.
"""

import asyncio
import dataclasses
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from nft_pipeline.local_server import running_app
from nft_pipeline.samples import SAMPLE_COLLECTIONS, SampleCollection
from nft_pipeline.samples.collection import FileProducer, parse_token_path

PAGE_LIMIT = 100
TIME_LAST_UPDATED = "2024-01-01T00:00:00.000Z"  # fixed, so responses are reproducible
ROUTE_CONTRACT_METADATA = "contract_metadata"
ROUTE_NFTS_PAGE = "nfts_page"
ROUTE_IPFS = "ipfs"
_FAULTY_ROUTES = (ROUTE_CONTRACT_METADATA, ROUTE_NFTS_PAGE, ROUTE_IPFS)


@dataclass(frozen=True)
class GatewayFaults:
    """Injected trouble, applied to every API and IPFS request (not to /admin).

    Each request first waits `latency` seconds, then is answered 429 (with `Retry-After:
    retry_after`) with probability `rate_429`, or 500 with probability `error_rate`. The draws
    come from `random.Random(seed)`, so a run with the same requests in the same order repeats.
    """

    latency: float = 0.0
    error_rate: float = 0.0
    rate_429: float = 0.0
    retry_after: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.latency < 0 or self.retry_after < 0:
            raise ValueError("latency and retry_after must be >= 0")
        if not (0 <= self.error_rate and 0 <= self.rate_429 and self.error_rate + self.rate_429 <= 1):
            raise ValueError("error_rate and rate_429 must be >= 0 and add up to at most 1")


@dataclass(frozen=True)
class GatewayCounters:
    """A snapshot: requests per route kind, successful IPFS files by `cid/path`, injected statuses."""

    requests: Counter[str]
    ipfs_paths: Counter[str]
    injected: Counter[int]


def _alchemy_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message}}, status=status)


class SampleGateway:
    """The gateway's state (collections, supplies, faults, counters) and its aiohttp app."""

    def __init__(
        self,
        supplies: Mapping[str, int] | None = None,
        faults: GatewayFaults | None = None,
        collections: Mapping[str, SampleCollection] | None = None,
    ) -> None:
        self.collections = dict(collections or SAMPLE_COLLECTIONS)
        self._supplies = {slug: c.default_supply for slug, c in self.collections.items()}
        for slug, supply in (supplies or {}).items():
            self.set_supply(slug, supply)
        self._by_contract = {c.contract: c for c in self.collections.values()}
        self._ipfs: dict[str, tuple[SampleCollection, FileProducer]] = {
            cid: (c, producer) for c in self.collections.values() for cid, producer in c.ipfs_files().items()
        }
        self.set_faults(faults or GatewayFaults())
        self._lock = threading.Lock()
        self._counters = GatewayCounters(Counter(), Counter(), Counter())

    # -- state, safe to change from any thread while the gateway runs --

    def supply(self, slug: str) -> int:
        return self._supplies[slug]

    def set_supply(self, slug: str, supply: int) -> None:
        """Mint (or burn) up to token `supply - 1`; the API and IPFS routes follow at once."""
        if slug not in self.collections:
            raise KeyError(f"unknown sample collection {slug!r}")
        if supply < 0:
            raise ValueError("supply must be >= 0")
        self._supplies[slug] = supply

    @property
    def faults(self) -> GatewayFaults:
        return self._faults

    def set_faults(self, faults: GatewayFaults) -> None:
        """Replace the injected faults and restart their random draws from `faults.seed`."""
        self._faults, self._fault_rng = faults, random.Random(faults.seed)

    def counters(self) -> GatewayCounters:
        with self._lock:
            counters = self._counters
            return GatewayCounters(Counter(counters.requests), Counter(counters.ipfs_paths), Counter(counters.injected))

    def reset_counters(self) -> None:
        with self._lock:
            self._counters = GatewayCounters(Counter(), Counter(), Counter())

    # -- the web app --

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._inject_faults])
        api = "/nft/v3/{api_key}"
        app.router.add_get(f"{api}/getContractMetadata", self._contract_metadata, name=ROUTE_CONTRACT_METADATA)
        app.router.add_get(f"{api}/getNFTsForContract", self._nfts_page, name=ROUTE_NFTS_PAGE)
        app.router.add_get("/ipfs/{cid}/{path:.+}", self._ipfs_file, name=ROUTE_IPFS)
        app.router.add_post("/admin/supply", self._admin_supply)
        app.router.add_post("/admin/faults", self._admin_faults)
        app.router.add_get("/admin/counters", self._admin_counters)
        return app

    @web.middleware
    async def _inject_faults(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.match_info.route.name
        if route not in _FAULTY_ROUTES:
            return await handler(request)
        faults = self._faults
        with self._lock:
            self._counters.requests[route] += 1
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if faults.rate_429 or faults.error_rate:
            draw = self._fault_rng.random()
            if draw < faults.rate_429 + faults.error_rate:
                status = 429 if draw < faults.rate_429 else 500
                with self._lock:
                    self._counters.injected[status] += 1
                response = _alchemy_error(status, "Too many requests" if status == 429 else "Internal server error")
                if status == 429:
                    response.headers["Retry-After"] = str(faults.retry_after)
                return response
        return await handler(request)

    def _collection_for(self, request: web.Request) -> SampleCollection | None:
        return self._by_contract.get(request.query.get("contractAddress", "").lower())

    def _contract(self, collection: SampleCollection) -> dict[str, Any]:
        return {
            "address": collection.contract,
            "name": collection.name,
            "symbol": collection.symbol,
            "totalSupply": str(self._supplies[collection.slug]),
            "tokenType": collection.token_type,
            "contractDeployer": collection.deployer,
            "deployedBlockNumber": collection.deployed_block,
            "openSeaMetadata": {
                "floorPrice": None,
                "collectionName": collection.name,
                "collectionSlug": collection.slug,
                "safelistRequestStatus": None,
                "imageUrl": None,
                "description": collection.description,
                "externalUrl": None,
                "twitterUsername": None,
                "discordUrl": None,
                "bannerImageUrl": None,
                "lastIngestedAt": TIME_LAST_UPDATED,
            },
            "isSpam": None,
            "spamClassifications": [],
        }

    async def _contract_metadata(self, request: web.Request) -> web.Response:
        collection = self._collection_for(request)
        if collection is None:
            return _alchemy_error(400, f"Contract {request.query.get('contractAddress')!r} is not a known NFT contract")
        return web.json_response(self._contract(collection))

    async def _nfts_page(self, request: web.Request) -> web.Response:
        collection = self._collection_for(request)
        if collection is None:
            return _alchemy_error(400, f"Contract {request.query.get('contractAddress')!r} is not a known NFT contract")
        try:
            limit = min(int(request.query.get("limit", PAGE_LIMIT)), PAGE_LIMIT)
            start = int(request.query.get("pageKey") or "0x0", 16)
        except ValueError:
            start = limit = -1
        if limit < 1 or start < 0:
            return _alchemy_error(400, "limit must be a positive integer and pageKey one this API returned")
        with_metadata = request.query.get("withMetadata", "true").lower() != "false"
        supply = self._supplies[collection.slug]
        end = min(start + limit, supply)
        contract = self._contract(collection)
        if with_metadata:
            nfts = [{"contract": contract, **_token_fields(collection, i)} for i in range(start, end)]
        else:
            nfts = [{"contract": {"address": collection.contract}, "tokenId": str(i)} for i in range(start, end)]
        return web.json_response({"nfts": nfts, "pageKey": f"0x{end:064x}" if end < supply else None})

    async def _ipfs_file(self, request: web.Request) -> web.Response:
        cid, path = request.match_info["cid"], request.match_info["path"]
        directory, token = self._ipfs.get(cid), parse_token_path(path)
        if directory is None or token is None:
            raise web.HTTPNotFound(text="no link named that under this CID")
        collection, producer = directory
        token_id, extension = token
        served = producer(token_id, extension) if token_id < self._supplies[collection.slug] else None
        if served is None:
            raise web.HTTPNotFound(text="no link named that under this CID")
        with self._lock:
            self._counters.ipfs_paths[f"{cid}/{path}"] += 1
        return web.Response(body=served.body, headers={"Content-Type": served.content_type})

    async def _admin_supply(self, request: web.Request) -> web.Response:
        slug = request.query.get("slug", "")
        try:
            self.set_supply(slug, int(request.query.get("n", "")))
        except KeyError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"n must be a non-negative integer ({exc})") from None
        return web.json_response({"slug": slug, "supply": self._supplies[slug]})

    async def _admin_faults(self, request: web.Request) -> web.Response:
        """Change some fault settings (the JSON object's keys are GatewayFaults fields)."""
        try:
            self.set_faults(dataclasses.replace(self._faults, **await request.json()))
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"bad faults: {exc}") from None
        return web.json_response(dataclasses.asdict(self._faults))

    async def _admin_counters(self, request: web.Request) -> web.Response:
        counters = self.counters()
        return web.json_response(
            {"requests": counters.requests, "ipfs_paths": counters.ipfs_paths, "injected": counters.injected}
        )


def _token_fields(collection: SampleCollection, token_id: int) -> dict[str, Any]:
    """An NFT of getNFTsForContract (withMetadata=true) except its contract object."""
    metadata = collection.indexed_metadata(token_id)
    image, animation = metadata.get("image"), metadata.get("animation_url")
    token_uri = collection.token_uri(token_id)
    return {
        "tokenId": str(token_id),
        "tokenType": collection.token_type,
        "name": metadata.get("name"),
        "description": metadata.get("description"),
        "tokenUri": token_uri,
        "image": {
            "cachedUrl": None,
            "thumbnailUrl": None,
            "pngUrl": None,
            "contentType": None,
            "size": None,
            "originalUrl": image,
        },
        "animation": {"cachedUrl": None, "contentType": None, "size": None, "originalUrl": animation},
        "raw": {"tokenUri": token_uri, "metadata": metadata, "error": collection.index_error(token_id)},
        "collection": {"name": collection.name, "slug": collection.slug, "externalUrl": None, "bannerImageUrl": None},
        "mint": {"mintAddress": None, "blockNumber": None, "timestamp": None, "transactionHash": None},
        "owners": None,
        "timeLastUpdated": TIME_LAST_UPDATED,
    }


@dataclass(frozen=True)
class RunningGateway:
    base_url: str  # e.g. "http://127.0.0.1:54321"; IPFS files are under f"{base_url}/ipfs/"
    host: str
    port: int
    gateway: SampleGateway


@contextmanager
def running_gateway(
    gateway: SampleGateway | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningGateway]:
    """Serve `gateway` (default: a fresh SampleGateway) from a background thread with its own
    event loop; port 0 picks a free port. Stops and frees the port on exit."""
    gateway = gateway or SampleGateway()
    with running_app(gateway.app(), host, port) as server:
        yield RunningGateway(server.base_url, host, server.port, gateway)


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8765,
    supplies: Mapping[str, int] | None = None,
    collections: Mapping[str, SampleCollection] | None = None,
) -> None:
    """Run the gateway in the foreground until interrupted (for `nft-pipeline gateway`)."""
    try:
        import uvloop
    except ImportError:
        loop = None
    else:
        loop = uvloop.new_event_loop()
    web.run_app(SampleGateway(supplies, collections=collections).app(), host=host, port=port, access_log=None, loop=loop)
