"""Search latency and recall: vector indexes against exact search, on synthetic and real embeddings.

Printed as markdown tables (docs/search.md holds the results and the command):

1. exact (flat) search p50 by table size, at the tiny preset's 128 dimensions and CLIP's 512: where
   it crosses the 10 ms budget is where `AnnSettings.needs_index` has the vector index built;
2. the vector index on 100,000 (or `--synthetic-rows`, up to 1,000,000) synthetic 512-d vectors,
   IVF-SQ (the default) and IVF-PQ, each at a few IVF partition counts: build time, index size, then
   p50/p99 latency and recall@10 against exact search for a few (nprobes, refine_factor), the default
   marked; faiss (HNSW and IVF, in memory) on the same vectors and queries as the peer baseline; and
   what the in-memory `HitDetails` cost (load time, memory, latency against fetching the columns
   per query). The vectors are clustered like image embeddings: 1,000 Gaussian clusters
   (collections) around one direction all of them share (CLIP embeddings share one), fixed seed;
   queries are fresh draws from the clusters. They are drawn, written (one partition per 100,000
   rows) and compared with the queries chunk by chunk, so a million rows need about 2 GB for the
   vectors and a little more for one faiss index at a time;
3. the same on real embeddings: the tiny preset trained on the bundled CryptoPunks and Nouns, every
   token indexed, queried with caption embeddings;
4. end to end, `NftSearch.text` (tokenise + text encoder + search) on that real index.

Latency is what the search API does for a vector query: the async LanceDB call (keys and distances)
and the lookup of the columns a hit shows in `HitDetails`.

    python benchmarks/bench_index.py                                # everything (about 1 h on 2 shared cores)
    python benchmarks/bench_index.py --synthetic-rows 20000 --punks 1000 --nouns 200 --epochs 1  # a quick look
    python benchmarks/bench_index.py --skip-synthetic --work-dir /tmp/bench-index --screenshot docs/img/search_page.png
    nice -n 10 python benchmarks/bench_index.py --skip-flat --skip-real --synthetic-rows 1000000  # a million vectors (docs/scale.md)
    python benchmarks/bench_index.py --skip-flat --skip-real --synthetic-rows 1000000 --peers-only --work-dir /tmp/1m  # faiss + the default

Training the demo model is most of the hour. `--work-dir` keeps the sample images, the trained
model and the index: a second run reuses the finished training run (train_clip resumes it). `--screenshot` serves the real index and saves the
search page for a query as headless Chromium renders it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import faiss
import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from aiohttp.test_utils import TestServer

from nft_pipeline.embedding import EmbeddingModel
from nft_pipeline.index import (
    INDEX_INPUT,
    MODELS_DIR,
    TABLE_NAME,
    VECTOR_COLUMN,
    AnnSettings,
    embedding_rows,
    embeddings_schema,
    ensure_indexes,
    index_inputs_from_examples,
    input_digests,
    lance_path,
    partition_row_count,
    replace_partition,
)
from nft_pipeline.search import HitDetails, NftSearch, nearest_hits
from nft_pipeline.train import TrainConfig, TrainingExample, train_clip
from nft_pipeline.train.sample_data import nouns_inputs, punks_inputs
from nft_pipeline.web.app import IMAGES_DIR, create_app

BUDGET_MS = 10.0
K = 10
QUERIES = 200
FLAT_SIZES = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000)
# (nprobes, refine_factor) tried for each kind of index.
PROBES = {"ivf_sq": ((5, 2), (10, 1), (10, 2), (20, 2), (40, 2)), "ivf_pq": ((10, 10), (20, 10), (20, 20), (40, 20))}
# IVF partition counts tried, as multiples of the default sqrt(rows): fewer, larger partitions scan
# more vectors per probe but lose fewer neighbours to partition borders. IVF-PQ (minutes of k-means
# per build) only at the default.
PARTITION_SCALES = {"ivf_sq": (0.25, 1.0), "ivf_pq": (1.0,)}
CHUNK_ROWS = 100_000  # synthetic rows drawn, written (one partition each) and compared at a time
EXACT_QUERY_ROWS = 20_000_000  # exact search takes seconds a query at a million rows: queries x rows capped
FAISS_HNSW_M = 16  # links per node; 32 doubles a build that already takes minutes at a million rows
# Up to 1,024: at a million rows a query's cluster holds ~1,000 nearly equidistant vectors, which the
# graph search has to visit to find the top 10 (docs/scale.md).
FAISS_HNSW_EF_SEARCH = (16, 32, 64, 128, 256, 512, 1024)
# faiss's default 40, and 200: at a million rows the graph built with 40 caps recall whatever efSearch.
FAISS_HNSW_EF_CONSTRUCTION = (40, 200)
FAISS_IVF_NPROBE = (10, 20, 40)
SCREENSHOT_QUERY = "female with blonde bob and earring"
# The tiny preset from scratch (not fine-tuning), hence a higher learning rate than the default; data
# loaded in-process, as forking DataLoader workers from a process running LanceDB can deadlock them.
DEMO_MODEL = TrainConfig(split="by_token", split_ratios=(0.95, 0.0, 0.05), learning_rate=1e-3, num_workers=0)


def unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Clusters:
    """Gaussian clusters on the unit sphere around centres that share one direction."""

    centres: np.ndarray
    spread: float = 0.75  # noise norm relative to the unit centre: cosine to the centre about 0.8

    @classmethod
    def random(cls, count: int, dim: int, rng: np.random.Generator) -> Clusters:
        shared = unit(rng.normal(size=dim))
        return cls(unit(0.6 * shared + 0.8 * unit(rng.normal(size=(count, dim)))))

    def draw(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`count` unit vectors and the cluster each was drawn from."""
        membership = rng.integers(0, len(self.centres), count)
        dim = self.centres.shape[1]
        noise = rng.normal(scale=self.spread / np.sqrt(dim), size=(count, dim))
        return unit(self.centres[membership] + noise), membership


@dataclass(frozen=True)
class PartitionCount(AnnSettings):
    """AnnSettings with a fixed number of IVF partitions, to measure counts other than sqrt(rows)."""

    partitions: int = 1

    def num_partitions(self, rows: int) -> int:
        return self.partitions


def synthetic_rows(
    vectors: np.ndarray, membership: np.ndarray, collection: str = "synthetic", first_id: int = 0
) -> pa.Table:
    """Index rows around `vectors`, one synthetic collection, captions naming each row's cluster."""
    count, dim = vectors.shape
    inputs = pa.table(
        {
            "collection": [collection] * count,
            "token_id": [str(first_id + i) for i in range(count)],
            "name": [f"Token {i}" for i in range(count)],
            "caption": [f"Token {i}: a thing of kind {c}." for i, c in enumerate(membership)],
            "tags": [[{"trait_type": "kind", "value": str(c), "phrase": f"kind {c}"}] for c in membership],
            "png_path": [f"synthetic/{i}.png" for i in range(count)],
            "png_sha256": [None] * count,
        },
        schema=INDEX_INPUT,
    )
    return pa.Table.from_arrays(
        [
            *inputs.columns,
            pa.array([[f"kind={c}"] for c in membership], pa.list_(pa.string())),
            pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
            pa.array(["synthetic"] * count),
            pa.array(["-"] * count),
            pa.array(input_digests(inputs)),
        ],
        schema=embeddings_schema(dim),
    )


def p50_p99(milliseconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(milliseconds, 50)), float(np.percentile(milliseconds, 99))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def load_details(db_path: Path) -> HitDetails:
    return await HitDetails.load(await (await lancedb.connect_async(db_path)).open_table(TABLE_NAME))


async def probe(
    db_path: Path, queries: np.ndarray, settings: AnnSettings, details: HitDetails | None
) -> tuple[list[float], list[list[str]]]:
    """Milliseconds and "collection/token_id" keys of each query's top 10, after two warm-up queries;
    with `details` None each query fetches the shown columns (tables past `details_max_rows`)."""
    table = await (await lancedb.connect_async(db_path)).open_table(TABLE_NAME)
    for query in queries[:2]:
        await nearest_hits(table, details, query, K, settings)
    times, ids = [], []
    for query in queries:
        started = time.perf_counter()
        hits = await nearest_hits(table, details, query, K, settings)
        times.append((time.perf_counter() - started) * 1000.0)
        ids.append([f"{hit.collection}/{hit.token_id}" for hit in hits])
    return times, ids


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, keys: list[str]) -> list[set[str]]:
    """The keys of each query's exact top 10 (numpy, over every vector), compared a chunk of rows at a time."""
    scores, rows = [], []
    for start in range(0, len(vectors), CHUNK_ROWS):
        chunk = queries @ vectors[start : start + CHUNK_ROWS].T
        top = np.argpartition(-chunk, min(K, chunk.shape[1]) - 1, axis=1)[:, :K]
        scores.append(np.take_along_axis(chunk, top, 1))
        rows.append(top + start)
    scores, rows = np.concatenate(scores, axis=1), np.concatenate(rows, axis=1)
    best = np.take_along_axis(rows, np.argsort(-scores, axis=1)[:, :K], 1)
    return [{keys[i] for i in row} for row in best]


def recall_at_k(found: list[list[str]], exact: list[set[str]]) -> float:
    """Mean share of the exact top 10 that a search returned."""
    return float(np.mean([len(set(ids) & truth) / K for ids, truth in zip(found, exact, strict=True)]))


def flat_threshold(work: Path, rng: np.random.Generator) -> None:
    print(f"\n### Exact search p50 by table size (no vector index; budget {BUDGET_MS:.0f} ms)\n")
    print("| rows | 128-d p50 ms | 512-d p50 ms |")
    print("|---:|---:|---:|")
    for rows in FLAT_SIZES:
        cells = []
        for dim in (128, 512):
            clusters = Clusters.random(max(1, rows // 100), dim, rng)
            db_path = work / f"flat-{rows}-{dim}"
            replace_partition(db_path, "synthetic", synthetic_rows(*clusters.draw(rows, rng)))
            details = asyncio.run(load_details(db_path))
            times, _ = asyncio.run(probe(db_path, clusters.draw(100, rng)[0], AnnSettings(), details))
            cells.append(f"{p50_p99(times)[0]:.1f}")
            shutil.rmtree(db_path)
        print(f"| {rows:,} | {' | '.join(cells)} |")


def drop_vector_index(db_path: Path) -> None:
    table = lancedb.connect(db_path).open_table(TABLE_NAME)
    for index in table.list_indices():
        if index.columns == [VECTOR_COLUMN]:
            table.drop_index(index.name)


def vector_index_mb(db_path: Path, built_before: set[Path]) -> float:
    """Size on disk of the index directories written since `built_before` was listed."""
    new = set(index_dirs(db_path)) - built_before
    return sum(f.stat().st_size for d in new for f in d.rglob("*") if f.is_file()) / 1e6


def index_dirs(db_path: Path) -> list[Path]:
    return list((db_path / f"{TABLE_NAME}.lance" / "_indices").glob("*"))


TABLE_HEADER = (
    "| search | partitions | build s | index MB | nprobes / efSearch | refine_factor | p50 ms | p99 ms | recall@10 |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def lance_row(
    db_path: Path,
    queries: np.ndarray,
    details: HitDetails,
    exact: list[set[str]],
    settings: AnnSettings,
    partitions: int,
    build_seconds: float,
    size: float,
    default: bool,
) -> None:
    """Probe the table's vector index with `settings` and print its row of the table."""
    times, ids = asyncio.run(probe(db_path, queries, settings, details))
    p50, p99 = p50_p99(times)
    name = f"{settings.kind} **(default)**" if default else settings.kind
    print(
        f"| {name} | {partitions} | {build_seconds:.0f} | {size:.0f} | {settings.nprobes} | {settings.refine_factor} | "
        f"{p50:.1f} | {p99:.1f} | {recall_at_k(ids, exact):.3f} |",
        flush=True,
    )


def rebuild_vector_index(db_path: Path, settings: AnnSettings) -> tuple[float, float]:
    """Drop the vector index and build the one `settings` ask for: (build seconds, index MB on disk)."""
    drop_vector_index(db_path)
    before = set(index_dirs(db_path))
    started = time.perf_counter()
    ensure_indexes(db_path, settings)
    return time.perf_counter() - started, vector_index_mb(db_path, before)


@dataclass(frozen=True)
class VectorTable:
    """A LanceDB table written for the benchmark, its vectors in memory (for exact search and faiss),
    the query vectors and each row's key (`collection/token`)."""

    title: str
    db_path: Path
    vectors: np.ndarray
    queries: np.ndarray
    keys: list[str]


def ann_table(
    table: VectorTable,
    chosen: AnnSettings,
    peers: bool = False,
    kinds: Sequence[str] = tuple(PROBES),
    hnsw_ef_construction: Sequence[int] = FAISS_HNSW_EF_CONSTRUCTION,
) -> None:
    """Exact search, then each kind of vector index built at a few partition counts and probed with a
    few (nprobes, refine_factor); with `peers`, faiss indexes on the same vectors, then the cost of
    `HitDetails`."""
    title, db_path, vectors, queries, keys = table.title, table.db_path, table.vectors, table.queries, table.keys
    rows = len(vectors)
    exact = exact_neighbours(vectors, queries, keys)
    started = time.perf_counter()
    details = asyncio.run(load_details(db_path))
    details_seconds = time.perf_counter() - started
    drop_vector_index(db_path)
    exact_count = max(12, min(len(queries), EXACT_QUERY_ROWS // rows))  # seconds a query at a million rows
    flat_times, flat_ids = asyncio.run(probe(db_path, queries[:exact_count], chosen, details))
    started = time.perf_counter()
    ensure_indexes(db_path, replace(chosen, max_flat_floats=10**15))  # the caption and scalar indexes only
    other_seconds = time.perf_counter() - started
    print(f"\n### {title}\n")
    print(
        f"{len(queries)} queries ({exact_count} for exact search), k = {K}, returning the columns a hit shows; "
        f"default {chosen.num_partitions(rows)} IVF partitions (sqrt(rows)); caption full-text + scalar indexes "
        f"built in {other_seconds:.1f} s. Index MB: LanceDB's index files on disk, faiss's serialized index "
        "(held in memory).\n"
    )
    print(TABLE_HEADER)
    p50, p99 = p50_p99(flat_times)
    recall = recall_at_k(flat_ids, exact[:exact_count])
    print(f"| exact (no index) | - | - | - | - | - | {p50:.1f} | {p99:.1f} | {recall:.3f} |", flush=True)
    for kind in kinds:
        probes = PROBES[kind]
        for scale in PARTITION_SCALES[kind]:
            partitions = max(1, round(scale * chosen.num_partitions(rows)))
            build = PartitionCount(**vars(chosen), partitions=partitions)
            build_seconds, size = rebuild_vector_index(db_path, replace(build, kind=kind, max_flat_floats=0))
            for nprobes, refine_factor in probes:
                settings = replace(chosen, kind=kind, nprobes=nprobes, refine_factor=refine_factor)
                default = settings == chosen and partitions == chosen.num_partitions(rows)
                lance_row(db_path, queries, details, exact, settings, partitions, build_seconds, size, default)
    rebuild_vector_index(db_path, chosen)  # leave the default index for the end-to-end measurement
    if peers:
        fetched_times, _ = asyncio.run(probe(db_path, queries, chosen, None))
        in_memory_times, _ = asyncio.run(probe(db_path, queries, chosen, details))
        print(
            f"\n`HitDetails` of {len(details):,} rows: read in {details_seconds:.1f} s, {details_mb(db_path):.0f} MB. "
            f"Default index, p50 {p50_p99(in_memory_times)[0]:.1f} ms (p99 {p50_p99(in_memory_times)[1]:.1f}) with them "
            f"in memory, {p50_p99(fetched_times)[0]:.1f} ms (p99 {p50_p99(fetched_times)[1]:.1f}) fetching the shown "
            "columns per query.\n",
            flush=True,
        )
        faiss_peers(vectors, queries, keys, exact, chosen.num_partitions(rows), hnsw_ef_construction)
        print(f"\nPeak RSS of this process: {peak_rss_mb():,.0f} MB.")


def peer_table(
    table: VectorTable, chosen: AnnSettings, hnsw_ef_construction: Sequence[int] = FAISS_HNSW_EF_CONSTRUCTION
) -> None:
    """The faiss peers against the exact reference, then LanceDB's default index rebuilt and probed
    last: no other LanceDB index is built or dropped, so a --work-dir run on a written table measures
    the peers in minutes (the default build, the slowest step, comes after their rows are printed)."""
    title, db_path, vectors, queries, keys = table.title, table.db_path, table.vectors, table.queries, table.keys
    rows = len(vectors)
    exact = exact_neighbours(vectors, queries, keys)
    print(f"\n### {title}: faiss peers and the LanceDB default\n")
    print(
        f"{len(queries)} queries, k = {K}, recall against exact search (numpy over every vector). Index MB: "
        "LanceDB's index files on disk, faiss's serialized index (held in memory).\n"
    )
    print(TABLE_HEADER, flush=True)
    faiss_peers(vectors, queries, keys, exact, chosen.num_partitions(rows), hnsw_ef_construction)
    details = asyncio.run(load_details(db_path))
    build_seconds, size = rebuild_vector_index(db_path, chosen)
    lance_row(db_path, queries, details, exact, chosen, chosen.num_partitions(rows), build_seconds, size, True)
    print(f"\nPeak RSS of this process: {peak_rss_mb():,.0f} MB.")


def details_mb(db_path: Path) -> float:
    """Memory a `HitDetails` of the table holds: its Arrow buffers plus the Python key map (traced)."""
    gc.collect()
    arrow_before = pa.total_allocated_bytes()
    tracemalloc.start()
    details = asyncio.run(load_details(db_path))
    python_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    held = pa.total_allocated_bytes() - arrow_before + python_bytes
    del details
    return held / 1e6


def faiss_peers(
    vectors: np.ndarray,
    queries: np.ndarray,
    keys: list[str],
    exact: list[set[str]],
    partitions: int,
    hnsw_ef_construction: Sequence[int] = FAISS_HNSW_EF_CONSTRUCTION,
) -> None:
    """faiss on the same vectors and queries: HNSW and IVF (flat and 8-bit scalars, sharing one trained
    quantizer), built with every core and queried one query at a time on one thread, like the API.
    Inner product on unit vectors is the cosine similarity LanceDB ranks by."""
    dim = vectors.shape[1]

    def hnsw(ef_construction: int) -> faiss.IndexHNSWFlat:
        index = faiss.IndexHNSWFlat(dim, FAISS_HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        return index

    quantizer = faiss.IndexFlatIP(dim)
    ivf_flat = lambda: faiss.IndexIVFFlat(quantizer, dim, partitions, faiss.METRIC_INNER_PRODUCT)  # noqa: E731
    ivf_sq8 = lambda: faiss.IndexIVFScalarQuantizer(  # noqa: E731
        quantizer, dim, partitions, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    peers = (  # HNSW last: at a million rows its build takes longest
        ("faiss IVF-Flat", partitions, ivf_flat, "nprobe", FAISS_IVF_NPROBE),
        ("faiss IVF-SQ8 (quantizer of IVF-Flat)", partitions, ivf_sq8, "nprobe", FAISS_IVF_NPROBE),
        *(
            (f"faiss HNSW (M={FAISS_HNSW_M}, efConstruction {ef})", "-", partial(hnsw, ef), "efSearch", FAISS_HNSW_EF_SEARCH)
            for ef in hnsw_ef_construction
        ),
    )
    for name, shown_partitions, make, knob, values in peers:
        started = time.perf_counter()
        index = make()
        index.train(vectors)  # k-means samples 256 vectors a partition; the IVF-SQ8 reuses the trained quantizer
        for start in range(0, len(vectors), CHUNK_ROWS):
            index.add(vectors[start : start + CHUNK_ROWS])
            added = min(start + CHUNK_ROWS, len(vectors))  # progress, to extrapolate a build cut short
            print(f"{name}: {added:,} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        build_seconds = time.perf_counter() - started
        # Serialized: what the index holds (vectors or codes, lists or graph links, centroids); the
        # process's resident growth is blurred by the last index's freed pages.
        size = faiss.serialize_index(index).nbytes / 1e6
        search_params = index.hnsw if knob == "efSearch" else index
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        for value in values:
            setattr(search_params, knob, value)
            times, found = faiss_probe(index, queries, keys)
            p50, p99 = p50_p99(times)
            print(
                f"| {name} | {shown_partitions} | {build_seconds:.0f} | {size:.0f} | {value} | - | {p50:.2f} | "
                f"{p99:.2f} | {recall_at_k(found, exact):.3f} |",
                flush=True,
            )
        faiss.omp_set_num_threads(threads)
        del index, search_params


def faiss_probe(index: faiss.Index, queries: np.ndarray, keys: list[str]) -> tuple[list[float], list[list[str]]]:
    """Milliseconds and keys of each query's top 10, one query a call, after two warm-up queries."""
    for query in queries[:2]:
        index.search(query[None], K)
    times, found = [], []
    for query in queries:
        started = time.perf_counter()
        _, rows = index.search(query[None], K)
        times.append((time.perf_counter() - started) * 1000.0)
        found.append([keys[row] for row in rows[0] if row >= 0])
    return times, found


def written(db_path: Path, collection: str, rows: int) -> bool:
    """Whether an earlier run with the same seed wrote this partition in full (same draws, same rows)."""
    return partition_row_count(db_path, collection) == rows


def synthetic(
    work: Path,
    rows: int,
    rng: np.random.Generator,
    settings: AnnSettings,
    peers: bool,
    kinds: Sequence[str],
    peers_only: bool = False,
    hnsw_ef_construction: Sequence[int] = FAISS_HNSW_EF_CONSTRUCTION,
) -> None:
    """`rows` clustered vectors written in partitions of CHUNK_ROWS (one if that is all), then `ann_table`."""
    clusters = Clusters.random(1_000, 512, rng)
    db_path = work / "synthetic"
    if rows <= CHUNK_ROWS:
        shutil.rmtree(db_path, ignore_errors=True)
    vectors = np.empty((rows, 512), np.float32)
    keys: list[str] = []
    started = time.perf_counter()
    for start in range(0, rows, CHUNK_ROWS):
        count = min(CHUNK_ROWS, rows - start)
        collection = "synthetic" if rows <= CHUNK_ROWS else f"synthetic-{start // CHUNK_ROWS}"
        vectors[start : start + count], membership = clusters.draw(count, rng)
        if rows <= CHUNK_ROWS or not written(db_path, collection, count):  # a --work-dir run resumes
            replace_partition(db_path, collection, synthetic_rows(vectors[start : start + count], membership, collection, start))
        keys += [f"{collection}/{start + i}" for i in range(count)]
    print(f"\n{rows:,} synthetic vectors drawn and written in {time.perf_counter() - started:.0f} s", flush=True)
    title = f"{rows:,} synthetic 512-d vectors (1,000 clusters)"
    queries = clusters.draw(QUERIES, rng)[0]
    table = VectorTable(title, db_path, vectors, queries, keys)
    if peers_only:
        peer_table(table, settings, hnsw_ef_construction)
    else:
        ann_table(table, settings, peers, kinds, hnsw_ef_construction)


def trained_model(work: Path, punks: int, nouns: int, epochs: int) -> tuple[Path, list[TrainingExample]]:
    """The demo model (trained once per work dir) and its examples, images under <work>/data/images."""
    images = work / "data" / IMAGES_DIR
    punk_examples, punk_components = punks_inputs(range(punks), images)
    noun_examples, noun_components = nouns_inputs(range(nouns), images)
    examples = punk_examples + noun_examples
    config = replace(DEMO_MODEL, epochs=epochs)
    started = time.perf_counter()
    run = train_clip(examples, {**punk_components, **noun_components}, config, work / "data" / MODELS_DIR / "demo")
    test = run.fine_tuned["global"]["text_to_image"]
    print(
        f"\nDemo model: tiny preset, {run.epochs} epochs on {len(run.split.train):,} pairs ({time.perf_counter() - started:.0f} s "
        f"this call); held-out text-to-image R@1 {test['R@1']:.2f}, R@10 {test['R@10']:.2f} over {len(run.split.test)} tokens"
    )
    return run.model_dir, examples


def real(work: Path, model_dir: Path, examples: list[TrainingExample], settings: AnnSettings) -> Path:
    data_dir = work / "data"
    model = EmbeddingModel.load(model_dir)
    inputs = index_inputs_from_examples(examples)
    started = time.perf_counter()
    vectors, keys = [], []
    for collection in sorted(set(inputs["collection"].to_pylist())):
        rows = embedding_rows(model, inputs.filter(pc.equal(inputs["collection"], collection)))
        replace_partition(lance_path(data_dir), collection, rows)
        vectors.append(rows["vector"].combine_chunks().flatten().to_numpy().reshape(rows.num_rows, -1))
        keys += [f"{collection}/{token}" for token in rows["token_id"].to_pylist()]
    seconds = time.perf_counter() - started
    print(f"\nEmbedded and wrote {len(keys):,} sample tokens in {seconds:.0f} s ({len(keys) / seconds:.0f}/s)")
    captions = [example.caption.caption for example in examples]
    picks = np.random.default_rng(2).choice(len(captions), QUERIES, replace=False)
    queries = model.embed_texts([captions[i] for i in picks])
    title = f"{len(keys):,} real {model.dim}-d embeddings (tiny preset on the sample punks and nouns), caption queries"
    ann_table(VectorTable(title, lance_path(data_dir), np.concatenate(vectors), queries, keys), settings)
    return data_dir


async def end_to_end(data_dir: Path, examples: list[TrainingExample]) -> None:
    search = await NftSearch.open(data_dir)
    rng = np.random.default_rng(3)
    captions = [examples[i].caption.caption for i in rng.choice(len(examples), 50, replace=False)]
    free_text = ["female with blonde bob and earring", "zombie with a mohawk", "noun with a pizza head", "red glasses"]
    print("\n### End to end: `NftSearch.text` (tokenise + text encoder + search), k = 10\n")
    print("| query | mode | p50 total ms | p50 encode ms | p50 search ms | p99 total ms |")
    print("|---|---|---:|---:|---:|---:|")
    for label, texts in (("free text (4 queries x 10)", free_text * 10), ("full captions (50)", captions)):
        for hybrid in (False, True):
            timings = [(await search.text(text, hybrid=hybrid)).timings_ms for text in texts]
            total = [t["total"] for t in timings]
            encode = np.median([t["encode"] for t in timings])
            lookup = np.median([t["search"] for t in timings])
            p50, p99 = p50_p99(total)
            mode = "hybrid" if hybrid else "vector"
            print(f"| {label} | {mode} | {p50:.1f} | {encode:.1f} | {lookup:.1f} | {p99:.1f} |")


async def screenshot(data_dir: Path, path: Path) -> None:
    """Serve the index and let headless Chromium render the page for SCREENSHOT_QUERY into `path`."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("--screenshot needs Chromium (apt-get install chromium)")
    server = TestServer(create_app(await NftSearch.open(data_dir), data_dir / IMAGES_DIR), host="127.0.0.1")
    await server.start_server()
    url = f"{server.make_url('/')}#{urllib.parse.urlencode({'q': SCREENSHOT_QUERY})}"
    try:
        with tempfile.TemporaryDirectory() as profile:
            command = [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--hide-scrollbars", "--window-size=1280,860",
                "--virtual-time-budget=10000", f"--screenshot={path.resolve()}", url,
            ]  # fmt: skip
            process = await asyncio.create_subprocess_exec(*command, stderr=subprocess.DEVNULL)
            await process.wait()
    finally:
        await server.close()
    print(f"\nScreenshot of {url} saved to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic-rows", type=int, default=100_000)
    parser.add_argument("--skip-synthetic", action="store_true", help="only the real sample collections")
    parser.add_argument("--skip-real", action="store_true", help="only the synthetic tables (no model trained)")
    parser.add_argument("--skip-flat", action="store_true", help="leave out the exact search table by size")
    parser.add_argument("--skip-faiss", action="store_true", help="leave out the faiss peers and the HitDetails cost")
    parser.add_argument(
        "--hnsw-ef-construction", nargs="+", type=int, default=list(FAISS_HNSW_EF_CONSTRUCTION),
        help="faiss HNSW builds to measure, by efConstruction",
    )  # fmt: skip
    parser.add_argument("--kinds", nargs="+", default=list(PROBES), choices=list(PROBES), help="LanceDB index kinds")
    parser.add_argument(
        "--peers-only",
        action="store_true",
        help="synthetic table: only the faiss peers and the LanceDB default index (rebuilt last), no other LanceDB index",
    )
    parser.add_argument("--punks", type=int, default=10_000)
    parser.add_argument("--nouns", type=int, default=1_000)
    parser.add_argument("--epochs", type=int, default=6, help="training epochs of the demo model")
    parser.add_argument("--work-dir", type=Path, help="keep images, model and index here (default: a temporary dir)")
    parser.add_argument("--screenshot", type=Path, help="save the search page rendered by headless Chromium here")
    arguments = parser.parse_args()
    settings = AnnSettings()
    torch.set_num_threads(1)  # two shared cores: one thread per process is the fastest steady state here
    with tempfile.TemporaryDirectory() as scratch:
        work = arguments.work_dir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        if not arguments.skip_synthetic:
            if not arguments.skip_flat:
                flat_threshold(work, rng)
            peers = not arguments.skip_faiss
            synthetic(
                work, arguments.synthetic_rows, rng, settings, peers, arguments.kinds, arguments.peers_only,
                arguments.hnsw_ef_construction,
            )  # fmt: skip
        if arguments.skip_real:
            return
        model_dir, examples = trained_model(work, arguments.punks, arguments.nouns, arguments.epochs)
        data_dir = real(work, model_dir, examples, settings)
        asyncio.run(end_to_end(data_dir, examples))
        if arguments.screenshot:
            asyncio.run(screenshot(data_dir, arguments.screenshot))


if __name__ == "__main__":
    main()
