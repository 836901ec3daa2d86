"""The classification assets with unchanged inputs against the same assets computing (issues #16, #18).

Copies a finished data directory (its standardized images, captions and components; classification
tables are removed so the first run computes), then per collection materializes `token_colours`,
`trait_predictions` and `token_audit` in process on a temporary instance twice: the first run
computes them (the baseline), the second finds its fingerprints unchanged and reads the tables back.
Prints each run's wall time and the rows each asset computed. The first collection's first run
also pays the imports (scikit-learn and the rest), one process for the whole run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_classify_noop.py --data /work/demo-data --work-dir /tmp/classify-noop
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import dagster as dg

from nft_pipeline.definitions import ALL_ASSETS
from resources import local_resources

CLASSIFY = ("trait_predictions", "token_colours", "token_audit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a finished data directory (read only: it is copied)")
    parser.add_argument("--work-dir", type=Path, required=True, help="emptied, then holds the copy and the instance")
    args = parser.parse_args()
    shutil.rmtree(args.work_dir, ignore_errors=True)
    data = args.work_dir / "data"
    shutil.copytree(args.data, data)
    for name in (*CLASSIFY, "trait_evaluation"):
        shutil.rmtree(data / "tables" / name, ignore_errors=True)
    (args.work_dir / "dagster").mkdir()
    assets = [a for a in ALL_ASSETS if a.key.path[-1] in CLASSIFY]
    slugs = sorted(p.stem for p in (data / "tables" / "standardized_images").glob("*.parquet"))
    with dg.instance_for_test(temp_dir=str(args.work_dir / "dagster")) as instance:
        instance.add_dynamic_partitions("collections", slugs)
        resources = local_resources(None, data)
        print("| collection | run | wall s | rows computed |\n|---|---|---:|---|")
        for slug in slugs:
            for run in ("computing", "unchanged inputs"):
                start = time.perf_counter()
                result = dg.materialize(assets, partition_key=slug, instance=instance, resources=resources)
                wall = time.perf_counter() - start
                computed = {
                    e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata["rows_computed"].value
                    for e in result.get_asset_materialization_events()
                }
                print(f"| {slug} | {run} | {wall:.2f} | {computed} |", flush=True)


if __name__ == "__main__":
    main()
