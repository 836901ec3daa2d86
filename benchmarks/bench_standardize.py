"""Benchmark standardization on the fixed mixed corpus against a naive one-process baseline.

    python benchmarks/bench_standardize.py               # throughput table (markdown)
    python benchmarks/bench_standardize.py --png-levels  # PNG encoder settings on real outputs

Baseline, per image, in one process: PIL open (SVG: resvg at its own size, PIL cannot read SVG),
convert("RGBA"), Lanczos resize to 512 wide, PNG save with PIL's defaults. Ours:
`standardize_many` over all cores, each category a separate pool run (pool start included).

The baseline takes ~66 ms a punk (a blurred 512 px RGBA at zlib level 6), so it runs on every
BASELINE_PUNK_STRIDE-th punk only and the overall figures count each category at its measured
rate times its full image count. "CPU ms/img" counts every process of the run, pool workers
included, so it stays meaningful when other work shares the machine; the img/s columns do not.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

import resvg_py
from PIL import Image

from benchmarks.corpus import CorpusItem, load_corpus
from nft_pipeline.standardize import (
    StandardizeJob,
    StandardizeSettings,
    standardize_image,
    standardize_many,
)

CATEGORIES = ["cryptopunks", "photo_png", "photo_jpeg", "gif", "svg_nouns", "svg_vector"]
LEVEL_SAMPLE = {"cryptopunks": 300, "photo_png": 15, "photo_jpeg": 15, "gif": 20, "svg_nouns": 50, "svg_vector": 50}
PUNKS_TARGET_PER_S = 400
BASELINE_PUNK_STRIDE = 20
SPEEDUP_TARGET = 3.0


def baseline_one(item: CorpusItem, target: Path) -> None:
    """The naive conversion the paper's description suggests."""
    if item.path.suffix == ".svg":
        image = Image.open(io.BytesIO(resvg_py.svg_to_bytes(svg_string=item.path.read_text())))
    else:
        image = Image.open(item.path)
    image = image.convert("RGBA")
    image = image.resize((512, round(512 * image.height / image.width)), Image.Resampling.LANCZOS)
    image.save(target, format="PNG")


@dataclass
class Measured:
    """Wall time, CPU time of the whole process tree (robust to other load), and bytes written."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    written: float = 0.0

    def add(self, other: Measured, factor: float = 1.0) -> None:
        self.wall_s += other.wall_s * factor
        self.cpu_s += other.cpu_s * factor
        self.written += other.written * factor


def tree_cpu_seconds() -> float:
    """CPU seconds of this process and all its descendants, exited ones included (Linux /proc).

    Pool workers are children of the fork server; once reaped, their time is in its cutime.
    """
    parents, ticks = {}, {}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else None
        except OSError:
            continue
        if fields:
            parents[int(entry.name)] = int(fields[1])
            ticks[int(entry.name)] = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def measure(run: Callable[[], float]) -> Measured:
    """Time `run`, which returns the bytes it wrote."""
    wall, cpu = time.perf_counter(), tree_cpu_seconds()
    written = run()
    return Measured(time.perf_counter() - wall, tree_cpu_seconds() - cpu, written)


def run_baseline(items: list[CorpusItem], out_dir: Path) -> float:
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in items:
        baseline_one(item, out_dir / f"{item.token_id}.png")
    return sum(path.stat().st_size for path in out_dir.iterdir())


def run_ours(items: list[CorpusItem], out_dir: Path, workers: int) -> float:
    jobs = [StandardizeJob(item.category, item.token_id, item.path) for item in items]
    outcomes = list(standardize_many(jobs, StandardizeSettings(), out_dir, workers=workers))
    failed = [(o.token_id, o.row.status) for o in outcomes if o.row.status != "ok"]
    if failed:
        print(f"<!-- not ok: {failed[:5]} -->")
    return sum(Path(o.row.png_path).stat().st_size for o in outcomes if o.row.png_path)


def throughput(corpus: list[CorpusItem], scratch: Path, workers: int) -> None:
    columns = ["category", "images", "baseline img/s", f"ours img/s ({workers} workers)", "speed-up"]
    columns += ["baseline CPU ms/img", "ours CPU ms/img", "baseline KB/img", "ours KB/img"]
    print("| " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * (len(columns) - 1))
    total_base, total_ours, count = Measured(), Measured(), 0
    punks_rate = punks_cpu_rate = 0.0
    for category in CATEGORIES:
        items = [item for item in corpus if item.category == category]
        sample = items[::BASELINE_PUNK_STRIDE] if category == "cryptopunks" else items
        base = measure(partial(run_baseline, sample, scratch / "baseline" / category))
        ours = measure(partial(run_ours, items, scratch / "ours", workers))
        scaled_base = Measured()
        scaled_base.add(base, len(items) / len(sample))
        print(_row(category, len(items), scaled_base, ours))
        total_base.add(scaled_base)
        total_ours.add(ours)
        count += len(items)
        if category == "cryptopunks":
            punks_rate, punks_cpu_rate = len(items) / ours.wall_s, workers * len(items) / ours.cpu_s
    print(_row("**all**", count, total_base, total_ours))
    print(f"\nBaseline on every {BASELINE_PUNK_STRIDE}th punk, its times scaled to all of them.")
    speedup = total_base.wall_s / total_ours.wall_s
    print(f"Overall speed-up {speedup:.1f}x (target {SPEEDUP_TARGET:g}x): {_verdict(speedup >= SPEEDUP_TARGET)}.")
    print(
        f"CryptoPunks (target {PUNKS_TARGET_PER_S} img/s): {punks_rate:.0f} img/s measured, "
        f"{_verdict(punks_rate >= PUNKS_TARGET_PER_S)}; {punks_cpu_rate:.0f} img/s on {workers} idle cores "
        f"by CPU time, {_verdict(punks_cpu_rate >= PUNKS_TARGET_PER_S)}."
    )


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _row(name: str, count: int, base: Measured, ours: Measured) -> str:
    cells = [name, str(count), f"{count / base.wall_s:.1f}", f"{count / ours.wall_s:.1f}"]
    cells += [
        f"{base.wall_s / ours.wall_s:.1f}x",
        f"{base.cpu_s / count * 1000:.1f}",
        f"{ours.cpu_s / count * 1000:.1f}",
    ]
    cells += [f"{base.written / count / 1024:.1f}", f"{ours.written / count / 1024:.1f}"]
    return "| " + " | ".join(cells) + " |"


def png_levels(corpus: list[CorpusItem]) -> None:
    """Encode time and size of our real outputs under each zlib level, and with `optimize`."""
    settings = StandardizeSettings()
    outputs: dict[str, list[Image.Image]] = {}
    for category, count in LEVEL_SAMPLE.items():
        items = [item for item in corpus if item.category == category][:count]
        results = (standardize_image(item.path.read_bytes(), settings, item.token_id) for item in items)
        outputs[category] = [Image.open(io.BytesIO(result.png)) for result in results]
        for image in outputs[category]:
            image.load()
    configs: list[tuple[str, Callable[[Image.Image], bytes]]] = [
        (f"level {level}", lambda image, level=level: _png(image, compress_level=level)) for level in range(1, 10)
    ] + [("level 9 + optimize", lambda image: _png(image, optimize=True))]
    print("| encoder | " + " | ".join(f"{c} ms/img, KB/img" for c in LEVEL_SAMPLE) + " |")
    print("|---|" + "---:|" * len(LEVEL_SAMPLE))
    for name, encode in configs:
        cells = []
        for images in outputs.values():
            started = time.perf_counter()
            size = sum(len(encode(image)) for image in images)
            elapsed = time.perf_counter() - started
            cells.append(f"{elapsed / len(images) * 1000:.2f}, {size / len(images) / 1024:.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def _png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/nft-bench-corpus"), help="corpus cache directory")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--png-levels", action="store_true", help="measure PNG encoder settings instead")
    args = parser.parse_args()
    started = time.perf_counter()
    corpus = load_corpus(args.corpus)
    print(f"<!-- corpus ready in {time.perf_counter() - started:.0f} s: {len(corpus)} images -->")
    print(
        f"Command: `python benchmarks/bench_standardize.py{' --png-levels' if args.png_levels else ''}`, "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}\n"
    )
    if args.png_levels:
        png_levels(corpus)
        return
    scratch = args.corpus.parent / f"{args.corpus.name}-out"
    shutil.rmtree(scratch, ignore_errors=True)
    load_before = os.getloadavg()[0]
    try:
        throughput(corpus, scratch, args.workers)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # Other processes on the machine skew every figure; the load average shows whether there were any.
    print(f"Load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f}.")


if __name__ == "__main__":
    main()
