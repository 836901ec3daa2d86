"""The LanceDB side of search: SQL prefilters, vector and full-text queries, one token's row.

Used by search.py for the embedding and hybrid modes, for `similar_to_*`, and for tables too large
to rank in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.query import MatchQuery

from nft_pipeline.hits import HIT_COLUMNS, KEY_COLUMNS, HitDetails, SearchError, SearchHit, TokenKey, hit_from_row, keys_of
from nft_pipeline.index import CAPTION_COLUMN, DEFAULT_ANN, VECTOR_COLUMN, AnnSettings, sql_literal, trait_key


def parse_trait(text: str) -> str:
    """The table's trait key for a filter written TYPE=VALUE ("Type=Female 2"); SearchError otherwise."""
    trait_type, separator, value = text.partition("=")
    if not separator or not value.strip():
        raise SearchError(f"trait filter {text!r} must look like TYPE=VALUE, e.g. Type=Female 2")
    return trait_key(trait_type, value)


def filter_sql(collection: str | None, traits: Sequence[str], exclude: TokenKey | None = None) -> str | None:
    """The SQL prefilter for a collection, traits that must all be present, and a token to leave out."""
    clauses = []
    if collection:
        clauses.append(f"collection = {sql_literal(collection)}")
    if traits:
        keys = ", ".join(sql_literal(parse_trait(trait)) for trait in traits)
        clauses.append(f"array_has_all(traits, [{keys}])")
    if exclude:
        clauses.append(f"NOT (collection = {sql_literal(exclude[0])} AND token_id = {sql_literal(exclude[1])})")
    return " AND ".join(clauses) or None


async def token_rows(table: lancedb.AsyncTable, collection: str, token_id: str, columns: list[str]) -> list[dict]:
    where = f"collection = {sql_literal(collection)} AND token_id = {sql_literal(token_id)}"
    return (await table.query().where(where).select(columns).limit(1).to_arrow()).to_pylist()


async def matching_captions(
    table: lancedb.AsyncTable, query: str, limit: int, where: str | None, columns: Sequence[str]
) -> pa.Table:
    """`columns` and the vectors of rows whose captions share words with `query`, best BM25 first
    (a match query: no query syntax)."""
    search = (
        table.query()
        .nearest_to_text(MatchQuery(query, CAPTION_COLUMN))
        .select([*columns, VECTOR_COLUMN, "_score"])
        .limit(limit)
    )
    if where:
        search = search.where(where)
    return await search.to_arrow()


async def nearest_keys(
    table: lancedb.AsyncTable,
    vector: np.ndarray,
    limit: int,
    settings: AnnSettings = DEFAULT_ANN,
    where: str | None = None,
    columns: Sequence[str] = KEY_COLUMNS,
) -> pa.Table:
    """`columns` (the keys by default) and cosine distances (`_distance`) of the `limit` rows nearest
    to `vector`, filtered by `where` first.

    With a vector index, `nprobes` partitions are searched and the quantized candidates re-ranked
    with the stored vectors, so distances are exact; without one, every row is compared.
    """
    query = (
        table.query()
        .nearest_to(vector)
        .distance_type("cosine")
        .nprobes(settings.nprobes)
        .refine_factor(settings.refine_factor)
        .select([*columns, "_distance"])
        .limit(limit)
    )
    if where:
        query = query.where(where)
    return await query.to_arrow()


async def nearest_hits(
    table: lancedb.AsyncTable,
    details: HitDetails | None,
    vector: np.ndarray,
    limit: int,
    settings: AnnSettings = DEFAULT_ANN,
    where: str | None = None,
) -> list[SearchHit]:
    """The `limit` hits nearest to `vector`, ranked by cosine similarity (= 1 - cosine distance).

    `details` must be of the version `table` has checked out; without them the query fetches the
    shown columns itself (about 1 ms a column).
    """
    if details is not None:
        nearest = await nearest_keys(table, vector, limit, settings, where)
        rows = details.rows(keys_of(nearest))
    else:
        nearest = await nearest_keys(table, vector, limit, settings, where, HIT_COLUMNS)
        rows = nearest.select(HIT_COLUMNS).to_pylist()
    similarities = [1.0 - distance for distance in nearest["_distance"].to_pylist()]
    return [hit_from_row(rank, sim, sim, row) for rank, (sim, row) in enumerate(zip(similarities, rows, strict=True), 1)]
