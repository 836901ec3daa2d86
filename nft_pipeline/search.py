"""Search the index by text, by token or by image: the library behind `nft-pipeline search` and `serve`.

`NftSearch` loads the model and opens the table once and reuses them for every query, which is
what makes a query cheap: on the tiny preset, encoding a text takes a few milliseconds and the
table lookup a few more (docs/search.md), where NFTopia paid 150-200 ms for CLIP and 100-150 ms
for a hosted vector database per query. It uses LanceDB's async API, which the web server awaits
directly and which answers about 2 ms sooner than the synchronous wrapper around it.

Queries:

- `described` (the default of the page, the API and the CLI): the query is read against the
  index's trait vocabulary (query.py); the traits it names are required, or boost when too few
  tokens carry them all, and the text embedding ranks within (ranking.py). It also returns the
  interpretation, facet counts over the filtered set, paging and duplicate collapse.
- `text`: the query's CLIP text embedding against the image embeddings (cosine similarity).
  With `hybrid=True` the captions are also matched word for word (BM25 over the full-text index)
  and the two rankings are fused by reciprocal rank fusion (RRF, k=60), which needs no score
  calibration between the two; a token whose caption or name *is* the query (case and spacing
  aside) comes first, so pasting a caption or typing "CryptoPunk #1234" finds that token.
- `similar_to_token`: the token's own image embedding as the query, the token itself left out.
- `similar_to_image`: any image, prepared as training prepared images.

Filters (`collection`, `traits` as "Type=Female 2") narrow the candidates before ranking
(LanceDB prefilter), so k results come back whenever k tokens match.

What a hit shows besides its key (name, caption, tags) is served from memory (`HitDetails`), so a
vector query returns only keys and distances (fetching the columns with it cost 1-1.5 ms a query).
The search follows the table: every few seconds a query starts a background refresh, which moves
to the newest version once a partition is re-indexed, with its details and, after a new model,
the model the new vectors were embedded by.

Bad input raises `SearchError` with a message meant for the person who typed it. A query longer
than the text encoder's context (77 tokens) is encoded from its first 77 tokens and the result
says so in `notices`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from nft_pipeline.captions import template_for
from nft_pipeline.classify.clones import CloneLabels
from nft_pipeline.classify.vocabulary import RowTerms, interpret
from nft_pipeline.embedding import EmbeddingModel
from nft_pipeline.hits import (
    HIT_COLUMNS,
    KEY_COLUMNS,
    HitDetails,
    SearchError,
    SearchHit,
    SearchResults,
    TokenKey,
    UnknownToken,
    hit_from_row,
    keys_of,
)
from nft_pipeline.index import (
    CAPTION_COLUMN,
    DEFAULT_ANN,
    MODELS_DIR,
    TABLE_NAME,
    VECTOR_COLUMN,
    AnnSettings,
    IndexMissing,
    fold_text,
    lance_path,
)
from nft_pipeline.lance_queries import filter_sql, matching_captions, nearest_hits, nearest_keys, token_rows
from nft_pipeline.query import Chip, Interpretation, QueryParser
from nft_pipeline.ranking import RankingIndex, reciprocal_rank_fusion
from nft_pipeline.storage import DataLayout

# Re-exported: callers and tests import these from here, where search is used.
__all__ = ["HitDetails", "SearchError", "SearchHit", "SearchResults", "TokenKey", "UnknownToken", "filter_sql", "reciprocal_rank_fusion"]

MAX_K = 100
QUERY_VECTORS_KEPT = 4096  # text embeddings remembered (a few MB)
MAX_EXPORT = 10_000  # rows one export returns
RANKING_MAX_ROWS = 1_000_000  # embeddings held in memory for the described mode up to here (~2 GB at 512-d)
MAX_QUERY_CHARS = 1_000
MAX_IMAGE_BYTES = 20 * 1024 * 1024
HYBRID_CANDIDATES = 50  # per ranking; fusion reorders these, so a deep second page is not needed
log = logging.getLogger(__name__)
REFRESH_INTERVAL_S = 5.0  # how stale a running search may be after the index is rewritten
DETAILS_MAX_ROWS = 5_000_000  # hit columns held in memory up to here (~1.7 GB), fetched per query beyond


def _comparable(text: str | None) -> str:
    return fold_text(text or "").rstrip(".")


def _timings(started: float, encoded: float) -> dict[str, float]:
    """Milliseconds spent encoding the query (up to `encoded`), searching (after it), and in total."""
    now = time.perf_counter()
    return {
        "encode": (encoded - started) * 1000.0,
        "search": (now - encoded) * 1000.0,
        "total": (now - started) * 1000.0,
    }


def _check_k(k: int, most: int = MAX_K) -> None:
    if not 1 <= k <= most:
        raise SearchError(f"k must be between 1 and {most}, got {k}")


@dataclass(frozen=True)
class IndexVersion:
    """One version of the table and what answering from it needs. `NftSearch` swaps it whole on
    refresh, so a query never mixes the keys of one version with the details of another."""

    table: lancedb.AsyncTable
    version: int
    details: HitDetails | None  # None: the table outgrew `details_max_rows`; queries fetch the columns
    model: EmbeddingModel
    has_text_index: bool
    ranking: RankingIndex | None = None  # None: the table outgrew `RANKING_MAX_ROWS`; described falls back to filters
    parser: QueryParser | None = None
    terms: RowTerms | None = None  # colour classes and predicted traits per ranking row; None: not classified
    clones: CloneLabels | None = None  # clone groups per ranking row; None: no `clones` table

    @classmethod
    async def load(
        cls,
        table: lancedb.AsyncTable,
        data_dir: Path,
        model_dir: Path | None,
        loaded: EmbeddingModel | None = None,
        details_max_rows: int = DETAILS_MAX_ROWS,
    ) -> IndexVersion:
        """The version `table` has checked out: indexes loaded, details read (up to `details_max_rows`
        rows), the model its vectors were embedded by (`loaded` reused when it is that model;
        `model_dir` if given, else where the table records it). Heavy steps run in threads."""
        recorded = (await table.query().select(["model_run_id", "model_dir"]).limit(1).to_arrow()).to_pylist()
        if not recorded:
            raise IndexMissing(lance_path(data_dir))
        run_id = recorded[0]["model_run_id"]
        model = loaded
        if model is None or model.run_id != run_id:
            path = model_dir or _recorded_model_dir(data_dir, run_id, recorded[0]["model_dir"])
            model = await asyncio.to_thread(EmbeddingModel.load, path)
        if model.run_id != run_id:
            raise SearchError(
                f"{model.model_dir} is model {model.run_id}, but the index holds embeddings of model {run_id}: "
                "their scores would mean nothing. Leave out --model-dir, or re-index with this model."
            )
        indexes = await table.list_indices()
        for index in indexes:
            # Loaded now rather than partition by partition by the first queries (30-45 ms each, not 10).
            await table.prewarm_index(index.name)
        has_text_index = any(index.columns == [CAPTION_COLUMN] for index in indexes)
        rows = await table.count_rows()
        details, ranking, terms, clones = None, None, None, None
        if rows <= min(details_max_rows, RANKING_MAX_ROWS):
            table_rows = await table.query().select([*HIT_COLUMNS, VECTOR_COLUMN]).to_arrow()
            keys = (table_rows["collection"].to_pylist(), table_rows["token_id"].to_pylist())
            terms = await asyncio.to_thread(RowTerms.load, DataLayout(data_dir), *keys)
            clones = await asyncio.to_thread(CloneLabels.load, DataLayout(data_dir), *keys)
            details, ranking = await asyncio.to_thread(_details_and_ranking, table_rows, terms, clones)
        elif rows <= details_max_rows:
            details = await HitDetails.load(table)
        parser = QueryParser(ranking.vocabulary) if ranking is not None else None
        return cls(table, await table.version(), details, model, has_text_index, ranking, parser, terms, clones)


def _details_and_ranking(rows: pa.Table, terms: RowTerms | None, clones: CloneLabels | None = None) -> tuple[HitDetails, RankingIndex]:
    """Both in-memory structures from one read of the table (their rows in the same order). A token
    without declared traits is ranked by its predicted ones (`trait_predictions`), if any; a copy
    collapses with its original (`clones`), if known."""
    subject_nouns = {name: template_for(name).subject_noun for name in set(rows["collection"].to_pylist())}
    tags = rows["tags"].to_pylist()
    if terms is not None:
        tags = terms.with_predicted(tags)
    groups = clones.groups if clones is not None else None
    return HitDetails(rows), RankingIndex.from_table(rows, subject_nouns=subject_nouns, tags=tags, clone_groups=groups)


class NftSearch:
    """The model and the table, opened once (`await NftSearch.open(data_dir)`), answering queries.

    It follows the table: once `refresh_interval_s` has passed, the next query starts a refresh in
    the background (one at a time) and answers from the open version; the newer version, opened
    beside it, is swapped in whole when ready. A version that cannot be opened (its model gone,
    another model than `model_dir`) is logged and not tried again; the open one stays.
    """

    def __init__(
        self,
        db: lancedb.AsyncConnection,
        data_dir: Path,
        current: IndexVersion,
        settings: AnnSettings,
        model_dir: Path | None = None,
        refresh_interval_s: float = REFRESH_INTERVAL_S,
        details_max_rows: int = DETAILS_MAX_ROWS,
    ):
        self.data_dir = data_dir
        self.current = current
        self.settings = settings
        self.model_dir = model_dir  # a model the user chose; otherwise the one the table records
        self.refresh_interval_s = refresh_interval_s
        self.details_max_rows = details_max_rows
        self._db = db  # one connection for every version opened
        self._checked_at = time.monotonic()
        self._refreshing: asyncio.Task[bool] | None = None
        self._unusable_version: int | None = None
        self._query_vectors: dict[tuple[str, str], np.ndarray] = {}  # insertion order = least recent first

    @classmethod
    async def open(
        cls,
        data_dir: Path,
        model_dir: Path | None = None,
        settings: AnnSettings = DEFAULT_ANN,
        refresh_interval_s: float = REFRESH_INTERVAL_S,
        details_max_rows: int = DETAILS_MAX_ROWS,
    ) -> NftSearch:
        """Open the index under `data_dir` with the model it was built with (or `model_dir`, if the same
        run); queries look for a newer table version at most every `refresh_interval_s` seconds, and
        the columns a hit shows are held in memory for tables of up to `details_max_rows` rows."""
        data_dir = Path(data_dir)
        db_path = lance_path(data_dir)
        if not (db_path / f"{TABLE_NAME}.lance").is_dir():
            raise IndexMissing(db_path)
        db = await lancedb.connect_async(db_path)
        table = await db.open_table(TABLE_NAME)
        current = await IndexVersion.load(table, data_dir, model_dir, None, details_max_rows)
        search = cls(db, data_dir, current, settings, model_dir, refresh_interval_s, details_max_rows)
        await search.text("warm up")  # the first pass through the model costs a few times a later one
        return search

    @property
    def model(self) -> EmbeddingModel:
        return self.current.model

    async def refresh(self) -> bool:
        """Move to the table's newest version now, if it changed and can be opened; True if it moved.

        A refresh already running (started by a query) is awaited rather than doubled.
        """
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._move_to_latest())
        return await asyncio.shield(self._refreshing)

    async def _move_to_latest(self) -> bool:
        self._checked_at = time.monotonic()
        latest = await self._db.open_table(TABLE_NAME)
        version = await latest.version()
        if version in (self.current.version, self._unusable_version):
            return False
        try:
            self.current = await IndexVersion.load(
                latest, self.data_dir, self.model_dir, self.model, self.details_max_rows
            )
        except Exception:
            self._unusable_version = version
            raise
        return True

    async def _current(self) -> IndexVersion:
        """The version to answer from; past the interval, a background refresh is started first."""
        due = time.monotonic() - self._checked_at >= self.refresh_interval_s
        if due and (self._refreshing is None or self._refreshing.done()):
            self._checked_at = time.monotonic()
            self._refreshing = asyncio.create_task(self._move_to_latest())
            self._refreshing.add_done_callback(self._log_failure)
        return self.current

    def _log_failure(self, task: asyncio.Task[bool]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning("search stays on index version %s: %s", self.current.version, task.exception())

    async def text(
        self,
        query: str,
        k: int = 10,
        collection: str | None = None,
        traits: Sequence[str] = (),
        hybrid: bool = False,
    ) -> SearchResults:
        """Tokens whose images match `query`; with `hybrid`, fused with a word match on their captions."""
        started = time.perf_counter()
        _check_k(k)
        index = await self._current()
        query, notices = _clean_query(query, index.model)
        where = filter_sql(collection, traits)
        if hybrid and not index.has_text_index:
            raise SearchError("hybrid search needs the caption index: materialize the `nft_index` asset again")
        vector = index.model.embed_texts([query])[0]
        encoded = time.perf_counter()
        if hybrid:
            hits = await self._hybrid(index, query, vector, k, where)
        else:
            hits = await nearest_hits(index.table, index.details, vector, k, self.settings, where)
        return SearchResults(
            hits=hits,
            mode="hybrid" if hybrid else "text",
            notices=notices,
            timings_ms=_timings(started, encoded),
        )

    async def described(
        self,
        query: str,
        k: int = 10,
        offset: int = 0,
        collection: str | None = None,
        traits: Sequence[str] = (),
        not_traits: Sequence[str] = (),
        collapse: bool = False,
        facets: bool = True,
        most: int = MAX_K,
        colours: Sequence[str] = (),
    ) -> SearchResults:
        """Tokens matching what `query` describes: the traits it names (see query.py) required, or
        boosting when fewer than k tokens carry them all; ranked by the query's text embedding within.

        `traits` and `not_traits` are TYPE=VALUE filters (alternatives joined by "|") that must hold or
        must not; `colours` are colour filters ("blue", "blue background"; see classify/vocabulary.py),
        and colour words the query leaves unread become such filters too; `offset` pages; `collapse` shows identical pictures once; `most` caps k (exports).
        """
        started = time.perf_counter()
        _check_k(k, most)
        if offset < 0:
            raise SearchError(f"offset must be 0 or more, got {offset}")
        index = await self._current()
        if index.ranking is None or index.parser is None:
            results = await self.text(query, k, collection, traits)
            return SearchResults(results.hits, "text", [*results.notices, "index too large for trait understanding: embedding search"], results.timings_ms)
        ranking, parser = index.ranking, index.parser
        query, notices = _clean_query(query, index.model, allow_empty=bool(traits or not_traits or collection or colours))
        interpretation, colour_chips = interpret(parser, query, colours, index.terms)
        # Every word understood: the traits say it all, and the text encoder (most of a query's time)
        # is skipped; the matching tokens are ordered by how typical they are of the matching set.
        understood = not interpretation.residual
        similarities = None if understood else ranking.similarities(self._query_vector(index, query))
        encoded = time.perf_counter()
        filter_chips = [*_filter_chips(ranking, traits, False), *_filter_chips(ranking, not_traits, True)]
        allowed = np.ones(ranking.n_rows, bool)
        for _, wanted in colour_chips:
            allowed &= index.terms.mask(wanted)
        if collection:
            allowed &= ranking.collection_mask([collection])
        collections = [chip.collection for chip in interpretation.chips if chip.kind == "collection" and not chip.negated]
        if collections:
            allowed &= ranking.collection_mask(collections)
        constraints, constraint_chips = [], []
        for chip in [*interpretation.chips, *filter_chips]:
            if chip.kind == "collection" and chip.negated:
                allowed &= ~ranking.collection_mask([chip.collection])
            elif chip.kind == "trait" and chip.negated:
                allowed &= ~ranking.traits_mask(chip.traits)
            elif chip.kind == "trait" and chip.source == "filter":
                allowed &= ranking.traits_mask(chip.traits)
            elif chip.kind == "trait":
                constraints.append(ranking.traits_mask(chip.traits))
                constraint_chips.append(chip)
        if not collection and not collections:
            allowed = ranking.best_collections(constraints, allowed)
        if similarities is None:
            similarities = ranking.typicality(constraints, allowed)
        ranked = ranking.rank(similarities, constraints, allowed, offset, k, collapse)
        facet_counts = None
        if facets:
            strict = allowed.copy()
            for mask in constraints:
                strict &= mask
            facet_counts = ranking.facets(strict)
        keys = [(ranking.collection_names[ranking.collection_codes[row]], row) for row in ranked.rows]
        rows = index.details.rows_at([row for _, row in keys]) if index.details is not None else []
        predicted_traits = [index.terms.predicted_of(row) if index.terms is not None else [] for row in ranked.rows]
        hits = [
            SearchHit(
                offset + rank,
                float(similarity),
                float(similarity),
                **{column: row[column] for column in HIT_COLUMNS},
                matched=[chip.text for chip, met in zip(constraint_chips, ranked.met[rank - 1], strict=True) if met],
                duplicates=int(ranked.duplicates[rank - 1]),
                outline_traits=[
                    {**trait, "predicted": bool(predicted)} for trait in ranking.matched_traits(position, constraint_chips)
                ],
                predicted_traits=predicted,
                duplicate_tokens=_duplicate_tokens(index, ranked.collapsed[rank - 1]) if ranked.collapsed is not None else [],
            )
            for rank, (similarity, row, position, predicted) in enumerate(
                zip(ranked.similarities, rows, ranked.rows, predicted_traits, strict=True), 1
            )
        ]
        if constraints and ranked.exact < min(k + offset, ranked.total):
            notices.append(
                f"only {ranked.exact} tokens carry every trait understood; the rest carry some of them"
            )
        shown = Interpretation(query, (*interpretation.chips, *filter_chips, *(chip for chip, _ in colour_chips)), interpretation.residual)
        return SearchResults(
            hits=hits,
            mode="described" if not understood else "described (by traits)",
            notices=notices,
            timings_ms=_timings(started, encoded),
            interpretation=shown.to_json(ranking.vocabulary),
            total=ranked.total,
            exact=ranked.exact,
            offset=offset,
            facets=facet_counts,
        )

    def _query_vector(self, index: IndexVersion, query: str) -> np.ndarray:
        """The query's text embedding, remembered per model (paging and facet clicks repeat a query)."""
        key = (index.model.run_id, query)
        vector = self._query_vectors.pop(key, None)
        if vector is None:
            vector = index.model.embed_texts([query])[0]
        self._query_vectors[key] = vector
        while len(self._query_vectors) > QUERY_VECTORS_KEPT:
            self._query_vectors.pop(next(iter(self._query_vectors)))
        return vector

    async def similar_to_token(
        self,
        collection: str,
        token_id: str,
        k: int = 10,
        in_collection: str | None = None,
        traits: Sequence[str] = (),
    ) -> SearchResults:
        """Tokens whose images are nearest to this token's image (itself left out), optionally in one collection."""
        started = time.perf_counter()
        _check_k(k)
        index = await self._current()
        rows = await token_rows(index.table, collection, token_id, [VECTOR_COLUMN])
        if not rows:
            raise UnknownToken(f"token {collection}/{token_id} is not in the index (check the collection slug and id)")
        where = filter_sql(in_collection, traits, exclude=(collection, token_id))
        found = time.perf_counter()
        return SearchResults(
            hits=await nearest_hits(
                index.table, index.details, np.asarray(rows[0][VECTOR_COLUMN]), k, self.settings, where
            ),
            mode="similar_to_token",
            timings_ms=_timings(started, found),
        )

    async def similar_to_image(
        self, image: Path | bytes, k: int = 10, collection: str | None = None, traits: Sequence[str] = ()
    ) -> SearchResults:
        """Tokens whose images are nearest to `image` (a file or its bytes, any format Pillow reads)."""
        started = time.perf_counter()
        _check_k(k)
        index = await self._current()
        vector = index.model.embed_images([_open_image(image)])[0]
        encoded = time.perf_counter()
        return SearchResults(
            hits=await nearest_hits(
                index.table, index.details, vector, k, self.settings, filter_sql(collection, traits)
            ),
            mode="similar_to_image",
            timings_ms=_timings(started, encoded),
        )

    async def token(self, collection: str, token_id: str) -> SearchHit | None:
        """One indexed token (score 1: it is its own best match), or None."""
        index, key = await self._current(), (collection, token_id)
        if index.details is not None:
            rows = index.details.rows([key]) if key in index.details else []
        else:
            rows = await token_rows(index.table, collection, token_id, HIT_COLUMNS)
        return hit_from_row(0, 1.0, 1.0, rows[0]) if rows else None

    async def png_path(self, collection: str, token_id: str) -> str | None:
        """The standardized PNG the index records for a token (as written: absolute or data-dir relative)."""
        rows = await token_rows((await self._current()).table, collection, token_id, ["png_path"])
        return rows[0]["png_path"] if rows else None

    async def collections(self) -> list[dict[str, Any]]:
        """Every indexed collection with its token count, largest first."""
        names = (await (await self._current()).table.query().select(["collection"]).to_arrow())["collection"]
        counts = pc.value_counts(names).to_pylist()
        return sorted(({"collection": c["values"], "tokens": c["counts"]} for c in counts), key=lambda c: -c["tokens"])

    async def _hybrid(
        self, index: IndexVersion, query: str, vector: np.ndarray, k: int, where: str | None
    ) -> list[SearchHit]:
        candidates = max(HYBRID_CANDIDATES, k)
        shown = KEY_COLUMNS if index.details is not None else HIT_COLUMNS
        by_vector, by_words = await asyncio.gather(
            nearest_keys(index.table, vector, candidates, self.settings, where, shown),
            matching_captions(index.table, query, candidates, where, shown),
        )
        vector_keys, word_keys = keys_of(by_vector), keys_of(by_words)
        similarity = dict(zip(vector_keys, (1.0 - d for d in by_vector["_distance"].to_pylist()), strict=True))
        for key, stored in zip(word_keys, by_words[VECTOR_COLUMN].to_pylist(), strict=True):
            similarity.setdefault(key, float(np.dot(np.asarray(stored), vector)))
        fused = reciprocal_rank_fusion([vector_keys, word_keys])
        if index.details is not None:
            rows = dict(zip(fused, index.details.rows(list(fused)), strict=True))
        else:
            rows = {
                key: row
                for found in (by_words, by_vector)
                for key, row in zip(keys_of(found), found.to_pylist(), strict=True)
            }
        wanted = _comparable(query)
        exact = {key for key, row in rows.items() if wanted in (_comparable(row["caption"]), _comparable(row["name"]))}
        order = sorted(fused, key=lambda key: (key not in exact, -fused[key], key))
        return [hit_from_row(rank, fused[key], similarity[key], rows[key]) for rank, key in enumerate(order[:k], 1)]


def _duplicate_tokens(index: IndexVersion, rows: np.ndarray) -> list[dict[str, Any]]:
    """The tokens a collapsed hit stands for, best ranked first, each marked if it is a clone group's original."""
    if not len(rows) or index.details is None:
        return []
    originals = index.clones.originals if index.clones is not None else set()
    found = index.details.rows_at([int(row) for row in rows])
    return [{"collection": r["collection"], "token_id": r["token_id"], "original": (r["collection"], r["token_id"]) in originals} for r in found]


def _filter_chips(ranking: RankingIndex, filters: Sequence[str], negated: bool) -> list[Chip]:
    """`trait=`/`not_trait=` filters as chips (so the page shows them beside the understood ones)."""
    chips = []
    for text in filters:
        try:
            ids = tuple(ranking.filter_traits(text))
        except ValueError as error:
            raise SearchError(str(error)) from None
        chips.append(Chip("trait", text, (0, 0), text, negated, None, ids, (), "filter"))
    return chips


def _clean_query(query: str, model: EmbeddingModel, allow_empty: bool = False) -> tuple[str, list[str]]:
    notices = []
    query = " ".join(query.split())
    if not query and allow_empty:
        return query, notices
    if not query:
        raise SearchError('empty query: type what you are looking for, e.g. "female with blonde bob and earring"')
    if len(query) > MAX_QUERY_CHARS:
        query = query[:MAX_QUERY_CHARS]
        notices.append(f"query cut to its first {MAX_QUERY_CHARS} characters")
    tokens = model.count_text_tokens(query)
    if tokens > model.context_length:
        notices.append(
            f"query is {tokens} tokens long; the text encoder read its first {model.context_length} "
            "(start and end markers included) and ignored the rest"
        )
    return query, notices


def _recorded_model_dir(data_dir: Path, run_id: str, recorded: str) -> Path:
    """The model the index was built with: where it was recorded, else where `clip_model` keeps runs."""
    for candidate in (Path(recorded), data_dir / MODELS_DIR / run_id / "model"):
        if (candidate / "config.json").exists():
            return candidate
    raise SearchError(
        f"the index was built with model {run_id}, saved at {recorded}, which is gone: pass --model-dir, "
        "or materialize `clip_model` and `nft_index` again"
    )


def _open_image(image: Path | bytes) -> Image.Image:
    """Decode an image fully (so a broken file fails here, with a message), refusing oversized uploads."""
    if isinstance(image, bytes) and len(image) > MAX_IMAGE_BYTES:
        raise SearchError(f"image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    try:
        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
            opened.load()
            return opened.copy()
    except FileNotFoundError as error:
        raise SearchError(f"no image at {image}") from error
    except (OSError, Image.DecompressionBombError) as error:
        raise SearchError(f"not a readable image: {error}") from error
