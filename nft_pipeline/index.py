"""The search index: one LanceDB table of image embeddings with each token's caption and tags.

`<data dir>/lance/nft_embeddings` holds one row per token: its keys, name, caption and caption
tags, the standardized PNG, the L2-normalised image embedding of the trained CLIP model and the
model's run id. Search (search.py) embeds a text or an image with the same model and asks for the
nearest rows by cosine similarity, optionally fused with a full-text match on the caption.

Writing is per collection partition, like every other stage. `replace_partition` is one
`merge_insert` on (collection, token_id) that updates the partition's rows, inserts new ones and
deletes rows the partition no longer has, all in one commit: a reader sees the old partition or
the new one, never a gap or a duplicate, and rerunning a partition writes the same rows again.
A rerun embeds only what changed: each row keeps a digest of its inputs (`input_digest`: image
content, caption, tags, name), `partition_changes` compares a partition's inputs with its rows,
and `update_partition` upserts the new and changed rows and deletes those of tokens that are gone,
again in one commit; unchanged rows keep their vectors. Rows embedded by another model are deleted in the same commit: two models' vectors are not
comparable, so the table only ever holds one embedding space (partitions not rerun yet are absent
from search until their rerun).

Indexes (`ensure_indexes`) are built once the table is large enough to need them and kept up to
date afterwards:

- an IVF vector index (cosine; 8-bit scalar quantization by default, PQ as an option, see
  `AnnSettings`) once exact search would miss the 10 ms budget (`AnnSettings.needs_index`, the
  threshold measured by benchmarks/bench_index.py, docs/search.md); new rows are folded into it
  after writes, and it is rebuilt once too many rows are unindexed (see `ensure_indexes`). Queries re-rank their candidates with the stored vectors, so the scores
  search reports are exact cosine similarities;
- a native full-text index on `caption`, for hybrid search;
- scalar indexes on `collection` (bitmap) and `traits` (label list), which the search filters use.

Until an index covers new rows, LanceDB scans those rows exactly and merges them in, so a query
never misses a row that was written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS, Bitmap, IndexConfig, IvfPq, IvfSq, LabelList

from nft_pipeline.captions import CAPTION_TAG, CaptionTag

if TYPE_CHECKING:
    from nft_pipeline.embedding import EmbeddingModel
    from nft_pipeline.train.data import TrainingExample

# Once imported, LanceDB warns at every fork of the process that its async runtime might deadlock
# in the child. The children this package forks (training and embedding DataLoader workers, in a
# Dagster process that also imported this module) only read the memory-mapped image store and
# never call LanceDB, which is the case the warning is about; the standardize and download pools
# use forkserver and spawn. Without the filter a demo run prints it for every worker started.
warnings.filterwarnings("ignore", message="lancedb fork support is experimental", category=RuntimeWarning)

log = logging.getLogger(__name__)

TABLE_NAME = "nft_embeddings"
LANCE_DIR = "lance"
MODELS_DIR = "models"  # <data dir>/models/<run id>/model, where the `clip_model` asset saves a run
VECTOR_COLUMN = "vector"
CAPTION_COLUMN = "caption"
NORM_TOLERANCE = 1e-3

# What indexing a token needs: the join of captions, standardized images and token names.
INDEX_INPUT = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("token_id", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("tags", pa.list_(CAPTION_TAG), nullable=False),
        pa.field("png_path", pa.string(), nullable=False),
        pa.field("png_sha256", pa.string()),  # the PNG's content: a changed image changes its digest
    ]
)
# What a row's stored fields and embedding depend on besides the model; their digest is kept per
# row (`input_digest`), so a rerun embeds only rows whose digest or model changed.
DIGEST_FIELDS = ("name", "caption", "tags", "png_path", "png_sha256")
# Columns added since the table was first written; a table without them gets them as nulls, and a
# null digest never matches, so those rows are embedded again on their partition's next run.
ADDED_COLUMNS = ("png_sha256", "input_digest")


def embeddings_schema(dim: int) -> pa.Schema:
    """The table's schema for a model whose embeddings have `dim` dimensions."""
    return pa.schema(
        [
            *INDEX_INPUT,
            # "trait_type=value", case-folded: what the trait filter matches (`array_has_all`), since
            # SQL filters cannot reach into the fields of a list<struct>.
            pa.field("traits", pa.list_(pa.string()), nullable=False),
            pa.field(VECTOR_COLUMN, pa.list_(pa.float32(), dim), nullable=False),
            pa.field("model_run_id", pa.string(), nullable=False),
            pa.field("model_dir", pa.string(), nullable=False),
            pa.field("input_digest", pa.string()),
        ]
    )


class IndexMissing(LookupError):
    """No search table where one was expected; the message says which asset builds it."""

    def __init__(self, db_path: Path):
        super().__init__(
            f"no search index at {db_path / (TABLE_NAME + '.lance')}: materialize the `nft_index` asset "
            "(after `clip_model`), or run `make demo` to build everything for the sample collections"
        )


def lance_path(data_dir: Path) -> Path:
    return Path(data_dir) / LANCE_DIR


def sql_literal(value: str) -> str:
    """A SQL string literal for LanceDB filters (quotes doubled), so untrusted values stay values."""
    return "'" + value.replace("'", "''") + "'"


def fold_text(text: str) -> str:
    """Case-folded, runs of whitespace made one space: how user text is compared with stored text."""
    return " ".join(text.split()).casefold()


def trait_key(trait_type: str | None, value: str) -> str:
    """How a (trait_type, value) pair is stored in `traits` and looked up by the trait filter (case and spacing folded)."""
    return f"{fold_text(trait_type or '')}={fold_text(value)}"


def trait_keys(tags: Sequence[CaptionTag]) -> list[str]:
    return list(dict.fromkeys(trait_key(tag["trait_type"], tag["value"]) for tag in tags))


# ---------------------------------------------------------------- rows and partitions


def index_inputs_from_examples(
    examples: Sequence[TrainingExample], png_digests: Mapping[tuple[str, str], str | None] | None = None
) -> pa.Table:
    """Index inputs for training examples; each PNG's sha256 from `png_digests` by (collection,
    token_id), else hashed here (the sample collections in demos, tests and benchmarks)."""

    def digest(example: TrainingExample) -> str | None:
        if png_digests is not None:
            return png_digests[example.key]
        return hashlib.sha256(Path(example.image_path).read_bytes()).hexdigest()

    return pa.Table.from_pylist(
        [
            {
                "collection": example.collection,
                "token_id": example.token_id,
                "name": example.caption.title,
                "caption": example.caption.caption,
                "tags": example.caption.tags,
                "png_path": str(example.image_path),
                "png_sha256": digest(example),
            }
            for example in examples
        ],
        schema=INDEX_INPUT,
    )


def index_inputs(images: pa.Table, captions: pa.Table) -> pa.Table:
    """Index inputs for a partition's `standardized_images` and `captions` tables: every token with an
    ok image and a caption, joined the way training joins them (so the index holds what was trained on)."""
    from nft_pipeline.train.tables import training_examples  # the training side's join, only where it is used

    rows = images.select(["collection", "token_id", "png_sha256"]).to_pylist()
    digests = {(row["collection"], row["token_id"]): row["png_sha256"] for row in rows}
    return index_inputs_from_examples(training_examples(images, captions), digests)


def input_digests(tokens: pa.Table) -> list[str]:
    """Per row of `tokens` (INDEX_INPUT columns), a digest of `DIGEST_FIELDS`."""
    columns = [tokens[name].to_pylist() for name in DIGEST_FIELDS]
    return [hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:32] for values in zip(*columns)]


def embedding_rows(model: EmbeddingModel, tokens: pa.Table, batch_size: int = 64, decode_threads: int = 2) -> pa.Table:
    """Table rows for `tokens` (INDEX_INPUT columns): their image embeddings, trait keys, model and input digest."""
    tokens = tokens.select(INDEX_INPUT.names).cast(INDEX_INPUT)
    vectors = model.embed_images([Path(p) for p in tokens["png_path"].to_pylist()], batch_size, decode_threads)
    count = tokens.num_rows
    return pa.Table.from_arrays(
        [
            *tokens.columns,
            pa.array([trait_keys(tags) for tags in tokens["tags"].to_pylist()], pa.list_(pa.string())),
            pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), model.dim),
            pa.array([model.run_id] * count, pa.string()),
            pa.array([str(model.model_dir)] * count, pa.string()),
            pa.array(input_digests(tokens), pa.string()),
        ],
        schema=embeddings_schema(model.dim),
    )


@dataclass(frozen=True)
class PartitionChanges:
    """How a partition's rows in the table differ from its inputs, for one model (`partition_changes`)."""

    to_embed: pa.Table  # input rows (INDEX_INPUT) new to the table, changed since embedded, or of another model
    gone: tuple[str, ...]  # token ids the table holds for the partition that its inputs no longer have
    unchanged: int  # input rows whose stored row is up to date: not embedded again


def partition_changes(db_path: Path, collection: str, inputs: pa.Table, model_run_id: str) -> PartitionChanges:
    """Compare a partition's inputs with its stored rows by token id, input digest and model."""
    inputs = inputs.select(INDEX_INPUT.names).cast(INDEX_INPUT)
    table = _existing_table(lancedb.connect(db_path))
    stored: dict[str, tuple[str | None, str]] = {}
    if table is not None:
        columns = ["token_id", "model_run_id"] + (["input_digest"] if "input_digest" in table.schema.names else [])
        rows = table.search().where(f"collection = {sql_literal(collection)}").select(columns).limit(None).to_arrow()
        digests = rows["input_digest"].to_pylist() if "input_digest" in columns else [None] * rows.num_rows
        stored = dict(zip(rows["token_id"].to_pylist(), zip(digests, rows["model_run_id"].to_pylist())))
    token_ids = inputs["token_id"].to_pylist()
    changed = [stored.get(token_id) != (digest, model_run_id) for token_id, digest in zip(token_ids, input_digests(inputs))]
    return PartitionChanges(
        to_embed=inputs.filter(pa.array(changed, pa.bool_())),
        gone=tuple(sorted(set(stored) - set(token_ids))),
        unchanged=changed.count(False),
    )


@dataclass(frozen=True)
class PartitionWrite:
    """What a partition write did: the partition's row count now, and the rows it changed."""

    collection: str
    rows: int
    inserted: int
    updated: int
    deleted: int  # rows the partition no longer has, plus every row of another model
    version: int


def _check_partition(collection: str, rows: pa.Table) -> tuple[int, str | None]:
    """The vector size and model run id of `rows`, after checking they can be one partition."""
    vector_type = rows.schema.field(VECTOR_COLUMN).type
    if not pa.types.is_fixed_size_list(vector_type):
        raise ValueError(f"{VECTOR_COLUMN} must be a fixed-size list, got {vector_type}")
    if rows.num_rows == 0:
        return vector_type.list_size, None
    if set(rows["collection"].to_pylist()) != {collection}:
        raise ValueError(f"every row of partition {collection!r} must have collection = {collection!r}")
    token_ids = rows["token_id"].to_pylist()
    if len(set(token_ids)) != len(token_ids):
        raise ValueError(f"partition {collection!r} has duplicate token ids")
    run_ids = set(rows["model_run_id"].to_pylist())
    if len(run_ids) != 1:
        raise ValueError(f"partition {collection!r} mixes embeddings of several models: {sorted(run_ids)}")
    vectors = rows[VECTOR_COLUMN].combine_chunks().flatten().to_numpy().reshape(rows.num_rows, -1)
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(np.abs(norms - 1.0) < NORM_TOLERANCE):
        raise ValueError("vectors must be finite and L2-normalised (cosine similarity is their dot product)")
    return vector_type.list_size, run_ids.pop()


def _existing_table(db: lancedb.DBConnection) -> lancedb.table.Table | None:
    return db.open_table(TABLE_NAME) if TABLE_NAME in db.list_tables().tables else None


def open_table(db_path: Path) -> lancedb.table.Table:
    """The search table, or `IndexMissing` saying which asset builds it."""
    table = _existing_table(lancedb.connect(db_path))
    if table is None:
        raise IndexMissing(Path(db_path))
    return table


def partition_row_count(db_path: Path, collection: str) -> int:
    """Rows the table holds for `collection` (0 when there is no table yet), counted in the table itself."""
    table = _existing_table(lancedb.connect(db_path))
    return table.count_rows(f"collection = {sql_literal(collection)}") if table is not None else 0


def _writable_table(db: lancedb.DBConnection, schema: pa.Schema) -> lancedb.table.Table:
    """The table, created if absent, recreated for another vector size, given any of `ADDED_COLUMNS` it lacks."""
    # exist_ok: a concurrent writer of another partition may create the table first.
    table = _existing_table(db) or db.create_table(TABLE_NAME, schema=schema, exist_ok=True)
    if table.schema.field(VECTOR_COLUMN).type != schema.field(VECTOR_COLUMN).type:
        log.warning("%s: vectors change size (new model); recreating the table", TABLE_NAME)
        return db.create_table(TABLE_NAME, schema=schema, mode="overwrite")
    missing = [schema.field(name) for name in ADDED_COLUMNS if name not in table.schema.names]
    if missing:
        table.add_columns(missing)
    return table


def _merge(db_path: Path, collection: str, rows: pa.Table, deletes: list[str]) -> PartitionWrite:
    """Upsert `rows` by (collection, token_id) and delete the table's other rows matching any of
    `deletes` or embedded by another model than `rows`', in one commit."""
    dim, run_id = _check_partition(collection, rows)
    if run_id is not None:
        deletes = [*deletes, f"model_run_id <> {sql_literal(run_id)}"]
    delete_where = " OR ".join(f"({condition})" for condition in deletes)
    schema = embeddings_schema(dim)
    rows = rows.select(schema.names).cast(schema)
    table = _writable_table(lancedb.connect(db_path), schema)
    if rows.num_rows == 0 and not delete_where:
        inserted = updated = deleted = 0
        version = table.version
    else:
        merge = table.merge_insert(["collection", "token_id"]).when_matched_update_all().when_not_matched_insert_all()
        if delete_where:
            merge = merge.when_not_matched_by_source_delete(delete_where)
        result = merge.execute(rows)
        inserted, updated, deleted, version = (
            result.num_inserted_rows, result.num_updated_rows, result.num_deleted_rows, result.version
        )
    return PartitionWrite(
        collection=collection,
        rows=table.count_rows(f"collection = {sql_literal(collection)}"),
        inserted=inserted,
        updated=updated,
        deleted=deleted,
        version=version,
    )


def replace_partition(db_path: Path, collection: str, rows: pa.Table) -> PartitionWrite:
    """Make `rows` (see `embedding_rows`) the whole of `collection`'s partition, in one commit.

    Safe to rerun: rows are keyed by (collection, token_id), so writing the same partition twice
    leaves the same rows. Rows of other collections stay untouched unless they were embedded by
    another model, in which case they are deleted (see the module docstring). A model with
    another vector size recreates the table.
    """
    return _merge(db_path, collection, rows, [f"collection = {sql_literal(collection)}"])


def update_partition(db_path: Path, collection: str, rows: pa.Table, gone: Sequence[str]) -> PartitionWrite:
    """Upsert `rows` (the partition's new and changed rows, see `partition_changes`) and delete the
    partition's rows of the tokens in `gone`, in one commit; rows of the partition not named stay as
    they are, vectors included. Rows of another model than `rows`' are deleted, as `replace_partition` does.
    """
    gone_rows = f"collection = {sql_literal(collection)} AND token_id IN ({', '.join(map(sql_literal, gone))})"
    return _merge(db_path, collection, rows, [gone_rows] if gone else [])


# ---------------------------------------------------------------- indexes


VectorIndexKind = Literal["ivf_sq", "ivf_pq"]


@dataclass(frozen=True)
class AnnSettings:
    """When the vector index is built, which one, and how queries probe it (measured in docs/search.md).

    Exact search compares the query with every stored float, so its cost grows with rows x
    dimensions: it stays within the 10 ms p50 budget up to about `max_flat_floats` (some 2,000
    rows of 512-d CLIP, 8,000 of the tiny preset's 128-d), and the index is built beyond that
    (never for fewer than `min_index_rows`, where it would buy nothing).

    `ivf_sq` (the default) keeps each vector as 8-bit scalars: on 100,000 512-d vectors it builds
    in seconds and answers within the budget at recall@10 >= 0.95 without re-ranking. `ivf_pq`
    compresses 8x more (8 dimensions per PQ sub-vector) but needs minutes of k-means to build and
    a wider re-ranking to reach the same recall, which costs the budget; it is the choice when the
    index must stay small (tens of millions of rows). Both use about sqrt(rows) IVF partitions, the
    usual balance between choosing partitions and scanning them. Queries probe `nprobes` partitions
    and re-rank `refine_factor` x k candidates with the stored vectors, so the scores search
    reports are exact cosine similarities.
    """

    kind: VectorIndexKind = "ivf_sq"
    max_flat_floats: int = 1_000_000
    min_index_rows: int = 256
    nprobes: int = 10
    refine_factor: int = 2
    dims_per_sub_vector: int = 8  # ivf_pq only
    # Past this share of rows not yet in the vector index, `ensure_indexes` rebuilds it instead of
    # folding the rows in; likewise once folding has split it into this many parts (each `optimize()`
    # after the first adds a delta part, and a query searches every part). Measured by
    # benchmarks/bench_index_update.py (docs/scale.md).
    max_unindexed_share: float = 0.2
    max_index_parts: int = 10

    def needs_index(self, rows: int, dim: int) -> bool:
        return rows >= max(self.min_index_rows, self.max_flat_floats // dim)

    def num_partitions(self, rows: int) -> int:
        return max(1, round(math.sqrt(rows)))

    def vector_index(self, rows: int, dim: int) -> IvfSq | IvfPq:
        if self.kind == "ivf_sq":
            return IvfSq(distance_type="cosine", num_partitions=self.num_partitions(rows))
        sub_vectors = dim // self.dims_per_sub_vector if dim % self.dims_per_sub_vector == 0 else 1
        return IvfPq(distance_type="cosine", num_partitions=self.num_partitions(rows), num_sub_vectors=sub_vectors)


DEFAULT_ANN = AnnSettings()


@dataclass(frozen=True)
class IndexState:
    """Which indexes the table has after `ensure_indexes`, and which were (re)built by that call."""

    rows: int
    vector_index: bool
    built: tuple[str, ...]


def _indexes(table: lancedb.table.Table) -> dict[str, IndexConfig]:
    """The table's indexes by the column they cover."""
    return {index.columns[0]: index for index in table.list_indices()}


def _scalar_and_text_indexes() -> Iterator[tuple[str, FTS | Bitmap | LabelList]]:
    yield CAPTION_COLUMN, FTS()
    yield "collection", Bitmap()
    yield "traits", LabelList()


def ensure_indexes(db_path: Path, settings: AnnSettings = DEFAULT_ANN, rebuild: bool = False) -> IndexState:
    """Build the indexes the table lacks and bring the others up to date (see the module docstring).

    Rows written since the last call are folded into every existing index by `optimize()`, which
    also compacts the small files partition writes leave: the vector index takes new rows without
    retraining its centroids, in a fraction of a rebuild's time. Rows of collections the centroids
    never saw are placed less well, and each fold after the first adds a delta part that every
    query searches, so the vector index is rebuilt instead once more than
    `settings.max_unindexed_share` of the rows are unindexed or it has `settings.max_index_parts`
    parts (both measured by benchmarks/bench_index_update.py, docs/scale.md). Run this after a
    batch of partition writes rather than after each one when partitions are written
    concurrently: index builds commit like writes.
    """
    table = open_table(db_path)
    rows = table.count_rows()
    indexes = _indexes(table)
    dim = table.schema.field(VECTOR_COLUMN).type.list_size
    vector = indexes.get(VECTOR_COLUMN)
    built = []
    if vector is None:
        stale_vector = settings.needs_index(rows, dim)
    else:
        stats = table.index_stats(vector.name)
        unindexed = stats.num_unindexed_rows if stats else rows
        parts = (stats.num_indices or 1) if stats else 1
        stale_vector = bool(rows) and (unindexed / rows > settings.max_unindexed_share or parts >= settings.max_index_parts)
    if rebuild or stale_vector:
        table.create_index(VECTOR_COLUMN, config=settings.vector_index(rows, dim), replace=True)
        built.append(VECTOR_COLUMN)
    for column, config in _scalar_and_text_indexes():
        if rows and (rebuild or column not in indexes):
            table.create_index(column, config=config, replace=True)
            built.append(column)
    if any(index.num_unindexed_rows for index in _indexes(table).values()):
        table.optimize()
    return IndexState(rows=rows, vector_index=VECTOR_COLUMN in _indexes(table), built=tuple(built))
