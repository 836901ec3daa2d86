"""Benchmark standardization on the fixed mixed corpus against a naive one-process baseline.

    python benchmarks/bench_standardize.py               # throughput table (markdown)
    python benchmarks/bench_standardize.py --png-levels  # PNG encoder settings on real outputs

Baseline, per image, in one process: PIL open (SVG: resvg at its own size, PIL cannot read SVG),
convert("RGBA"), Lanczos resize to 512 wide, PNG save with PIL's defaults. Ours:
`standardize_many` over all cores, each category a separate pool run (pool start included).

The baseline takes ~66 ms a punk (a blurred 512 px RGBA at zlib level 6), so it runs on every
BASELINE_PUNK_STRIDE-th punk only and the overall figures count each category at its measured
rate times its full image count.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import time
from collections.abc import Callable
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


def run_baseline(items: list[CorpusItem], out_dir: Path) -> tuple[float, float]:
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for item in items:
        baseline_one(item, out_dir / f"{item.token_id}.png")
    elapsed = time.perf_counter() - started
    return elapsed, sum(path.stat().st_size for path in out_dir.iterdir())


def run_ours(items: list[CorpusItem], out_dir: Path, workers: int) -> tuple[float, int, dict[str, int]]:
    jobs = [StandardizeJob(item.category, item.token_id, item.path) for item in items]
    started = time.perf_counter()
    outcomes = list(standardize_many(jobs, StandardizeSettings(), out_dir, workers=workers))
    elapsed = time.perf_counter() - started
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        statuses[outcome.row.status] = statuses.get(outcome.row.status, 0) + 1
    written = sum(Path(o.row.png_path).stat().st_size for o in outcomes if o.row.png_path)
    return elapsed, written, statuses


def throughput(corpus: list[CorpusItem], scratch: Path, workers: int) -> None:
    columns = ["category", "images", "baseline img/s", f"ours img/s ({workers} workers)", "speed-up"]
    print("| " + " | ".join([*columns, "baseline KB/img", "ours KB/img"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    totals = [0, 0.0, 0.0, 0.0, 0]
    rates = {}
    for category in CATEGORIES:
        items = [item for item in corpus if item.category == category]
        sample = items[::BASELINE_PUNK_STRIDE] if category == "cryptopunks" else items
        base_s, base_bytes = run_baseline(sample, scratch / "baseline" / category)
        base_s, base_bytes = base_s * len(items) / len(sample), base_bytes * len(items) / len(sample)
        ours_s, ours_bytes, statuses = run_ours(items, scratch / "ours", workers)
        if set(statuses) != {"ok"}:
            print(f"<!-- {category}: statuses {statuses} -->")
        rates[category] = len(items) / ours_s
        print(_row(category, len(items), base_s, ours_s, base_bytes, ours_bytes))
        for index, value in enumerate((len(items), base_s, ours_s, base_bytes, ours_bytes)):
            totals[index] += value
    print(_row("**all**", *totals))
    print(f"\nBaseline on every {BASELINE_PUNK_STRIDE}th punk, its time scaled to all of them.\n")
    speedup, punks = totals[1] / totals[2], rates["cryptopunks"]
    print(
        f"Overall speed-up {speedup:.1f}x (target {SPEEDUP_TARGET:g}x): {_verdict(speedup >= SPEEDUP_TARGET)}; ", end=""
    )
    print(f"CryptoPunks {punks:.0f} img/s (target {PUNKS_TARGET_PER_S}): {_verdict(punks >= PUNKS_TARGET_PER_S)}.")


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _row(name: str, count: int, base_s: float, ours_s: float, base_bytes: float, ours_bytes: int) -> str:
    return (
        f"| {name} | {count} | {count / base_s:.1f} | {count / ours_s:.1f} | {base_s / ours_s:.1f}x "
        f"| {base_bytes / count / 1024:.1f} | {ours_bytes / count / 1024:.1f} |"
    )


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
