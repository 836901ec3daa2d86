"""A refresh of one collection where nothing changed, through the daemon: wall time, processes, RSS.

For each variant of the code location, a fresh `DAGSTER_HOME` (the repository's dagster.yaml:
sqlite, the QueuedRunCoordinator, the pools), the sample gateway with `--supply` Nouns, and a first
full run of the `collection_pipeline` job for the partition; then `dagster-daemon run` and
`--runs` no-op refreshes, each submitted with `dagster job launch` (queued, dequeued by the
daemon, launched as a run worker process). Every 50 ms the benchmark samples the processes below
the daemon and the launcher (from /proc) and reports, per refresh, the wall time from submission
to the run's success, the processes started (by kind: code server, run worker, step worker) and
the peak RSS of each kind.

Variants, in one run so that they share the machine's load:
- `in-process`: this tree's `nft_pipeline.definitions` (the in-process executor is its default);
- `multiprocess`: this tree, the job on the multiprocess executor (`benchmarks/refresh_variants.py`);
- `baseline`: another checkout's `nft_pipeline.definitions` (`--baseline-root`, e.g. the commit
  before the light code location), as it ran before.

    python benchmarks/bench_refresh.py --baseline-root /path/to/old/checkout
    python benchmarks/bench_refresh.py --supply 50 --runs 2 --variants in-process multiprocess
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SLUG = "nouns"
PARTITIONED = "tokens,raw_media,standardized_images,captions,components"


def process_kind(cmdline: str) -> str | None:
    if "get_runs(" in cmdline:  # this benchmark's own status polls
        return None
    if "dagster-daemon" in cmdline or "dagster_daemon" in cmdline:
        return "daemon"
    if "execute_step" in cmdline:
        return "step worker"
    if "execute_run" in cmdline or "api execute" in cmdline:
        return "run worker"
    if "grpc" in cmdline:
        return "code server"
    if "job launch" in cmdline:
        return "launcher"
    if "multiprocessing" in cmdline or "forkserver" in cmdline:
        return "multiprocessing child"  # step processes of the multiprocess executor, download/standardize pools
    return "other" if "python" in cmdline else None


class ProcessSampler:
    """Every 50 ms: each live process's kind and RSS (MB); keeps each pid's peak."""

    def __init__(self) -> None:
        self.peaks: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._me = os.getpid()

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) == self._me:
                    continue
                try:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    if "dagster" not in cmdline and "forkserver" not in cmdline and "multiprocessing" not in cmdline:
                        continue
                    status = (entry / "status").read_text()
                except OSError:
                    continue
                kind = process_kind(cmdline)
                if kind is None or "VmRSS:" not in status:
                    continue
                rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
                pid = int(entry.name)
                self.peaks[pid] = (kind, max(rss, self.peaks.get(pid, (kind, 0.0))[1]))
            self._stop.wait(0.05)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self, since: set[int]) -> dict[str, tuple[int, float]]:
        """Per kind, the processes that appeared after `since` was taken and their peak RSS."""
        kinds: dict[str, list[float]] = defaultdict(list)
        for pid, (kind, rss) in self.peaks.items():
            if pid not in since:
                kinds[kind].append(rss)
        return {kind: (len(values), max(values)) for kind, values in kinds.items()}


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 900) -> None:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")


def wait_for_run(env: dict[str, str], known: set[str], timeout: float = 600) -> str:
    """Poll the instance for a new run until it finishes; returns its status."""
    script = (
        "import json, dagster as dg; i = dg.DagsterInstance.get(); "
        "print(json.dumps([(r.run_id, r.status.value) for r in i.get_runs(limit=5)]))"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True).stdout
        for run_id, status in json.loads(out.splitlines()[-1]):
            if run_id not in known and status in ("SUCCESS", "FAILURE", "CANCELED"):
                known.add(run_id)
                return status
        time.sleep(0.25)
    raise TimeoutError("the run did not finish")


def bench_variant(name: str, code_root: Path, module: str, supply: int, runs: int, sampler: ProcessSampler, work: Path) -> None:
    home = work / name / "home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    (work / name / "storage").mkdir()
    port = 20000 + (os.getpid() + len(name)) % 20000
    env = {
        **os.environ,
        "PYTHONPATH": str(code_root),
        "DAGSTER_HOME": str(home),
        "NFT_PIPELINE_DAGSTER_STORAGE": str(work / name / "storage"),
        "NFT_PIPELINE_DATA": str(work / name / "data"),
        "NFT_PIPELINE_GATEWAY_URL": f"http://127.0.0.1:{port}",
    }
    workspace = work / name / "workspace.yaml"
    workspace.write_text(f"load_from:\n  - python_module:\n      module_name: {module}\n      working_directory: {code_root}\n")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "nft_pipeline.cli", "gateway", "--port", str(port), f"--supply={SLUG}={supply}"],
        cwd=code_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    daemon = None
    try:
        time.sleep(3)
        materialize = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", module]
        run([*materialize, "--select", "collections"], env, code_root)
        run([*materialize, "--select", PARTITIONED, "--partition", SLUG], env, code_root)  # the first, real run
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
            cwd=code_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        known: set[str] = set()
        time.sleep(10)  # the daemon and its code server start
        launch = [
            sys.executable, "-m", "dagster", "job", "launch", "-w", str(workspace), "-j", "collection_pipeline",
            "--tags", json.dumps({"dagster/partition": SLUG}),
        ]
        for attempt in range(1, runs + 1):
            before = set(sampler.peaks)
            started = time.monotonic()
            run(launch, env, code_root)
            status = wait_for_run(env, known)
            wall = time.monotonic() - started
            kinds = sampler.summary(before)
            cells = ", ".join(f"{kind}: {count} x {rss:.0f} MB" for kind, (count, rss) in sorted(kinds.items()))
            print(f"| {name} | {attempt} | {status} | {wall:.1f} | {cells} |", flush=True)
    finally:
        for process in (daemon, gateway):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--supply", type=int, default=100, help="tokens of the collection")
    parser.add_argument("--runs", type=int, default=3, help="no-op refreshes per variant")
    parser.add_argument("--baseline-root", type=Path, help="a checkout of the code to compare against")
    parser.add_argument("--variants", nargs="+", default=["baseline", "multiprocess", "in-process"])
    parser.add_argument("--work-dir", type=Path)
    arguments = parser.parse_args()
    variants = {
        "baseline": (arguments.baseline_root, "nft_pipeline.definitions"),
        "multiprocess": (REPO, "benchmarks.refresh_variants"),
        "in-process": (REPO, "nft_pipeline.definitions"),
    }
    with tempfile.TemporaryDirectory() as scratch, ProcessSampler() as sampler:
        work = arguments.work_dir or Path(scratch)
        print(f"\nNo-op refresh of {arguments.supply} {SLUG} through the daemon (queued run, `dagster job launch`)\n")
        print("| variant | refresh | status | wall s (submit to success) | processes started: count x peak RSS |")
        print("|---|---:|---|---:|---|")
        for name in arguments.variants:
            root, module = variants[name]
            if root is None:
                continue
            bench_variant(name, root, module, arguments.supply, arguments.runs, sampler, work)


if __name__ == "__main__":
    main()
