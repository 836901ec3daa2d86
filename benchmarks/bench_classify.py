"""Time and accuracy of the classification jobs (issue #18) over a finished data directory.

For each collection: reading its standardized images once (the baseline every job pays), then
`token_colours`, `trait_predictions` (with its seeded 20% hold-out evaluation) and `token_audit`,
each timed end to end as its asset runs it, in wall time and in CPU time of the process (all
threads): on a machine shared with other work the CPU seconds are the figure that carries over.
Prints the hold-out table, the audit's flag counts and the timings; `--limit-cpus 2` pins the
process to two cores as the budget asks, `--jobs 2` runs two collections at once (as Dagster runs
two partitions), and the whole run's wall time is the figure the 2-minute goal is about.

`--methods` instead measures every trait method against each other on the hold-out, zero-shot
and combined included (they need the index and its model: untimed, not what the asset runs),
with kNN over the index's image embeddings as well as over trait pixels.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_classify.py --data /work/demo-data --limit-cpus 2 --jobs 2
    PYTHONPATH=. .venv/bin/python benchmarks/bench_classify.py --data /work/demo-data --methods
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

from nft_pipeline import schemas
from nft_pipeline.classify.audit import audit_rows, mismatch_rate
from nft_pipeline.classify.colours import colour_rows
from nft_pipeline.classify.pixels import read_samples
from nft_pipeline.classify.traits import collection_trait_predictions
from nft_pipeline.reporting import markdown_table
from nft_pipeline.storage import DataLayout, read_table


class Timer:
    """Wall and process CPU seconds of a block."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:.1f} / {self.cpu:.1f}"


def run_collection(data: Path, slug: str) -> tuple[dict, list[dict], dict]:
    """(timings, hold-out rows, audit summary) of one collection's three jobs."""
    layout = DataLayout(data)
    images = read_table(layout.partition_path("standardized_images", slug), schemas.STANDARDIZED_IMAGES)
    captions = read_table(layout.partition_path("captions", slug), schemas.CAPTIONS)
    components = read_table(layout.partition_path("components", slug), schemas.COMPONENTS)
    ok = [layout.file(p) for s, p in zip(images["status"].to_pylist(), images["png_path"].to_pylist()) if s == "ok" and p]
    with Timer() as read:
        read_samples(ok)
    with Timer() as colours_t:
        colour_rows(slug, images, layout.file)
    with Timer() as traits_t:
        predictions, holdout, _ = collection_trait_predictions(slug, images, captions, layout.file)
    with Timer() as audit_t:
        audit = audit_rows(slug, images, captions, components, layout.file)
    rate, bad, checked = mismatch_rate(audit)
    flags = Counter(f for fs in audit["flags"].to_pylist() for f in fs)
    summary = {"collection": slug, "tokens": audit.num_rows, "checked": checked, "trait_not_visible": bad,
               "mismatch_rate": round(rate, 4), "placeholder": flags["placeholder"], "duplicate_image": flags["duplicate_image"]}
    evaluation = [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in holdout.to_pylist()]
    jobs = (colours_t, traits_t, audit_t)
    timing = {"collection": slug, "ok_images": len(ok), "read_images": str(read), "token_colours": str(colours_t),
              "trait_predictions": str(traits_t), "token_audit": str(audit_t),
              "total_wall_s": round(sum(t.wall for t in jobs), 1), "total_cpu_s": round(sum(t.cpu for t in jobs), 1),
              "prediction_rows": predictions.num_rows}
    print(timing, flush=True)
    return timing, evaluation, summary


def compare_methods(data: Path, slug: str) -> list[dict]:
    """Every method on the seeded hold-out, with the index's embeddings and the model's text tower."""
    from dataclasses import replace

    from nft_pipeline.classify.trait_labels import collection_labels
    from nft_pipeline.classify.traits import TraitFeatures, evaluate_holdout
    from nft_pipeline.classify.zero_shot import index_features

    layout = DataLayout(data)
    images = read_table(layout.partition_path("standardized_images", slug), schemas.STANDARDIZED_IMAGES)
    captions = read_table(layout.partition_path("captions", slug), schemas.CAPTIONS)
    ok = [r for r in images.select(["token_id", "status", "png_path"]).to_pylist() if r["status"] == "ok" and r["png_path"]]
    samples, readable = read_samples([layout.file(r["png_path"]) for r in ok])
    tags = {r["token_id"]: r["tags"] for r in captions.select(["token_id", "tags"]).to_pylist()}
    labels = collection_labels([r["token_id"] for r in ok], tags)
    features = index_features(data, slug, labels, TraitFeatures(samples=samples, has_image=readable))
    rows = evaluate_holdout(slug, labels, features).to_pylist()
    by_embedding = evaluate_holdout(slug, labels, replace(features, knn="embedding")).to_pylist()
    rows += [{**r, "method": "knn_embedding", "chosen": False} for r in by_embedding if r["method"] == "knn"]
    columns = ("collection", "trait_type", "method", "features", "n_values", "n_test", "top1", "mean_confidence", "ece", "ece_calibrated", "chosen")
    return [{k: round(r[k], 3) if isinstance(r[k], float) else r[k] for k in columns} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--collections", nargs="*", default=None)
    parser.add_argument("--limit-cpus", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="collections run at once (processes)")
    parser.add_argument("--methods", action="store_true", help="compare every trait method, zero-shot included")
    args = parser.parse_args()
    if args.limit_cpus:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.limit_cpus]))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(args.limit_cpus))
    slugs = args.collections or sorted(p.stem for p in (args.data / "tables" / "standardized_images").glob("*.parquet"))
    if args.methods:
        rows = [row for slug in slugs for row in compare_methods(args.data, slug)]
        print("\n## methods on the hold-out (20%, seed 0)\n" + markdown_table(rows, width=40))
        return
    load_before = os.getloadavg()
    with Timer() as everything:
        if args.jobs > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(args.jobs) as pool:  # the longest (most tokens) first
                results = list(pool.map(run_collection, [args.data] * len(slugs), sorted(slugs, key=lambda s: -_tokens(args.data, s))))
        else:
            results = [run_collection(args.data, slug) for slug in slugs]
    timings = [r[0] for r in results]
    print("\n## hold-out (20%, seed 0)\n" + markdown_table([row for r in results for row in r[1]], width=40))
    print("\n## audit\n" + markdown_table([r[2] for r in results]))
    print("\n## timings (wall s / CPU s)\n" + markdown_table(timings))
    print(f"\nall collections, three jobs: {sum(t['total_cpu_s'] for t in timings):.1f} s CPU in the jobs; "
          f"the whole run (reading included, {args.jobs} at once): {everything.wall:.1f} s wall, "
          f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after")


def _tokens(data: Path, slug: str) -> int:
    return read_table(DataLayout(data).partition_path("standardized_images", slug), schemas.STANDARDIZED_IMAGES).num_rows


if __name__ == "__main__":
    main()
