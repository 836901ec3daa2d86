"""What a search answers with: hits, results, the errors it explains, and the shown columns held in memory.

Shared by the search orchestration (search.py), its LanceDB queries (lance_queries.py) and the
front ends (search_cli.py, web/).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import lancedb
import pyarrow as pa

from nft_pipeline.captions import CaptionTag

KEY_COLUMNS = ["collection", "token_id"]
HIT_COLUMNS = [*KEY_COLUMNS, "name", "caption", "tags"]  # what a hit shows

TokenKey = tuple[str, str]


class SearchError(ValueError):
    """A request search cannot answer; the message is written for the person who made it."""


class UnknownToken(SearchError):
    """The token asked about is not in the index."""


@dataclass(frozen=True)
class SearchHit:
    rank: int  # 1 = best
    score: float  # what ranked it: the cosine similarity, or the fused RRF score in hybrid search
    similarity: float  # cosine similarity of its image embedding to the query embedding
    collection: str
    token_id: str
    name: str | None
    caption: str
    tags: list[CaptionTag]
    matched: list[str] = field(default_factory=list)  # the query's words for the traits it carries
    duplicates: int = 1  # tokens with the same picture this hit stands for (duplicate collapse)
    # With collapse: the others it stands for ({collection, token_id, original}), identical pictures and
    # clones (`clones`), `original` marking the group's likely original
    duplicate_tokens: list[dict[str, Any]] = field(default_factory=list)
    outline_traits: list[dict[str, Any]] = field(default_factory=list)  # its traits the query matched
    # Traits predicted from the image for a token without metadata (`trait_predictions`), with confidence
    predicted_traits: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchResults:
    hits: list[SearchHit]
    mode: str  # text | hybrid | similar_to_token | similar_to_image
    notices: list[str] = field(default_factory=list)  # what was changed or ignored in the request
    timings_ms: dict[str, float] = field(default_factory=dict)  # encode, search, total
    interpretation: dict[str, Any] | None = None  # described mode: what the query was understood as
    total: int | None = None  # described mode: tokens passing the filters (pages reach this far)
    exact: int | None = None  # described mode: of those, tokens carrying every understood trait
    offset: int = 0
    facets: list[dict[str, Any]] | None = None  # described mode: trait value counts over the filtered set

    def to_json(self) -> dict[str, Any]:
        body = {
            "mode": self.mode,
            "hits": [hit.to_json() for hit in self.hits],
            "notices": self.notices,
            "timings_ms": {name: round(value, 2) for name, value in self.timings_ms.items()},
        }
        if self.interpretation is not None:
            body.update(
                interpretation=self.interpretation,
                total=self.total,
                exact=self.exact,
                offset=self.offset,
                facets=self.facets,
            )
        return body


def hit_from_row(rank: int, score: float, similarity: float, row: dict[str, Any]) -> SearchHit:
    return SearchHit(rank, score, similarity, **{column: row[column] for column in HIT_COLUMNS})


def keys_of(rows: pa.Table) -> list[TokenKey]:
    return list(zip(rows["collection"].to_pylist(), rows["token_id"].to_pylist(), strict=True))


class HitDetails:
    """The shown columns of every row of one table version, held in memory.

    Why: fetching them with each vector query cost LanceDB 0.40 1-1.5 ms on a 100,000-row table
    (docs/search.md); a lookup here takes 0.05 ms. Kept as the table's Arrow columns (compact) and a key -> row map: about 340
    bytes a token with short captions.
    """

    def __init__(self, rows: pa.Table):
        rows = rows.select(HIT_COLUMNS)
        # One batch: a take across the ~100 batches LanceDB returns costs 1.4 ms, on one 0.05 ms.
        self._rows = rows.combine_chunks()
        self._row_of = {key: row for row, key in enumerate(keys_of(rows))}

    @classmethod
    async def load(cls, table: lancedb.AsyncTable) -> HitDetails:
        """The details of the version `table` has checked out (a table read once, a few columns); the
        batches are combined and the key map built in a thread, off the event loop."""
        return await asyncio.to_thread(cls, await table.query().select(HIT_COLUMNS).to_arrow())

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, key: TokenKey) -> bool:
        return key in self._row_of

    def rows_at(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        """The HIT_COLUMNS of rows by position (the order `RankingIndex` was built in)."""
        return self._rows.take(pa.array(positions, pa.int64())).to_pylist()

    def rows(self, keys: Sequence[TokenKey]) -> list[dict[str, Any]]:
        """The HIT_COLUMNS of each key, in order (KeyError for a key this version does not hold)."""
        return self._rows.take(pa.array([self._row_of[key] for key in keys], pa.int64())).to_pylist()
