"""Clone detection costs per token, measured on a data directory where `clones` ran, and the 1,000,000-token estimate.

Three measured parts (CPU s and wall s, with the load average):
1. signatures: `read_signature` on a sample of standardized PNGs (the per-token reading cost);
2. grouping as the asset does it: hash candidates over all pairs of earlier collections (XOR +
   popcount), thumbnail cosine, best match (`clone_rows`);
3. the ANN self-join that replaces 2's all-pairs step at scale: thumbnails reduced by PCA, a FAISS
   HNSW index built over them, the k nearest of every token searched; its recall of each copy's
   original among the k (copycat ground truth) says whether k is enough.

    python benchmarks/bench_clones.py data --copies 300
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import numpy as np

from nft_pipeline import schemas
from nft_pipeline.classify.clones import (
    CLONE_SIGNATURES,
    SIGNATURE_DIM,
    CloneSettings,
    clone_accuracy,
    clone_rows,
    thumbnail_vectors,
)
from nft_pipeline.classify.signature import read_signature
from nft_pipeline.samples.copycat import COPYCAT_SLUG, CopycatPunks
from nft_pipeline.storage import DataLayout, read_table

MILLION = 1_000_000


def timed(work):
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--copies", type=int, default=300, help="the copycat's size (its ground truth)")
    parser.add_argument("--sample", type=int, default=500, help="PNGs read for the signature cost")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--pca", type=int, default=256)
    args = parser.parse_args()
    layout = DataLayout(args.data_dir)
    slugs = read_table(layout.table_path("collections"), schemas.COLLECTIONS)["slug"].to_pylist()
    tables = [read_table(layout.partition_path("clone_signatures", s), CLONE_SIGNATURES) for s in slugs
              if layout.partition_path("clone_signatures", s).exists()]
    tokens = sum(t.num_rows for t in tables)
    print(f"{tokens} tokens in {len(tables)} collections; load average {os.getloadavg()}")

    images = [r for s in slugs for r in read_table(layout.partition_path("standardized_images", s), schemas.STANDARDIZED_IMAGES)
              .select(["status", "png_path"]).to_pylist() if r["status"] == "ok"]
    sample = random.Random(0).sample(images, min(args.sample, len(images)))
    _, wall, cpu = timed(lambda: [read_signature(layout.file(r["png_path"])) for r in sample])
    signature_cpu = cpu / len(sample)
    print(f"signatures: {len(sample)} PNGs, wall {wall:.1f} s, cpu {cpu:.1f} s: {1000 * signature_cpu:.2f} ms cpu a token")

    table, wall, cpu = timed(lambda: clone_rows(tables, CloneSettings()))
    print(f"grouping (all pairs by hash): wall {wall:.1f} s, cpu {cpu:.1f} s for {tokens} tokens")
    copycat = CopycatPunks(args.copies)
    truth = {(COPYCAT_SLUG, str(i)): ("cryptopunks", str(copycat.source_punk(i))) for i in range(args.copies)}
    print(f"accuracy: {clone_accuracy(table, truth)}")

    import faiss

    ok = [t.filter(np.asarray(t["status"].to_pylist()) == "ok") for t in tables]
    grids = np.concatenate([t["grid"].combine_chunks().values.to_numpy(zero_copy_only=False).reshape(-1, SIGNATURE_DIM) for t in ok])
    keys = [(c, i) for t in ok for c, i in zip(t["collection"].to_pylist(), t["token_id"].to_pylist(), strict=True)]
    vectors, wall, cpu = timed(lambda: thumbnail_vectors(grids.astype(np.float32)))
    print(f"thumbnails: wall {wall:.1f} s, cpu {cpu:.1f} s")
    fit_rows = vectors[np.random.default_rng(0).choice(len(vectors), min(5000, len(vectors)), replace=False)]
    mean = fit_rows.mean(axis=0)
    (_, _, components), wall, cpu = timed(lambda: np.linalg.svd(fit_rows - mean, full_matrices=False))
    reduced = np.ascontiguousarray((vectors - mean) @ components[: args.pca].T, dtype=np.float32)
    print(f"PCA to {args.pca} (fit on {len(fit_rows)}): wall {wall:.1f} s, cpu {cpu:.1f} s")
    index = faiss.IndexHNSWFlat(args.pca, 32)
    _, build_wall, build_cpu = timed(lambda: index.add(reduced))
    (_, neighbours), search_wall, search_cpu = timed(lambda: index.search(reduced, args.k + 1))
    row_of = {key: row for row, key in enumerate(keys)}
    copies = [row_of[key] for key in truth if key in row_of]
    recall = np.mean([row_of[truth[keys[row]]] in neighbours[row] for row in copies])
    per_build, per_search = build_cpu / len(keys), search_cpu / len(keys)
    print(f"HNSW build: wall {build_wall:.1f} s, cpu {build_cpu:.1f} s ({1000 * per_build:.3f} ms cpu a token)")
    print(f"self-join k={args.k}: wall {search_wall:.1f} s, cpu {search_cpu:.1f} s ({1000 * per_search:.3f} ms cpu a token); "
          f"copies with their original among the k: {recall:.3f}")
    candidates = neighbours[:, 1:]
    cosines, verify_wall, verify_cpu = timed(lambda: np.einsum("id,ikd->ik", vectors, vectors[np.maximum(candidates, 0)]))
    print(f"verify: cosine of {candidates.size} pairs (k per token, full thumbnails): cpu {verify_cpu:.2f} s")
    # At 1M an HNSW search visits ~log(N) more layers/nodes: scaled by log(1M)/log(N), a conservative factor.
    growth = np.log(MILLION) / np.log(len(keys))
    estimate = {
        "signatures": signature_cpu * MILLION,
        "HNSW build": per_build * growth * MILLION,
        "self-join search": per_search * growth * MILLION,
        "cosine of the k pairs": verify_cpu / len(keys) * MILLION,
    }
    for part, seconds in estimate.items():
        print(f"1M estimate, {part}: {seconds / 3600:.2f} cpu h")


if __name__ == "__main__":
    main()
