"""When to rebuild the vector index: folding new rows in with `optimize()` against a full rebuild.

`ensure_indexes` adds the rows of a partition write to the existing IVF index incrementally
(LanceDB's `optimize()`: the new rows are assigned to the existing centroids, nothing retrained)
and rebuilds the index only once the unindexed share passes `AnnSettings.max_unindexed_share`.
This benchmark measures where that threshold belongs: a table of `--rows` clustered vectors
(benchmarks/bench_index.py's synthetic embeddings) is indexed, then a share of new rows from
clusters the index never saw (new collections: the hard case for stale centroids) is written, and
for each share it prints p50 latency and recall@10 against exact search: before any index update
(the new rows scanned exactly), after `optimize()`, and after a rebuild, with the time of each.

Then the daily case: `--days` times, 1% new rows from the clusters the index knows, folded in
with `optimize()`; each day prints the index's parts (`num_indices`: every fold after the first
adds a delta part, and a query searches every part), p50 and recall@10, and finally a rebuild.

    python benchmarks/bench_index_update.py                      # 50,000 x 512-d, shares 2/10/30/60 %
    python benchmarks/bench_index_update.py --rows 20000 --dim 128
    python benchmarks/bench_index_update.py --rows 20000 --skip-shares --days 12
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa

from benchmarks.bench_index import Clusters, p50_p99, probe, recall_at_k, synthetic_rows
from nft_pipeline.index import TABLE_NAME, VECTOR_COLUMN, AnnSettings, replace_partition

SHARES = (0.02, 0.1, 0.3, 0.6)
QUERIES = 200


def as_collection(rows: pa.Table, collection: str) -> pa.Table:
    return rows.set_column(rows.schema.get_field_index("collection"), "collection", pa.array([collection] * rows.num_rows))


def measure(db_path: Path, queries: np.ndarray, vectors: np.ndarray, keys: list[str], settings: AnnSettings) -> str:
    times, found = asyncio.run(probe(db_path, queries, settings))
    return f"{p50_p99(times)[0]:.1f} | {recall_at_k(found, vectors, queries, keys):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--days", type=int, default=10, help="daily folds of 1%% new rows")
    parser.add_argument("--skip-shares", action="store_true", help="only the daily folds")
    arguments = parser.parse_args()
    settings = AnnSettings()
    rng = np.random.default_rng(0)
    clusters = Clusters.random(1_500, arguments.dim, rng)
    seen, unseen = Clusters(clusters.centres[:1_000]), Clusters(clusters.centres[1_000:])
    base_vectors, base_members = seen.draw(arguments.rows, rng)
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "base"
        replace_partition(base, "synthetic", synthetic_rows(base_vectors, base_members))
        table = lancedb.connect(base).open_table(TABLE_NAME)
        started = time.perf_counter()
        table.create_index(VECTOR_COLUMN, config=settings.vector_index(arguments.rows, arguments.dim), replace=True)
        print(f"\n{arguments.rows:,} x {arguments.dim}-d indexed ({settings.kind}) in {time.perf_counter() - started:.1f} s\n")
        print("| new rows | unindexed share | p50 ms, recall@10: not updated | optimize s | after optimize | rebuild s | after rebuild |")
        print("|---:|---:|---|---:|---|---:|---|")
        for share in () if arguments.skip_shares else SHARES:
            count = round(arguments.rows * share)
            new_vectors, new_members = unseen.draw(count, rng)
            db_path = Path(scratch) / f"share-{share}"
            shutil.copytree(base, db_path)
            replace_partition(db_path, "new", as_collection(synthetic_rows(new_vectors, new_members), "new"))
            vectors = np.concatenate([base_vectors, new_vectors])
            keys = [f"synthetic/{i}" for i in range(arguments.rows)] + [f"new/{i}" for i in range(count)]
            # Queries where the data is: from the seen and the unseen clusters in proportion.
            queries = np.concatenate([seen.draw(QUERIES - round(QUERIES * share), rng)[0], unseen.draw(round(QUERIES * share), rng)[0]])
            before = measure(db_path, queries, vectors, keys, settings)
            table = lancedb.connect(db_path).open_table(TABLE_NAME)
            started = time.perf_counter()
            table.optimize()
            optimize_seconds = time.perf_counter() - started
            optimized = measure(db_path, queries, vectors, keys, settings)
            started = time.perf_counter()
            table.create_index(VECTOR_COLUMN, config=settings.vector_index(len(vectors), arguments.dim), replace=True)
            rebuild_seconds = time.perf_counter() - started
            rebuilt = measure(db_path, queries, vectors, keys, settings)
            unindexed = count / len(vectors)
            print(f"| {count:,} | {unindexed:.2f} | {before} | {optimize_seconds:.1f} | {optimized} | {rebuild_seconds:.1f} | {rebuilt} |")
            shutil.rmtree(db_path)
        daily(base, Path(scratch) / "daily", seen, base_vectors, arguments.days, settings, rng)


def daily(base: Path, db_path: Path, seen: Clusters, vectors: np.ndarray, days: int, settings: AnnSettings, rng) -> None:
    print("\n| day | rows | index parts | optimize s | p50 ms | recall@10 |")
    print("|---:|---:|---:|---:|---:|---:|")
    shutil.copytree(base, db_path)
    keys = [f"synthetic/{i}" for i in range(len(vectors))]
    queries = seen.draw(QUERIES, rng)[0]
    table = lancedb.connect(db_path).open_table(TABLE_NAME)
    name = next(index.name for index in table.list_indices() if index.columns == [VECTOR_COLUMN])
    for day in range(1, days + 1):
        new_vectors, new_members = seen.draw(max(1, len(keys) // 100), rng)
        replace_partition(db_path, f"day{day}", as_collection(synthetic_rows(new_vectors, new_members), f"day{day}"))
        vectors = np.concatenate([vectors, new_vectors])
        keys += [f"day{day}/{i}" for i in range(len(new_vectors))]
        table = lancedb.connect(db_path).open_table(TABLE_NAME)
        started = time.perf_counter()
        table.optimize()
        seconds = time.perf_counter() - started
        parts = table.index_stats(name).num_indices
        print(f"| {day} | {len(keys):,} | {parts} | {seconds:.1f} | {measure(db_path, queries, vectors, keys, settings)} |", flush=True)
    started = time.perf_counter()
    table.create_index(VECTOR_COLUMN, config=settings.vector_index(len(keys), vectors.shape[1]), replace=True)
    seconds = time.perf_counter() - started
    print(f"| rebuilt | {len(keys):,} | 1 | {seconds:.1f} (rebuild) | {measure(db_path, queries, vectors, keys, settings)} |")


if __name__ == "__main__":
    main()
