"""NFT1000 in miniature through the real daemon on PostgreSQL: backfill, training, index, report, a 1% refresh.

The stack of `tests/daemon_stack.py`: a throwaway PostgreSQL server behind
`deploy/dagster-postgres.yaml` (QueuedRunCoordinator, run and tag limits, pools), the sample
gateway serving `--collections` generated collections (`nft-pipeline gateway --generated N`,
sized like the NFT1000 catalog scaled to a median of 20 tokens), `dagster-webserver` and
`dagster-daemon run`. The stages, each timed from its trigger to the end of its last run:

1. backfill: the catalog discovery sensor adds the partitions and queues `collection_pipeline`
   runs over ranges of `COLLECTIONS_PER_RUN` collections (assets/batching.py);
2. training: `clip_model` (tiny preset, `--epochs`, at most `--max-examples` pairs) queued over GraphQL;
3. index: the `nft_index` runs the automation sensor starts once the model exists;
4. report: `cvi_report` queued over GraphQL (`--no-report` leaves it out);
5. refresh: `--refresh-share` (1%) more tokens minted at the gateway, then the daily schedule's
   range runs, and the index runs that follow;
6. no-op refreshes: the same range runs again (nothing changed), then the first `--noop-single`
   collections one run each, the way every run was made before ranges.

Printed as markdown: per stage the wall time, runs and the collections they covered, the median
run (process start to end) and its orchestration overhead (the run's time outside its steps:
process start, imports, resources, event writes), wall time and overhead per collection, event-log
rows, the database size and the load average; peak RSS and count per process type; then, below
1,000 collections, the linear extrapolation to 1,000, marked as such. With `--ui-partitions`, the collection
partitions are then padded to that many (registered, not materialized) and headless Chromium
loads the `tokens` partitions page and the asset graph: time to render, screenshots.

    python benchmarks/bench_scale.py --collections 200 --epochs 2 --noop-single 50
    python benchmarks/bench_scale.py --collections 20 --ui-partitions 1000 --screenshots docs/img
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import statistics
import tempfile
import time
import traceback
from pathlib import Path

from tests.chromium import chromium_page
from tests.daemon_stack import DaemonStack, Stage, daemon_stack, load_average, run_stages

NFT1000_COLLECTIONS = 1_000
GRAPH_VIEWPORT = (2200, 1240)
PARTITIONS_VIEWPORT = (1600, 1000)


def stage_table(stages: list[Stage]) -> None:
    """Per stage: wall time, runs and the collections they covered, the median run, and per
    collection the stage's wall time and the runs' time outside steps."""
    print(
        "| stage | wall s | runs (failed) | collections | median run s | median overhead s | wall s per collection "
        "| overhead s per collection | event-log rows | database MB | load average at its end |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for stage in stages:
        runs = [run for run in stage.runs if run.ended]
        covered = len(stage.collections)
        median_run = statistics.median(run.wall for run in runs) if runs else 0.0
        median_overhead = statistics.median(run.overhead for run in runs) if runs else 0.0
        per_collection = f"{stage.seconds / covered:.2f}" if covered else "-"
        overhead = f"{sum(run.overhead for run in runs) / covered:.2f}" if covered else "-"
        print(
            f"| {stage.name} | {stage.seconds:.0f} | {len(stage.runs)} ({len(stage.failed)}) | {covered} | {median_run:.1f} | "
            f"{median_overhead:.1f} | {per_collection} | {overhead} | {stage.event_rows:,} | {stage.database_mb:.0f} | {stage.load} |"
        )


def process_table(stack: DaemonStack) -> None:
    print("\n| process type | processes | peak RSS MB (largest) |")
    print("|---|---:|---:|")
    for kind in sorted(stack.sampler.peak_mb):
        print(f"| {kind} | {len(stack.sampler.pids[kind])} | {stack.sampler.peak_mb[kind]:.0f} |")


def extrapolation(stages: list[Stage], collections: int) -> None:
    """Per-collection stages scaled linearly to 1,000 collections at this run's wall time per collection."""
    if collections >= NFT1000_COLLECTIONS:
        return
    print(f"\n**Extrapolated** to {NFT1000_COLLECTIONS:,} collections (not measured; this run had {collections}):\n")
    for stage in stages:
        covered = len(stage.collections)
        if not covered:
            continue
        per_collection = stage.seconds / covered
        print(
            f"- {stage.name}: {covered} collections in {stage.seconds:.0f} s, {per_collection:.2f} s each: "
            f"{NFT1000_COLLECTIONS:,} x {per_collection:.2f} s = **{NFT1000_COLLECTIONS * per_collection / 60:.0f} min**"
        )


def refresh_summary(stage: Stage) -> None:
    fetched = stage.notes["ipfs_fetched"]
    images = [path for path in fetched if not path.endswith(".json")]
    print(
        f"\nRefresh: {stage.notes['new_tokens']} new tokens over {len(stage.notes['grown'])} collections; the gateway "
        f"served {len(fetched)} IPFS files ({len(images)} images, {len(fetched) - len(images)} metadata JSON)."
    )


def ui_with_partitions(stack: DaemonStack, partitions: int, screenshots: Path | None) -> None:
    """Pad the collection partitions (the catalog's, then `ui-NNNN`) to `partitions` and time the
    partitions page and the asset graph."""
    import dagster as dg

    from assets.partitions import collection_partitions

    os.environ.update(stack.env)
    with dg.DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(collection_partitions.name))
        with stack.catalog.open(newline="", encoding="utf-8") as f:
            slugs = [row["slug"] for row in csv.DictReader(f) if row["slug"] not in known]
        slugs += [f"ui-{i:04d}" for i in range(partitions - len(known) - len(slugs))]
        instance.add_dynamic_partitions(collection_partitions.name, slugs[: max(0, partitions - len(known))])
    stack.ui.graphql("mutation { setNuxSeen }")
    total = len(stack.partitions())
    pages = (
        ("partitions page of `tokens`", "/assets/tokens?view=partitions", PARTITIONS_VIEWPORT,
         f"document.body && document.body.innerText.includes(({total}).toLocaleString('en-US'))", "ui_partitions_1000.png"),
        ("asset graph", "/asset-groups", GRAPH_VIEWPORT,
         "document.body && document.body.innerText.includes('Global asset lineage') && !!document.querySelector('[aria-label=zoom_in]')",
         "ui_asset_graph_1000.png"),
    )  # fmt: skip

    async def load_pages() -> None:
        with tempfile.TemporaryDirectory() as profile:
            async with chromium_page(Path(profile)) as page:
                for title, path, viewport, ready, image in pages:
                    started = time.perf_counter()
                    await page.open(f"{stack.ui.url}{path}", viewport)
                    await page.wait_for(ready)
                    seconds = time.perf_counter() - started
                    await asyncio.sleep(1)  # let the last requests paint
                    shot = f"; screenshot {screenshots / image}" if screenshots else ""
                    if screenshots:
                        await page.screenshot(screenshots / image)
                    print(f"- {title} with {total:,} partitions: rendered in {seconds:.1f} s{shot}")

    print(f"\nDagster UI (dagster-webserver on PostgreSQL), {total:,} collection partitions:\n")
    asyncio.run(load_pages())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-examples", type=int, default=2000)
    parser.add_argument("--refresh-share", type=float, default=0.01, help="new tokens minted before the refresh")
    parser.add_argument("--max-concurrent-runs", type=int, help="override the deploy file's run limit (8)")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds any one stage may take")
    parser.add_argument("--ui-partitions", type=int, default=0, help="then pad to this many partitions and load the UI")
    parser.add_argument("--screenshots", type=Path, help="save the UI screenshots here (e.g. docs/img)")
    parser.add_argument(
        "--ui-only", action="store_true", help="no daemon and no runs: register the partitions, load the UI"
    )
    parser.add_argument("--no-report", action="store_true", help="leave out the report stage (`cvi_report`)")
    parser.add_argument("--work-dir", type=Path, help="keep logs and data here (default: a temporary dir)")
    parser.add_argument(
        "--noop-single",
        type=int,
        default=50,
        help="then a no-op refresh of this many collections, one run each (0: none)",
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        root = arguments.work_dir or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        stack_args = (root, arguments.collections, arguments.seed, arguments.max_concurrent_runs)
        if arguments.ui_only:
            with daemon_stack(*stack_args, daemon=False) as stack:
                ui_with_partitions(stack, max(arguments.ui_partitions, arguments.collections), arguments.screenshots)
            return
        with daemon_stack(*stack_args) as stack:
            started = time.perf_counter()
            load_before = load_average()
            stages: list[Stage] = []
            try:
                run_stages(
                    stack, arguments.collections, arguments.epochs, arguments.max_examples, arguments.refresh_share,
                    arguments.timeout, arguments.noop_single, stages, report=not arguments.no_report,
                )  # fmt: skip
            except Exception:  # the stages that ended are still worth printing
                traceback.print_exc()
            with stack.catalog.open(newline="", encoding="utf-8") as f:
                tokens = sum(int(row["total_supply"]) for row in csv.DictReader(f))
            print(f"\n### {arguments.collections} generated collections ({tokens:,} tokens) through dagster-daemon on PostgreSQL\n")
            print(f"All stages: {time.perf_counter() - started:.0f} s; load average (1, 5, 15 min) before {load_before}, after {load_average()}.\n")
            stage_table(stages)
            refreshes = [stage for stage in stages if stage.name == "refresh"]
            if refreshes:
                refresh_summary(refreshes[0])
            process_table(stack)
            extrapolation(stages, arguments.collections)
            if arguments.ui_partitions:
                ui_with_partitions(stack, arguments.ui_partitions, arguments.screenshots)


if __name__ == "__main__":
    main()
