"""Download throughput and memory: our guarded aiohttp downloader against `requests` + 32 threads.

Both fetch the same files (each token's metadata JSON and its image) from the sample gateway,
which runs in its own process with 50 ms of injected latency per request, on this machine. The
gateway is warmed first (it renders each file once, then serves from cache) so neither side pays
for rendering. A second mode measures the peak RSS of a process downloading 100,000 tokens.

    python benchmarks/bench_download.py                 # throughput table (20,000 tokens)
    python benchmarks/bench_download.py --rss 100000    # peak RSS of the download process
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from tqdm import tqdm

from nft_pipeline import sniff
from nft_pipeline.blobs import BlobStore
from nft_pipeline.download import DownloadSettings, MediaDownloader, MediaJob
from nft_pipeline.http_client import HttpLimits
from nft_pipeline.samples.punks import CryptoPunks
from nft_pipeline.storage import default_data_dir
from nft_pipeline.uris import resolve_uri

LATENCY_S = 0.05
BASELINE_THREADS = 32


def scratch_dir() -> Path:
    """Where the pipeline really writes: the data directory's disk, not a tmpfs."""
    path = default_data_dir() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(supply: int) -> tuple[subprocess.Popen, str]:
    """The sample gateway in its own process (the second core), ready when it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nft_pipeline.cli", "gateway", "--port", str(port), "--supply", f"cryptopunks={supply}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{base}/admin/counters", timeout=1).read()
            return proc, base
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("gateway did not start")


def set_latency(base: str, latency: float) -> None:
    body = json.dumps({"latency": latency}).encode()
    request = urllib.request.Request(f"{base}/admin/faults", data=body, method="POST", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).read()


def jobs_for(n_tokens: int, with_metadata: bool) -> list[MediaJob]:
    punks = CryptoPunks()
    jobs = []
    for i in range(n_tokens):
        if with_metadata:
            jobs.append(MediaJob("cryptopunks", str(i), "metadata", punks.token_uri(i)))
        jobs.append(MediaJob("cryptopunks", str(i), "image", punks.metadata(i)["image"]))
    return jobs


def limits_for(base: str) -> HttpLimits:
    return HttpLimits(allowed_private=("127.0.0.1",), max_in_flight=256, max_per_host=256, ipfs_gateways=(f"{base}/ipfs/",))


def run_ours(
    jobs: list[MediaJob], base: str, store: Path, progress: bool = True, processes: int = DownloadSettings.processes
) -> tuple[float, int]:
    """Our downloader: returns (seconds, files ok)."""
    settings = DownloadSettings(allowed_types=sniff.MEDIA_TYPES + (sniff.JSON,), workers=512, processes=processes)
    downloader = MediaDownloader(BlobStore(store), store / "journal.jsonl", settings)
    bar = tqdm(total=len(jobs), desc="ours", unit="file", disable=not progress, mininterval=0.5)
    started = time.perf_counter()
    rows, _ = downloader.run(jobs, [], limits_for(base), lambda done: bar.update(done - bar.n))
    seconds = time.perf_counter() - started
    bar.close()
    downloader.finish()
    return seconds, sum(r.status == "ok" for r in rows)


def run_baseline(jobs: list[MediaJob], base: str, store: Path) -> tuple[float, int]:
    """The common approach: requests in a ThreadPoolExecutor(32), whole bodies, files by sha256."""
    urls = [resolve_uri(j.url, (f"{base}/ipfs/",), (), 1 << 20).urls[0] for j in jobs]
    store.mkdir(parents=True, exist_ok=True)
    sessions: dict[int, requests.Session] = {}

    def fetch(url: str) -> bool:
        import threading

        session = sessions.setdefault(threading.get_ident(), requests.Session())
        response = session.get(url, timeout=30)
        if response.status_code != 200:
            return False
        (store / hashlib.sha256(response.content).hexdigest()).write_bytes(response.content)
        return True

    bar = tqdm(total=len(urls), desc="baseline", unit="file", mininterval=0.5)
    started = time.perf_counter()
    ok = 0
    with ThreadPoolExecutor(BASELINE_THREADS) as pool:
        for result in pool.map(fetch, urls):
            ok += result
            bar.update()
    seconds = time.perf_counter() - started
    bar.close()
    return seconds, ok


def throughput(n_tokens: int) -> None:
    proc, base = start_gateway(n_tokens)
    try:
        jobs = jobs_for(n_tokens, with_metadata=True)
        with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
            run_ours(jobs, base, Path(tmp) / "warmup")  # gateway renders and caches every file
        set_latency(base, LATENCY_S)
        with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
            base_s, base_ok = run_baseline(jobs, base, Path(tmp) / "baseline")
        with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
            ours_s, ours_ok = run_ours(jobs, base, Path(tmp) / "ours")
    finally:
        proc.terminate()
        proc.wait()
    rows = [
        ("requests + ThreadPoolExecutor(32)", base_ok, base_s),
        ("nft-pipeline MediaDownloader (aiohttp)", ours_ok, ours_s),
    ]
    print(f"\n{n_tokens:,} tokens (metadata JSON + PNG image each), {LATENCY_S * 1000:.0f} ms latency per request\n")
    print("| downloader | files ok | seconds | files/s | ratio |")
    print("|---|---|---|---|---|")
    for name, ok, seconds in rows:
        print(f"| {name} | {ok:,} | {seconds:.1f} | {ok / seconds:,.0f} | {(ok / seconds) / (base_ok / base_s):.1f}x |")


def peak_rss(n_tokens: int, processes: int) -> None:
    """Run our downloader over `n_tokens` images in a child process and report its peak RSS."""
    if os.environ.get("NFT_BENCH_CHILD"):
        base = os.environ["NFT_BENCH_BASE"]
        with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
            jobs = jobs_for(n_tokens, with_metadata=False)
            seconds, ok = run_ours(jobs, base, Path(tmp), progress=False, processes=processes)
        parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(json.dumps({"tokens": n_tokens, "ok": ok, "seconds": round(seconds, 1),
                          "parent_mb": round(parent_mb, 1), "child_mb": round(child_mb, 1)}))
        return
    proc, base = start_gateway(n_tokens)
    try:
        env = {**os.environ, "NFT_BENCH_CHILD": "1", "NFT_BENCH_BASE": base}
        command = [sys.executable, __file__, "--rss", str(n_tokens), "--processes", str(processes)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    finally:
        proc.terminate()
        proc.wait()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    children = f"{result['child_mb']} MB" if processes > 1 else "-"
    print("\n| tokens | processes | images ok | seconds | peak RSS: main process | peak RSS: largest fetch process |")
    print("|---|---|---|---|---|---|")
    print(f"| {n_tokens:,} | {processes} | {result['ok']:,} | {result['seconds']} | {result['parent_mb']} MB | {children} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--rss", type=int, metavar="TOKENS", help="measure peak RSS for this many tokens instead")
    parser.add_argument("--processes", type=int, default=DownloadSettings.processes, help="download processes (--rss)")
    args = parser.parse_args()
    if args.rss:
        peak_rss(args.rss, args.processes)
    else:
        throughput(args.tokens)


if __name__ == "__main__":
    main()
