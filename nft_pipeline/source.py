"""A client for the Alchemy NFT API v3 (and the sample gateway that speaks the same API).

The same code talks to `https://eth-mainnet.g.alchemy.com` with a real key and to the bundled
sample gateway on 127.0.0.1, so the offline demo and the tests exercise the real client. All
requests go through the shared `GuardedHttpClient` (limits, timeouts, retries with backoff that
honour `Retry-After`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from nft_pipeline.http_client import FetchResult, GuardedHttpClient

PAGE_LIMIT = 100  # Alchemy's maximum page size for getNFTsForContract
MAX_PAGE_BYTES = 32 * 1024 * 1024
MAX_PAGES = 100_000


class SourceError(RuntimeError):
    """The source could not deliver a complete answer (after retries); the message says why."""


@dataclass(frozen=True)
class SourceEndpoint:
    """Where an Alchemy-style API lives: `{base_url}/nft/v3/{api_key}/...`."""

    base_url: str
    api_key: str = "demo"

    def url(self, method: str) -> str:
        return f"{self.base_url.rstrip('/')}/nft/v3/{self.api_key}/{method}"


def _json_object(result: FetchResult, what: str) -> dict[str, Any]:
    if not result.ok or result.body is None:
        raise SourceError(f"{what}: {result.status} {result.error or ''} after {result.attempts} attempt(s)".strip())
    try:
        payload = json.loads(result.body)
    except (ValueError, RecursionError) as exc:
        raise SourceError(f"{what}: response is not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise SourceError(f"{what}: response is not a JSON object")
    return payload


class NftSourceClient:
    """Reads contract metadata and pages of NFTs for a contract."""

    def __init__(self, http: GuardedHttpClient, endpoint: SourceEndpoint) -> None:
        self.http = http
        self.endpoint = endpoint

    async def contract_metadata(self, contract: str) -> dict[str, Any]:
        result = await self.http.fetch_url(
            self.endpoint.url("getContractMetadata"), MAX_PAGE_BYTES, params={"contractAddress": contract}
        )
        return _json_object(result, f"getContractMetadata({contract})")

    async def nft_pages(self, contract: str, page_limit: int = PAGE_LIMIT) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield pages of NFT objects (with metadata) until the source says there are no more."""
        page_key: str | None = None
        seen_keys: set[str] = set()
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {
                "contractAddress": contract,
                "withMetadata": "true",
                "limit": min(page_limit, PAGE_LIMIT),
            }
            if page_key:
                params["pageKey"] = page_key
            result = await self.http.fetch_url(self.endpoint.url("getNFTsForContract"), MAX_PAGE_BYTES, params=params)
            payload = _json_object(result, f"getNFTsForContract({contract}, pageKey={page_key})")
            nfts = payload.get("nfts")
            if not isinstance(nfts, list):
                raise SourceError(f"getNFTsForContract({contract}): 'nfts' is not a list")
            yield [nft for nft in nfts if isinstance(nft, dict)]
            page_key = payload.get("pageKey") or None
            if page_key is None:
                return
            if page_key in seen_keys:
                raise SourceError(f"getNFTsForContract({contract}): pageKey {page_key!r} repeats")
            seen_keys.add(page_key)
        raise SourceError(f"getNFTsForContract({contract}): more than {MAX_PAGES} pages")
