"""CVI cost: the streaming closed form (`cvi`) against eq. 1 verbatim (`cvi_naive`, N x N matrices).

    python benchmarks/bench_cvi.py                                  # 1,000,000 pairs; naive to N = 20,000
    python benchmarks/bench_cvi.py --pairs 200000 --naive 1000 5000

Features: random Gaussian 512-d rows, each caption its image plus noise, L2-normalised, float32,
generated in blocks from a fixed seed before anything is timed. The naive form runs at every
requested N whose two N x N float64 arrays fit in --naive-budget-gb, and the closed form runs at
the same N for the ratio and the agreement. Peak memory is tracemalloc's peak of numpy and Python
allocations during the call, on top of the inputs (BLAS's own work buffers are not traced). CPU
seconds count all threads: far above wall x threads, or wall far above CPU, means other load.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

import numpy as np  # noqa: E402

from nft_pipeline.cvi import CviResult, cvi, cvi_from_moments, cvi_naive, feature_moments  # noqa: E402
from nft_pipeline.reporting import markdown_table  # noqa: E402

DIM = 512
SEED = 20240901
GENERATION_BLOCK = 65_536
TARGET_SECONDS = 10.0


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def random_pairs(n: int, dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    """`n` normalised float32 image and caption rows, generated a block at a time (no float64 copy)."""
    rng = np.random.default_rng(SEED)
    images = np.empty((n, dim), dtype=np.float32)
    texts = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, GENERATION_BLOCK):
        stop = min(start + GENERATION_BLOCK, n)
        block_images, block_texts = images[start:stop], texts[start:stop]
        rng.standard_normal(out=block_images, dtype=np.float32)
        rng.standard_normal(out=block_texts, dtype=np.float32)
        block_texts *= 0.5
        block_texts += block_images
        for block in (block_images, block_texts):
            block /= np.linalg.norm(block, axis=1, keepdims=True)
    return images, texts


def measure(
    form: Callable[[np.ndarray, np.ndarray], CviResult], images: np.ndarray, texts: np.ndarray, repeats: int
) -> tuple[CviResult, float, float, int]:
    """Result, best wall seconds, CPU seconds of that run, and peak traced bytes over `repeats` runs."""
    best_wall, best_cpu, peak, result = float("inf"), 0.0, 0, None
    for _ in range(repeats):
        tracemalloc.start()
        tracemalloc.reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        result = form(images, texts)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        if wall < best_wall:
            best_wall, best_cpu = wall, cpu
    return result, best_wall, best_cpu, peak


def row(method: str, n: int, wall: float, cpu: float, peak: int, rel_diff: str, ratio: str) -> dict[str, str]:
    return {
        "method": method,
        "pairs": f"{n:,}",
        "wall s": f"{wall:.3f}",
        "CPU s": f"{cpu:.3f}",
        "peak traced MB": f"{peak / 2**20:,.1f}",
        "rel. diff vs naive": rel_diff,
        "naive / closed (wall)": ratio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=1_000_000, help="pairs for the closed form alone")
    parser.add_argument("--naive", type=int, nargs="*", default=[1_000, 5_000, 10_000, 20_000])
    parser.add_argument("--naive-budget-gb", type=float, default=4.0, help="skip N whose 2 N^2 float64 exceed this")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per small case (best wall kept)")
    args = parser.parse_args()

    print(
        f"{cpu_name()}, {os.cpu_count()} cores, numpy {np.__version__}, load average at start {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for n in args.naive:
        needed_gb = 2 * 8 * n * n / 1e9
        if needed_gb > args.naive_budget_gb:
            print(f"naive N = {n:,} skipped: needs ~{needed_gb:.1f} GB > --naive-budget-gb {args.naive_budget_gb}")
            continue
        images, texts = random_pairs(n)
        repeats = args.repeats if n <= 5_000 else 1
        naive, naive_wall, naive_cpu, naive_peak = measure(cvi_naive, images, texts, repeats)
        closed, closed_wall, closed_cpu, closed_peak = measure(cvi, images, texts, args.repeats)
        rel_diff = f"{abs(closed.cvi - naive.cvi) / naive.cvi:.1e}"
        rows.append(row("naive (N x N)", n, naive_wall, naive_cpu, naive_peak, "-", "-"))
        rows.append(
            row("closed form", n, closed_wall, closed_cpu, closed_peak, rel_diff, f"{naive_wall / closed_wall:.0f}x")
        )
        del images, texts

    generated = time.perf_counter()
    images, texts = random_pairs(args.pairs)
    print(f"generated {args.pairs:,} pairs in {time.perf_counter() - generated:.1f} s (not timed below)")
    one_stream, one_wall, one_cpu, one_peak = measure(one_stream_cvi, images, texts, 1)
    rows.append(row("closed form, one stream", args.pairs, one_wall, one_cpu, one_peak, "-", "-"))
    closed, wall, cpu, peak = measure(cvi, images, texts, 1)
    rows.append(row("closed form", args.pairs, wall, cpu, peak, "-", "-"))

    print()
    print(markdown_table(rows))
    print()
    verdict = "meets" if wall < TARGET_SECONDS else "misses"
    print(
        f"{args.pairs:,} pairs: CVI {closed.cvi:.6g} in {wall:.1f} s ({verdict} the {TARGET_SECONDS:.0f} s target); "
        f"load average at end {os.getloadavg()[0]:.2f}"
    )
    print(
        f"two concurrent streams (`cvi`) against one (images, then texts): {one_wall / wall:.2f}x faster, "
        f"CVI relative difference {abs(closed.cvi - one_stream.cvi) / one_stream.cvi:.1e}"
    )


def one_stream_cvi(images: np.ndarray, texts: np.ndarray) -> CviResult:
    """The baseline `cvi` replaced: the two modalities one after the other, every BLAS thread on each."""
    return cvi_from_moments(feature_moments(images), feature_moments(texts))


if __name__ == "__main__":
    main()
