"""The code location's weight: wall time and peak RSS of importing the definitions in a new Python.

Every run process, step process and code server pays this import. Each case runs `--repeats`
times in a fresh interpreter, interleaved so that they share the machine's load; the table gives
the median wall time and the median peak RSS (`wait4`'s ru_maxrss). Baselines in the same run: an
empty interpreter, `import dagster` alone (the floor of any Dagster code location), and, with
`--baseline-root`, another checkout's definitions (e.g. the commit before the light code location).

    python benchmarks/bench_import.py --baseline-root /path/to/old/checkout
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def measure(code: str, root: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of `python -c code` with `root` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], cwd=root, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{code!r} failed in {root}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-root", type=Path)
    arguments = parser.parse_args()
    cases = {
        "empty interpreter": ("pass", REPO),
        "import dagster": ("import dagster", REPO),
        "import nft_pipeline.definitions (this tree)": ("import nft_pipeline.definitions", REPO),
    }
    if arguments.baseline_root:
        cases["import nft_pipeline.definitions (baseline)"] = ("import nft_pipeline.definitions", arguments.baseline_root)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(arguments.repeats):
        for name, (code, root) in cases.items():
            results[name].append(measure(code, root))
    print(f"\n| import | wall s (median of {arguments.repeats}) | peak RSS MB (median) |")
    print("|---|---:|---:|")
    for name, samples in results.items():
        print(f"| {name} | {statistics.median(w for w, _ in samples):.2f} | {statistics.median(r for _, r in samples):.0f} |")


if __name__ == "__main__":
    main()
