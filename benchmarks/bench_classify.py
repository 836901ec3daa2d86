"""Time and accuracy of the classification jobs (issue #18) over a finished data directory.

For each collection: reading its standardized images once (the baseline every job pays), then
`token_colours`, `trait_predictions` (with its seeded 20% hold-out evaluation) and `token_audit`,
each timed end to end as its asset runs it, in wall time and in CPU time of the process (all
threads): on a machine shared with other work the CPU seconds are the figure that carries over. Prints the hold-out table, the audit's flag counts
and the timings; `--limit-cpus 2` pins the process to two cores as the budget asks.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_classify.py --data /work/demo-data --limit-cpus 2
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--collections", nargs="*", default=None)
    parser.add_argument("--limit-cpus", type=int, default=0)
    args = parser.parse_args()
    if args.limit_cpus:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.limit_cpus]))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(args.limit_cpus))
    layout = DataLayout(args.data)
    slugs = args.collections or sorted(p.stem for p in (args.data / "tables" / "standardized_images").glob("*.parquet"))
    timings, evaluation, audits = [], [], []
    for slug in slugs:
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
        audits.append({"collection": slug, "tokens": audit.num_rows, "checked": checked, "trait_not_visible": bad,
                       "mismatch_rate": round(rate, 4), "placeholder": flags["placeholder"], "duplicate_image": flags["duplicate_image"]})
        evaluation += [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in holdout.to_pylist()]
        jobs = (colours_t, traits_t, audit_t)
        timings.append({"collection": slug, "ok_images": len(ok), "read_images": str(read), "token_colours": str(colours_t),
                        "trait_predictions": str(traits_t), "token_audit": str(audit_t),
                        "total_wall_s": round(sum(t.wall for t in jobs), 1), "total_cpu_s": round(sum(t.cpu for t in jobs), 1),
                        "prediction_rows": predictions.num_rows})
        print(timings[-1], flush=True)
    print("\n## hold-out (20%, seed 0)\n" + markdown_table(evaluation, width=40))
    print("\n## audit\n" + markdown_table(audits))
    print("\n## timings (wall s / CPU s)\n" + markdown_table(timings))
    print(f"\nall collections, three jobs: {sum(t['total_wall_s'] for t in timings):.1f} s wall, {sum(t['total_cpu_s'] for t in timings):.1f} s CPU")


if __name__ == "__main__":
    main()
