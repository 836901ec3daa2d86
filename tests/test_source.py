"""The source client against the sample gateway under injected trouble: every token arrives once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nft_pipeline.catalog import load_catalog
from nft_pipeline.discovery import collections_table, discover_collection_tokens
from nft_pipeline.gateway import GatewayFaults, SampleGateway, running_gateway
from nft_pipeline.http_client import HttpLimits
from nft_pipeline.schemas import TOKENS
from nft_pipeline.source import SourceEndpoint, SourceError


def limits(**overrides) -> HttpLimits:
    base = dict(allowed_private=("127.0.0.1",), backoff_base_s=0.01, backoff_max_s=0.05, retry_after_max_s=0.2, max_attempts=8)
    return HttpLimits(**{**base, **overrides})


def nouns_entry():
    return next(e for e in load_catalog("samples") if e.slug == "nouns")


def test_all_tokens_arrive_once_through_429s_500s_and_latency():
    faults = GatewayFaults(latency=0.005, error_rate=0.15, rate_429=0.15, retry_after=0, seed=7)
    with running_gateway(SampleGateway(supplies={"nouns": 1000}, faults=faults)) as running:
        table, report = discover_collection_tokens(
            nouns_entry(), SourceEndpoint(running.base_url), limits(), TOKENS.empty_table(), datetime.now(UTC)
        )
        counters = running.gateway.counters()
    ids = table.column("token_id").to_pylist()
    assert len(ids) == len(set(ids)) == 1000
    assert sorted(ids, key=int) == [str(i) for i in range(1000)]
    assert set(table.column("metadata_status").to_pylist()) == {"ok"}
    assert report.pages == 10 and report.duplicates_dropped == 0
    # the trouble really happened: the client retried through it
    assert counters.injected[429] > 0 and counters.injected[500] > 0
    assert counters.requests["nfts_page"] > 10


def test_tokens_listing_fails_loudly_when_the_source_stays_down():
    faults = GatewayFaults(error_rate=1.0)
    with running_gateway(SampleGateway(faults=faults)) as running, pytest.raises(SourceError, match="http_error"):
        discover_collection_tokens(
            nouns_entry(), SourceEndpoint(running.base_url), limits(max_attempts=2), TOKENS.empty_table(), datetime.now(UTC)
        )


def test_collections_table_records_source_errors_as_rows():
    entries = load_catalog("samples")
    with running_gateway(SampleGateway(faults=GatewayFaults(error_rate=1.0))) as running:
        table = collections_table(entries, {"sample": SourceEndpoint(running.base_url)}, limits(max_attempts=2), datetime.now(UTC))
    rows = table.to_pylist()
    assert [r["status"] for r in rows] == ["source_error"] * 3
    assert all("HTTP 500" in r["error"] for r in rows)
