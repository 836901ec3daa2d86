"""The search index and search API on real LanceDB tables, with a tiny CLIP trained on real Nouns.

The model is trained for 40 steps on 64 Nouns (one batch of all 64, no masking): enough for every
caption to find its own Noun among the top 10 of 80 indexed tokens (16 untrained-on punks join them
as a second collection). Everything else here does not depend on how good the model is.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from nft_pipeline.cli import main as run_cli
from nft_pipeline.embedding import EmbeddingModel
from nft_pipeline.index import (
    TABLE_NAME,
    VECTOR_COLUMN,
    AnnSettings,
    IndexMissing,
    embeddings_schema,
    ensure_indexes,
    lance_path,
    replace_partition,
)
from nft_pipeline.search import (
    HitDetails,
    NftSearch,
    SearchError,
    UnknownToken,
    reciprocal_rank_fusion,
)
from nft_pipeline.train import TrainingExample, train_clip
from nft_pipeline.train.data import PairCollator, PairSample, image_sources
from nft_pipeline.train.model import image_embeddings
from nft_pipeline.train.prepared import prepare_image
from nft_pipeline.train.sample_data import nouns_inputs, punks_inputs
from tests.tiny_model import TINY, index_examples, one_torch_thread

# The index holds what the model was trained on: one batch of all 64 Nouns, 40 steps, no masking.
TRAIN = replace(
    TINY,
    split_ratios=(1.0, 0.0, 0.0),
    batch_size=64,
    epochs=40,
    learning_rate=1e-3,
    warmup_fraction=0.0,
    masking_probability=0.0,
)


@dataclass
class Indexed:
    data_dir: Path
    model: EmbeddingModel
    nouns: list[TrainingExample]
    punks: list[TrainingExample]
    rows: dict[str, pa.Table]  # collection -> the rows written
    search: NftSearch
    run: Callable[[Coroutine[Any, Any, Any]], Any]  # runs a coroutine on the loop `search` was opened on


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Indexed:
    with one_torch_thread():
        data_dir = tmp_path_factory.mktemp("search")
        nouns, components = nouns_inputs(range(64), data_dir / "images")
        punks, _ = punks_inputs(range(16), data_dir / "images")
        training = train_clip(nouns, components, TRAIN, data_dir / "models" / "run")
        model = EmbeddingModel.load(training.model_dir)
        rows = index_examples(data_dir, model, {"nouns": nouns, "cryptopunks": punks})
        loop = asyncio.new_event_loop()
        search = loop.run_until_complete(NftSearch.open(data_dir))
        yield Indexed(data_dir, model, nouns, punks, rows, search, loop.run_until_complete)
        loop.close()


def keys(results) -> list[tuple[str, str]]:
    return [(hit.collection, hit.token_id) for hit in results.hits]


def table_rows(db_path: Path) -> list[dict[str, Any]]:
    table = lancedb.connect(db_path).open_table(TABLE_NAME)
    return sorted(
        table.to_arrow().drop_columns([VECTOR_COLUMN]).to_pylist(), key=lambda r: (r["collection"], r["token_id"])
    )


def test_each_caption_finds_its_own_token(indexed):
    ranks = []
    for example in indexed.nouns:
        found = keys(indexed.run(indexed.search.text(example.caption.caption, k=10)))
        ranks.append(found.index(example.key) + 1 if example.key in found else None)
    in_top_10 = [rank for rank in ranks if rank is not None]
    assert len(in_top_10) >= 0.9 * len(ranks), ranks  # chance: 10 of 80
    assert sum(rank == 1 for rank in in_top_10) >= 0.5 * len(ranks), ranks  # chance: 1 of 80


def test_indexed_vectors_are_what_the_training_batches_embed_to(indexed):
    """Index and training share the pixel preparation (resize_and_crop, pixel_values): same image, same vector."""
    model = indexed.model
    preprocessing = model.bundle.preprocessing
    sources = image_sources(indexed.nouns[:8])
    prepared = [prepare_image(source, {}, preprocessing, model.matte_rgb) for source in sources]
    collator = PairCollator(model.bundle.tokenizer, model.context_length, preprocessing)
    batch = collator([PairSample(p.rgb, "", index, ()) for index, p in enumerate(prepared)])
    with torch.inference_mode():
        trained = torch.nn.functional.normalize(image_embeddings(model.bundle.model, batch["pixel_values"]), dim=-1)
    indexed_vectors = indexed.rows["nouns"][VECTOR_COLUMN].to_pylist()[:8]
    np.testing.assert_allclose(np.asarray(indexed_vectors), trained.numpy(), atol=1e-5)


def test_scores_are_exact_cosine_similarities(indexed):
    query = "a Noun with a cone head"
    results = indexed.run(indexed.search.text(query, k=5))
    query_vector = indexed.model.embed_texts([query])[0]
    exact = sorted(
        (
            (float(np.asarray(row[VECTOR_COLUMN]) @ query_vector), (row["collection"], row["token_id"]))
            for rows in indexed.rows.values()
            for row in rows.to_pylist()
        ),
        reverse=True,
    )[:5]
    assert keys(results) == [key for _, key in exact]
    assert [hit.score for hit in results.hits] == pytest.approx([score for score, _ in exact], abs=1e-5)
    assert [hit.rank for hit in results.hits] == [1, 2, 3, 4, 5]


def test_replacing_a_partition_twice_keeps_row_counts_exact(indexed, tmp_path):
    db_path = tmp_path / "lance"
    nouns, punks = indexed.rows["nouns"], indexed.rows["cryptopunks"]
    replace_partition(db_path, "nouns", nouns)
    replace_partition(db_path, "cryptopunks", punks)
    punks_before = [row for row in table_rows(db_path) if row["collection"] == "cryptopunks"]

    smaller = nouns.slice(0, 40)
    first = replace_partition(db_path, "nouns", smaller)
    second = replace_partition(db_path, "nouns", smaller)
    assert (first.rows, first.updated, first.inserted, first.deleted) == (40, 40, 0, 24)
    assert (second.rows, second.updated, second.inserted, second.deleted) == (40, 40, 0, 0)
    rows = table_rows(db_path)
    assert sorted(row["token_id"] for row in rows if row["collection"] == "nouns") == sorted(
        smaller["token_id"].to_pylist()
    )
    assert [row for row in rows if row["collection"] == "cryptopunks"] == punks_before  # untouched
    assert len(rows) == 40 + 16

    emptied = replace_partition(db_path, "nouns", nouns.slice(0, 0))
    assert emptied.deleted == 40 and len(table_rows(db_path)) == 16


def test_rows_of_another_model_are_dropped_in_the_same_write(indexed, tmp_path):
    db_path = tmp_path / "lance"
    punks = indexed.rows["cryptopunks"]
    older = punks.set_column(punks.schema.get_field_index("model_run_id"), "model_run_id", pa.array(["old"] * 16))
    replace_partition(db_path, "cryptopunks", older)
    written = replace_partition(db_path, "nouns", indexed.rows["nouns"])
    assert written.deleted == 16  # one embedding space per table: the old model's punks are gone
    assert {row["collection"] for row in table_rows(db_path)} == {"nouns"}

    # Another vector size (another model family): the table is recreated for the new schema.
    unit = np.zeros((3, 8), dtype=np.float32)
    unit[:, 0] = 1.0
    small = pa.Table.from_pylist(
        [
            {
                **row,
                VECTOR_COLUMN: vector.tolist(),
                "model_run_id": "small",
            }
            for row, vector in zip(indexed.rows["nouns"].slice(0, 3).drop_columns([VECTOR_COLUMN]).to_pylist(), unit)
        ],
        schema=embeddings_schema(8),
    )
    assert replace_partition(db_path, "nouns", small).rows == 3
    assert len(table_rows(db_path)) == 3


def test_a_partition_with_bad_rows_is_refused(indexed, tmp_path):
    nouns = indexed.rows["nouns"]
    db_path = tmp_path / "lance"
    with pytest.raises(ValueError, match="collection = 'cryptopunks'"):
        replace_partition(db_path, "cryptopunks", nouns)
    with pytest.raises(ValueError, match="duplicate token ids"):
        replace_partition(db_path, "nouns", pa.concat_tables([nouns.slice(0, 2), nouns.slice(0, 1)]))
    vectors = pc.list_flatten(nouns[VECTOR_COLUMN]).to_numpy().reshape(len(nouns), -1) * 2.0
    doubled = nouns.set_column(
        nouns.schema.get_field_index(VECTOR_COLUMN),
        VECTOR_COLUMN,
        pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1]),
    )
    with pytest.raises(ValueError, match="L2-normalised"):
        replace_partition(db_path, "nouns", doubled)
    assert not (db_path / f"{TABLE_NAME}.lance").exists()  # nothing was written


def test_partitions_written_concurrently_both_land(indexed, tmp_path):
    db_path = tmp_path / "lance"
    replace_partition(db_path, "nouns", indexed.rows["nouns"].slice(0, 1))  # the table exists before the race
    errors = []

    def write(collection: str) -> None:
        try:
            replace_partition(db_path, collection, indexed.rows[collection])
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(name,)) for name in ("nouns", "cryptopunks")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    collections = [row["collection"] for row in table_rows(db_path)]
    assert (collections.count("nouns"), collections.count("cryptopunks")) == (64, 16)


def test_collection_and_trait_filters(indexed):
    search, run = indexed.search, indexed.run
    only_punks = run(search.text("a Noun with a cone head", k=100, collection="cryptopunks"))
    assert len(only_punks.hits) == 16 and {hit.collection for hit in only_punks.hits} == {"cryptopunks"}

    female_2 = [e.token_id for e in indexed.punks if {"trait_type": "Type", "value": "Female 2"} in _traits(e)]
    assert 0 < len(female_2) < 16
    found = run(search.text("anything", k=100, traits=["type = female 2"]))  # case and spaces do not matter
    assert sorted(hit.token_id for hit in found.hits) == sorted(female_2)
    assert all(any(tag["value"] == "Female 2" for tag in hit.tags) for hit in found.hits)

    noun = indexed.nouns[0]
    head, glasses = (next(tag for tag in noun.caption.tags if tag["trait_type"] == t) for t in ("head", "glasses"))
    both = run(search.text("x", k=100, traits=[f"head={head['value']}", f"glasses={glasses['value']}"]))
    assert noun.key in keys(both)
    for hit in both.hits:
        pairs = {(tag["trait_type"], tag["value"]) for tag in hit.tags}
        assert {("head", head["value"]), ("glasses", glasses["value"])} <= pairs

    # Filter values are data, never SQL.
    assert run(search.text("x", collection="nouns' OR '1'='1")).hits == []
    assert run(search.text("x", traits=["Type=x' OR '1'='1"])).hits == []
    with pytest.raises(SearchError, match="TYPE=VALUE"):
        run(search.text("x", traits=["Female 2"]))


def _traits(example: TrainingExample) -> list[dict[str, str]]:
    return [{"trait_type": tag["trait_type"], "value": tag["value"]} for tag in example.caption.tags]


def test_hybrid_puts_the_exact_caption_first(indexed):
    for example in [*indexed.nouns[:4], *indexed.punks[:4]]:
        results = indexed.run(indexed.search.text(example.caption.caption, k=10, hybrid=True))
        assert keys(results)[0] == example.key, (example.caption.caption, keys(results))
        assert results.mode == "hybrid"
    by_name = indexed.run(indexed.search.text("cryptopunk #7", k=5, hybrid=True))
    assert keys(by_name)[0] == ("cryptopunks", "7")
    # Word matches count in hybrid search only: the punks' captions share words the query has.
    words = indexed.run(indexed.search.text("Blonde Bob Earring", k=10, hybrid=True))
    assert any(hit.collection == "cryptopunks" and "Blonde Bob" in hit.caption for hit in words.hits[:3])


def test_reciprocal_rank_fusion_adds_one_over_k_plus_rank():
    a, b, c = ("x", "a"), ("x", "b"), ("x", "c")
    fused = reciprocal_rank_fusion([[a, b, c], [c, a]], k=60)
    assert fused == pytest.approx({a: 1 / 61 + 1 / 62, b: 1 / 62, c: 1 / 63 + 1 / 61})


def test_similar_to_token_and_to_image(indexed):
    search, run = indexed.search, indexed.run
    similar = run(search.similar_to_token("nouns", "5", k=10))
    assert ("nouns", "5") not in keys(similar) and len(similar.hits) == 10
    scores = [hit.score for hit in similar.hits]
    assert scores == sorted(scores, reverse=True)
    only_punks = run(search.similar_to_token("nouns", "5", k=5, in_collection="cryptopunks"))
    assert {hit.collection for hit in only_punks.hits} == {"cryptopunks"}

    image = Path(indexed.nouns[5].image_path)
    from_file = run(search.similar_to_image(image, k=3))
    from_bytes = run(search.similar_to_image(image.read_bytes(), k=3))
    assert keys(from_file)[0] == ("nouns", "5") and from_file.hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert keys(from_bytes) == keys(from_file)

    with pytest.raises(UnknownToken, match="nouns/99999 is not in the index"):
        run(search.similar_to_token("nouns", "99999"))
    with pytest.raises(SearchError, match="not a readable image"):
        run(search.similar_to_image(b"not an image"))


def test_bad_queries_get_clear_messages(indexed):
    search, run = indexed.search, indexed.run
    for empty in ("", "   \n\t"):
        with pytest.raises(SearchError, match="empty query"):
            run(search.text(empty))
    for k in (0, 101):
        with pytest.raises(SearchError, match="k must be between 1 and 100"):
            run(search.text("cone", k=k))
    long_query = " ".join(example.caption.caption for example in indexed.nouns[:4])
    results = run(search.text(long_query, k=3))
    assert len(results.hits) == 3
    assert len(results.notices) == 1 and "first 77" in results.notices[0]
    assert run(search.text("cone head", k=3)).notices == []


def test_missing_index_names_the_asset_to_run(tmp_path, capsys):
    with pytest.raises(IndexMissing, match="materialize the `nft_index` asset.*make demo"):
        asyncio.run(NftSearch.open(tmp_path))
    with pytest.raises(IndexMissing, match="nft_index"):
        ensure_indexes(lance_path(tmp_path))
    with pytest.raises(SystemExit) as exit_status:
        run_cli(["search", "blonde bob", "--data-dir", str(tmp_path)])
    assert exit_status.value.code == 2
    assert "nft_index" in capsys.readouterr().err


def test_search_command_prints_a_table(indexed, capsys):
    run_cli(["search", "--similar-to", "nouns/5", "-k", "3", "--data-dir", str(indexed.data_dir)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "score", "collection", "token_id", "name", "caption"]
    assert [line.split()[0] for line in lines[2:5]] == ["1", "2", "3"]
    assert lines[-1].startswith("3 results in")

    run_cli(["search", "anything", "--trait", "Type=Female", "2", "-k", "50", "--data-dir", str(indexed.data_dir)])
    rows = [line for line in capsys.readouterr().out.splitlines() if "CryptoPunk #" in line]
    assert rows and all("Female 2" in row for row in rows)


def test_an_open_search_follows_the_table_to_its_newest_version(indexed, tmp_path, caplog):
    """A re-indexed partition, then a new model: the open search answers from the version it has
    (consistently: keys and shown columns of one version) until it refreshes, then from the newest."""
    db_path = lance_path(tmp_path)
    nouns = indexed.rows["nouns"]
    replace_partition(db_path, "nouns", nouns.slice(0, 10))
    renamed = nouns.set_column(
        nouns.schema.get_field_index("name"), "name", pa.array([f"Renamed {i}" for i in range(len(nouns))])
    )
    late_token = nouns["token_id"][40].as_py()
    other_model = shutil.copytree(indexed.model.model_dir, tmp_path / "other_model")  # no run.json: a new run id
    other_run_id = EmbeddingModel.load(other_model).run_id
    assert other_run_id != indexed.model.run_id
    retrained = renamed.set_column(
        renamed.schema.get_field_index("model_run_id"), "model_run_id", pa.array([other_run_id] * len(nouns))
    ).set_column(renamed.schema.get_field_index("model_dir"), "model_dir", pa.array([str(other_model)] * len(nouns)))
    query = indexed.nouns[3].caption.caption

    async def scenario():
        search = await NftSearch.open(tmp_path, refresh_interval_s=3600.0)
        before = await search.text(query, k=20)
        assert len(before.hits) == 10
        replace_partition(db_path, "nouns", renamed)
        stale = await search.text(query, k=20)  # not refreshed yet: the old version, whole
        assert keys(stale) == keys(before) and [hit.name for hit in stale.hits] == [hit.name for hit in before.hits]
        assert await search.token("nouns", late_token) is None
        assert await search.refresh() is True
        fresh = await search.text(query, k=20)
        assert len(fresh.hits) == 20 and all(hit.name.startswith("Renamed ") for hit in fresh.hits)
        assert (await search.token("nouns", late_token)).name == "Renamed 40"
        assert await search.refresh() is False and search.model.run_id == indexed.model.run_id

        replace_partition(db_path, "nouns", retrained)  # embeddings of another model: it is loaded too
        search.refresh_interval_s = 0.0  # from now on a query starts a refresh when none is running
        during = await search.text(query, k=5)  # answered from the open version while the new one loads
        assert keys(during) == keys(fresh)[:5]
        await until(lambda: search.model.run_id == other_run_id)
        assert search.model.model_dir == other_model.resolve()
        after_training = await search.text(query, k=5)
        assert keys(after_training)[0] == keys(fresh)[0]  # same weights, so the same best match

        lost = retrained.set_column(
            retrained.schema.get_field_index("model_run_id"), "model_run_id", pa.array(["gone"] * len(nouns))
        ).set_column(retrained.schema.get_field_index("model_dir"), "model_dir", pa.array(["/nowhere"] * len(nouns)))
        replace_partition(db_path, "nouns", lost)  # a version whose model cannot be found: keep answering
        answers = []
        await until(lambda: refresh_failed(caplog), poke=lambda: search.text(query, k=5), collect=answers)
        assert all(keys(kept) == keys(after_training) for kept in answers) and search.model.run_id == other_run_id
        assert await search.refresh() is False  # the version that failed is not tried again

    with caplog.at_level(logging.WARNING, logger="nft_pipeline.search"):
        asyncio.run(scenario())
    failures = [record.message for record in caplog.records if "stays on index version" in record.message]
    assert len(failures) == 1 and "gone" in failures[0]


def refresh_failed(caplog) -> bool:
    return any("stays on index version" in record.message for record in caplog.records)


async def until(condition, poke=None, collect=None, timeout_s: float = 60.0) -> None:
    """Wait (querying with `poke` meanwhile, results into `collect`) until `condition()` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "a background refresh did not happen in time"
        if poke is not None:
            result = await poke()
            if collect is not None:
                collect.append(result)
        await asyncio.sleep(0.02)


def test_hit_columns_fetched_with_each_query_equal_those_held_in_memory(indexed):
    """Past `details_max_rows` the shown columns come from LanceDB with each query: same answers."""
    stored = indexed.run(NftSearch.open(indexed.data_dir, details_max_rows=0))
    assert stored.current.details is None
    assert isinstance(indexed.search.current.details, HitDetails) and len(indexed.search.current.details) == 80
    query = indexed.nouns[7].caption.caption
    for search_call in (
        lambda search: search.text(query, k=12),
        lambda search: search.text(query, k=12, hybrid=True),
        lambda search: search.similar_to_token("nouns", indexed.nouns[7].token_id, k=12),
        lambda search: search.text("a punk", k=5, collection="cryptopunks"),
    ):
        in_memory, per_query = indexed.run(search_call(indexed.search)), indexed.run(search_call(stored))
        assert [hit.to_json() for hit in per_query.hits] == [hit.to_json() for hit in in_memory.hits]
        assert len(per_query.hits) in (5, 12)
    assert indexed.run(stored.token("nouns", "3")) == indexed.run(indexed.search.token("nouns", "3"))
    assert indexed.run(stored.token("nouns", "no such token")) is None


def test_indexes_follow_the_table_size(indexed, tmp_path):
    db_path = lance_path(tmp_path)
    for collection, rows in indexed.rows.items():
        replace_partition(db_path, collection, rows)
    small = ensure_indexes(db_path)  # 80 rows of 32-d: exact search is fast enough, no vector index
    assert set(small.built) == {"caption", "collection", "traits"} and not small.vector_index
    assert ensure_indexes(db_path).built == ()  # nothing to build twice

    outgrown = replace(AnnSettings(), max_flat_floats=0, min_index_rows=0)  # as if exact search had become slow
    with_ann = ensure_indexes(db_path, outgrown)
    assert with_ann.built == (VECTOR_COLUMN,) and with_ann.vector_index

    # New rows: folded into the caption and scalar indexes, the vector index rebuilt over them.
    replace_partition(db_path, "nouns", indexed.rows["nouns"].slice(0, 60))
    replace_partition(db_path, "nouns", indexed.rows["nouns"])
    assert ensure_indexes(db_path, outgrown).built == (VECTOR_COLUMN,)
    table = lancedb.connect(db_path).open_table(TABLE_NAME)
    assert {index.columns[0]: index.num_unindexed_rows for index in table.list_indices()} == {
        column: 0 for column in ("caption", "collection", "traits", VECTOR_COLUMN)
    }

    async def nearest_to_noun_5():
        search = await NftSearch.open(tmp_path, settings=outgrown)
        return await search.similar_to_image(Path(indexed.nouns[5].image_path), k=3)

    results = asyncio.run(nearest_to_noun_5())
    assert keys(results)[0] == ("nouns", "5")
    assert results.hits[0].score == pytest.approx(1.0, abs=1e-5)  # PQ candidates re-ranked with exact vectors
