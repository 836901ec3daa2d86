"""Discovery: catalog entries -> enriched collection rows, and a collection -> its token rows.

Tokens come from the source's pages with their metadata inline. Where the source returned only a
`tokenUri` (Alchemy does when its own fetch failed), the metadata is fetched through the guarded
client with a small size cap and a safe JSON parse, so the `tokens` table is complete before any
media is fetched. A refresh reuses what it already has: a token keeps its first `discovered_at`,
and metadata fetched from an unchanged `tokenUri` is not fetched again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from nft_pipeline import schemas
from nft_pipeline.catalog import CatalogEntry
from nft_pipeline.http_client import GuardedHttpClient, HttpLimits, run_event_loop
from nft_pipeline.source import NftSourceClient, SourceEndpoint, SourceError
from nft_pipeline.token_metadata import (
    MAX_METADATA_BYTES,
    ParsedMetadata,
    TokenRecord,
    parse_metadata_bytes,
    token_id_text,
)
from nft_pipeline.uris import substitute_token_id

_REUSABLE = {"ok", "recovered"}
_PREVIOUS_FIELDS = (
    "name",
    "image_uri",
    "animation_uri",
    "attributes",
    "attributes_status",
    "metadata_json",
    "metadata_sha256",
    "metadata_status",
    "metadata_error",
)


def _url_or_none(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


async def describe_collection(entry: CatalogEntry, client: NftSourceClient | None, now: datetime) -> dict[str, Any]:
    """A `collections` row: the catalog entry enriched with the contract's metadata, or why not."""
    row: dict[str, Any] = {
        "slug": entry.slug,
        "name": entry.name,
        "chain": entry.chain,
        "contract": entry.contract,
        "source": entry.source,
        "catalog_split": entry.split,
        "fetched_at": now,
        "status": "ok",
        "error": None,
    }
    if entry.problem is not None:
        return {**row, "status": "invalid_catalog_row", "error": entry.problem}
    if client is None:
        return {**row, "status": "not_fetched", "error": f"source {entry.source!r} is not configured"}
    try:
        meta = await client.contract_metadata(entry.contract)
    except SourceError as exc:
        return {**row, "status": "source_error", "error": str(exc)}
    return {
        **row,
        "contract_name": meta.get("name"),
        "symbol": meta.get("symbol"),
        "token_type": meta.get("tokenType"),
        "total_supply": _int_or_none(meta.get("totalSupply")),
    }


@dataclass
class DiscoveryReport:
    """Counts a `tokens` run reports (Dagster metadata, CLI summary)."""

    tokens: int = 0
    pages: int = 0
    duplicates_dropped: int = 0
    invalid_token_ids: int = 0
    token_uri_fetched: int = 0
    token_uri_reused: int = 0
    metadata_status: Counter = field(default_factory=Counter)
    attributes_status: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["metadata_status"] = dict(sorted(self.metadata_status.items()))
        out["attributes_status"] = dict(sorted(self.attributes_status.items()))
        return out


def _inline_metadata(raw: dict[str, Any]) -> ParsedMetadata | None:
    """The source's inline metadata, or None when it gave none (an empty object counts as none)."""
    meta = raw.get("metadata")
    if isinstance(meta, dict):
        return ParsedMetadata(meta, "ok") if meta else None
    if isinstance(meta, str) and meta.strip():
        return parse_metadata_bytes(meta.encode("utf-8", "surrogatepass"))
    return None


def _reuse_previous(record: TokenRecord, previous: Mapping[str, Any] | None) -> bool:
    """Copy metadata from the previous run if it came from the same, unchanged tokenUri."""
    if (
        previous is None
        or previous.get("metadata_source") != "token_uri"
        or previous.get("token_uri") != record.token_uri
        or previous.get("metadata_status") not in _REUSABLE
    ):
        return False
    for name in _PREVIOUS_FIELDS:
        setattr(record, name, previous[name])
    record.metadata_source = "token_uri"
    return True


async def _fetch_token_uri(http: GuardedHttpClient, record: TokenRecord, fallback_image: str | None) -> None:
    result = await http.fetch_uri(record.token_uri or "", MAX_METADATA_BYTES)
    if not result.ok or result.body is None:
        record.metadata_source = "token_uri"
        record.metadata_status = "fetch_error"
        record.metadata_error = f"{result.status}: {result.error}"
        record.image_uri = fallback_image
        return
    record.apply_metadata(parse_metadata_bytes(result.body), "token_uri", fallback_image)


async def discover_tokens(
    entry: CatalogEntry,
    client: NftSourceClient,
    http: GuardedHttpClient,
    previous: Mapping[str, Mapping[str, Any]],
    now: datetime,
    on_page: Callable[[int], None] | None = None,
) -> tuple[list[TokenRecord], DiscoveryReport]:
    """All tokens of one collection as `TokenRecord`s, sorted by numeric token id.

    `previous` maps token_id -> the row of the previous run (for `discovered_at` and reuse).
    Raises `SourceError` when the source cannot list the collection completely: a partial token
    list must not replace a complete one.
    """
    report = DiscoveryReport()
    records: dict[str, TokenRecord] = {}
    pending: list[tuple[TokenRecord, str | None]] = []
    async for page in client.nft_pages(entry.contract):
        report.pages += 1
        for nft in page:
            token_id = token_id_text(nft.get("tokenId"))
            if token_id is None:
                report.invalid_token_ids += 1
                continue
            if token_id in records:
                report.duplicates_dropped += 1
                continue
            raw = nft.get("raw") if isinstance(nft.get("raw"), dict) else {}
            prev = previous.get(token_id)
            record = TokenRecord(
                collection=entry.slug,
                token_id=token_id,
                discovered_at=prev["discovered_at"] if prev else now,
                name=nft.get("name") if isinstance(nft.get("name"), str) else None,
                token_uri=substitute_token_id(raw.get("tokenUri") or nft.get("tokenUri") or "", token_id) or None,
            )
            image = nft.get("image") if isinstance(nft.get("image"), dict) else {}
            fallback_image = image.get("originalUrl") or None
            record.alchemy_cached_url = _url_or_none(image.get("cachedUrl"))
            record.alchemy_png_url = _url_or_none(image.get("pngUrl"))
            inline = _inline_metadata(raw)
            if inline is not None:
                record.apply_metadata(inline, "inline", fallback_image)
            elif not record.token_uri:
                record.image_uri = fallback_image
                record.metadata_error = raw.get("error") or "source returned no metadata and no tokenUri"
            elif _reuse_previous(record, prev):
                report.token_uri_reused += 1
            else:
                pending.append((record, fallback_image))
            records[token_id] = record
        if on_page is not None:
            on_page(len(records))
    report.token_uri_fetched = len(pending)
    await asyncio.gather(*(_fetch_token_uri(http, record, image) for record, image in pending))
    ordered = sorted(records.values(), key=lambda r: (len(r.token_id), r.token_id))
    report.tokens = len(ordered)
    report.metadata_status.update(r.metadata_status for r in ordered)
    report.attributes_status.update(r.attributes_status for r in ordered)
    return ordered, report


def tokens_to_table(records: list[TokenRecord]) -> pa.Table:
    rows = [asdict(r) for r in records]
    return pa.Table.from_pylist(rows, schema=schemas.TOKENS)


def previous_tokens(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Index a previous `tokens` table by token_id for `discover_tokens`."""
    return {row["token_id"]: row for row in table.to_pylist()}



def collections_table(
    entries: list[CatalogEntry], endpoints: Mapping[str, SourceEndpoint], limits: HttpLimits, now: datetime
) -> pa.Table:
    """The `collections` table: every catalog entry, enriched by its source where possible."""

    async def describe_all() -> list[dict[str, Any]]:
        async with GuardedHttpClient(limits) as http:
            clients = {name: NftSourceClient(http, endpoint) for name, endpoint in endpoints.items()}
            return await asyncio.gather(*(describe_collection(e, clients.get(e.source), now) for e in entries))

    return pa.Table.from_pylist(run_event_loop(describe_all()), schema=schemas.COLLECTIONS)


def discover_collection_tokens(
    entry: CatalogEntry,
    endpoint: SourceEndpoint,
    limits: HttpLimits,
    previous: pa.Table,
    now: datetime,
    on_page: Callable[[int], None] | None = None,
) -> tuple[pa.Table, DiscoveryReport]:
    """The `tokens` table of one collection (see `discover_tokens`)."""

    async def discover() -> tuple[list[TokenRecord], DiscoveryReport]:
        async with GuardedHttpClient(limits) as http:
            client = NftSourceClient(http, endpoint)
            return await discover_tokens(entry, client, http, previous_tokens(previous), now, on_page)

    records, report = run_event_loop(discover())
    return tokens_to_table(records), report
