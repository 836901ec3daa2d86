"""The search index updates a partition incrementally: only new and changed rows are embedded,
rows of tokens that are gone are deleted, unchanged rows keep their vectors, and the vector index
takes new rows in place until too many are unindexed.

Real LanceDB tables and a real (untrained, seeded) tiny CLIP; counts, not timings.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from nft_pipeline.embedding import EmbeddingModel
from nft_pipeline.index import (
    TABLE_NAME,
    VECTOR_COLUMN,
    AnnSettings,
    embedding_rows,
    ensure_indexes,
    index_inputs_from_examples,
    partition_changes,
    update_partition,
)
from nft_pipeline.train.model import build_tiny_clip
from nft_pipeline.train.sample_data import nouns_inputs
from tests.tiny_model import TINY, one_torch_thread


@pytest.fixture(scope="module")
def model_and_nouns(tmp_path_factory):
    root = tmp_path_factory.mktemp("incremental")
    nouns, _ = nouns_inputs(range(40), root / "images")
    model_dir = root / "models" / "untrained" / "model"
    build_tiny_clip(TINY).save(model_dir)
    return EmbeddingModel.load(model_dir), nouns


def sync(db_path: Path, model: EmbeddingModel, inputs: pa.Table):
    """What the `nft_index` step does for one partition; returns (changes, rows embedded, write)."""
    with one_torch_thread():
        changes = partition_changes(db_path, "nouns", inputs, model.run_id)
        rows = embedding_rows(model, changes.to_embed)
        return changes, rows.num_rows, update_partition(db_path, "nouns", rows, changes.gone)


def stored_vectors(db_path: Path) -> dict[str, np.ndarray]:
    table = lancedb.connect(db_path).open_table(TABLE_NAME).to_arrow()
    vectors = table[VECTOR_COLUMN].combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
    return dict(zip(table["token_id"].to_pylist(), vectors))


def test_a_rerun_embeds_only_new_and_changed_rows_and_drops_gone_ones(model_and_nouns, tmp_path):
    model, nouns = model_and_nouns
    db_path = tmp_path / "lance"
    first = index_inputs_from_examples(nouns[:10])
    changes, embedded, write = sync(db_path, model, first)
    assert (embedded, changes.unchanged, changes.gone, write.inserted, write.rows) == (10, 0, (), 10, 10)
    before = stored_vectors(db_path)

    changes, embedded, write = sync(db_path, model, first)  # nothing changed
    assert (embedded, changes.unchanged, changes.gone) == (0, 10, ())
    assert (write.inserted, write.updated, write.deleted, write.rows) == (0, 0, 0, 10)
    assert lancedb.connect(db_path).open_table(TABLE_NAME).version == write.version  # no commit at all

    # Tokens 0 and 1 are gone, 10 and 11 are new, token 5's caption changed, the rest are as they were.
    changed = [dataclasses.replace(e, caption=dataclasses.replace(e.caption, caption="a changed caption")) if e.token_id == "5" else e for e in nouns[2:12]]
    changes, embedded, write = sync(db_path, model, index_inputs_from_examples(changed))
    assert sorted(changes.to_embed["token_id"].to_pylist()) == ["10", "11", "5"]
    assert (embedded, changes.unchanged, changes.gone) == (3, 7, ("0", "1"))
    assert (write.inserted, write.updated, write.deleted, write.rows) == (2, 1, 2, 10)
    after = stored_vectors(db_path)
    assert sorted(after, key=int) == [str(i) for i in range(2, 12)]
    for token_id in ("2", "3", "4", "6", "7", "8", "9"):
        assert np.array_equal(after[token_id], before[token_id])  # kept, not re-embedded
    table = lancedb.connect(db_path).open_table(TABLE_NAME)
    assert table.search().where("token_id = '5'").select(["caption"]).to_arrow()["caption"].to_pylist() == ["a changed caption"]


def test_a_changed_image_is_embedded_again(model_and_nouns, tmp_path):
    model, nouns = model_and_nouns
    db_path = tmp_path / "lance"
    inputs = index_inputs_from_examples(nouns[:4])
    sync(db_path, model, inputs)
    # Token 3 now shows token 20's image (same path, new content: the digest changes with the bytes).
    swapped = inputs.to_pylist()
    swapped[3]["png_sha256"] = index_inputs_from_examples(nouns[20:21])["png_sha256"][0].as_py()
    swapped[3]["png_path"] = str(nouns[20].image_path)
    changes, embedded, _ = sync(db_path, model, pa.Table.from_pylist(swapped, schema=inputs.schema))
    assert changes.to_embed["token_id"].to_pylist() == ["3"] and embedded == 1
    vectors = stored_vectors(db_path)
    expected = model.embed_images([nouns[20].image_path])[0]
    assert np.allclose(vectors["3"], expected, atol=1e-5)


def test_the_vector_index_takes_new_rows_in_place_until_too_many_are_unindexed(model_and_nouns, tmp_path):
    model, nouns = model_and_nouns
    db_path = tmp_path / "lance"
    # An index from 20 rows on, rebuilt once more than a quarter of the rows are unindexed.
    settings = AnnSettings(max_flat_floats=1, min_index_rows=20, max_unindexed_share=0.25)
    sync(db_path, model, index_inputs_from_examples(nouns[:24]))
    assert VECTOR_COLUMN in ensure_indexes(db_path, settings).built

    sync(db_path, model, index_inputs_from_examples(nouns[:28]))  # 4 of 28 unindexed: folded in
    state = ensure_indexes(db_path, settings)
    assert VECTOR_COLUMN not in state.built and state.vector_index
    table = lancedb.connect(db_path).open_table(TABLE_NAME)
    vector_index = next(index for index in table.list_indices() if index.columns == [VECTOR_COLUMN])
    assert table.index_stats(vector_index.name).num_unindexed_rows == 0  # the new rows are in the index

    sync(db_path, model, index_inputs_from_examples(nouns[:40]))  # 12 of 40 unindexed: rebuilt
    assert VECTOR_COLUMN in ensure_indexes(db_path, settings).built
    table = lancedb.connect(db_path).open_table(TABLE_NAME)
    assert table.index_stats(vector_index.name).num_unindexed_rows == 0
    assert table.index_stats(vector_index.name).num_indexed_rows == 40


def test_the_vector_index_is_rebuilt_once_folds_split_it_into_too_many_parts(model_and_nouns, tmp_path):
    model, nouns = model_and_nouns
    db_path = tmp_path / "lance"
    settings = AnnSettings(max_flat_floats=1, min_index_rows=20, max_unindexed_share=0.5, max_index_parts=3)
    sync(db_path, model, index_inputs_from_examples(nouns[:24]))
    assert VECTOR_COLUMN in ensure_indexes(db_path, settings).built
    parts, rebuilt_at = [], None
    for size in range(25, 31):  # a token more each day: small folds, each a delta part after the first
        sync(db_path, model, index_inputs_from_examples(nouns[:size]))
        if VECTOR_COLUMN in ensure_indexes(db_path, settings).built:
            rebuilt_at = size
            break
        table = lancedb.connect(db_path).open_table(TABLE_NAME)
        name = next(index.name for index in table.list_indices() if index.columns == [VECTOR_COLUMN])
        parts.append(table.index_stats(name).num_indices)
    assert parts == [1, 2, 3] and rebuilt_at == 28  # the first fold merges, then a part a fold; at 3 parts, rebuilt
    table = lancedb.connect(db_path).open_table(TABLE_NAME)
    name = next(index.name for index in table.list_indices() if index.columns == [VECTOR_COLUMN])
    assert table.index_stats(name).num_indices == 1 and table.index_stats(name).num_indexed_rows == rebuilt_at
