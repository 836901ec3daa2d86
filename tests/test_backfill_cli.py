"""Backfill one collection from the command line, the way an operator would.

Everything runs as separate processes against a temporary `DAGSTER_HOME` that holds a copy of the
repository's `dagster.yaml` (so the real instance configuration is exercised): the sample gateway
(`python -m nft_pipeline.cli gateway`), then `dagster asset materialize` twice. The test then reads
the Parquet tables and the instance's event log.

The runs use the definitions' default executor, in process (docs/scale.md, "Cheap runs per collection").
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from assets.partitions import collection_partitions
from nft_pipeline.storage import DataLayout

REPO = Path(__file__).resolve().parent.parent
SUPPLIES = {"cryptopunks": 200, "nouns": 20, "mixedmedia": 20}
PARTITIONED = ["tokens", "raw_media", "standardized_images", "captions", "components"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def gateway_process(supplies: dict[str, int], log: Path) -> Iterator[str]:
    """`nft-pipeline gateway` as its own process on a free port; yields its base URL."""
    port = free_port()
    args = [sys.executable, "-m", "nft_pipeline.cli", "gateway", "--port", str(port)]
    args += [f"--supply={slug}={n}" for slug, n in supplies.items()]
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def dagster_home(root: Path, instance_yaml: Path = REPO / "dagster.yaml") -> dict[str, str]:
    """A fresh DAGSTER_HOME under `root` with a copy of `instance_yaml`; returns the environment
    variables that point the instance and the pipeline's data at `root`."""
    home = root / "home"
    home.mkdir(parents=True)
    shutil.copy(instance_yaml, home / "dagster.yaml")
    (root / "storage").mkdir()
    return {
        "DAGSTER_HOME": str(home),
        "NFT_PIPELINE_DAGSTER_STORAGE": str(root / "storage"),
        "NFT_PIPELINE_DATA": str(root / "data"),
    }


def run_cli(args: list[str], env: dict[str, str], log: Path, timeout: float = 150) -> None:
    started = time.perf_counter()
    result = subprocess.run(args, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
    log.write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}"
    print(f"{' '.join(args[2:])}: {time.perf_counter() - started:.1f} s")


def test_backfill_one_collection_from_the_cli(tmp_path, monkeypatch):
    env = dagster_home(tmp_path)
    dagster = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "nft_pipeline.definitions"]
    with gateway_process(SUPPLIES, tmp_path / "gateway.log") as url:
        env["NFT_PIPELINE_GATEWAY_URL"] = url
        run_cli([*dagster, "--select", "collections"], env, tmp_path / "collections.log")
        run_cli(
            [*dagster, "--select", "tokens,raw_media", "--partition", "cryptopunks"],
            env,
            tmp_path / "backfill.log",
        )

    layout = DataLayout(Path(env["NFT_PIPELINE_DATA"]))
    assert sorted(p.name for p in (layout.root / "tables").iterdir()) == ["collections.parquet", "raw_media", "tokens"]
    assert [p.name for p in layout.table_dir("tokens").iterdir() if p.suffix == ".parquet"] == ["cryptopunks.parquet"]
    tokens = layout.query("SELECT collection, count(*) AS n, count(DISTINCT token_id) AS ids FROM {tokens} GROUP BY 1")
    assert tokens.to_pylist() == [{"collection": "cryptopunks", "n": 200, "ids": 200}]
    media = layout.query("SELECT collection, role, status, count(*) AS n FROM {raw_media} GROUP BY ALL")
    assert media.to_pylist() == [{"collection": "cryptopunks", "role": "image", "status": "ok", "n": 200}]
    digests = set(layout.query("SELECT sha256 FROM {raw_media}").column(0).to_pylist())
    assert len(digests) == 200 and all(layout.blobs.has(digest) for digest in digests)

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.get() as instance:
        assert sorted(instance.get_dynamic_partitions(collection_partitions.name)) == sorted(SUPPLIES)
        latest = instance.get_latest_materialization_event(dg.AssetKey("collections"))
        assert latest is not None and latest.dagster_event.partition is None
        for key in ("tokens", "raw_media"):
            records = instance.fetch_materializations(dg.AssetKey(key), limit=10).records
            assert [r.partition_key for r in records] == ["cryptopunks"], key
            assert instance.get_materialized_partitions(dg.AssetKey(key)) == {"cryptopunks"}, key
        for key in PARTITIONED[2:]:
            assert instance.get_latest_materialization_event(dg.AssetKey(key)) is None, key
        runs = instance.get_runs()
        assert len(runs) == 2 and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
        [backfill_run] = [run for run in runs if run.tags.get("dagster/partition")]
        assert backfill_run.tags["dagster/partition"] == "cryptopunks"
        assert backfill_run.asset_selection == {dg.AssetKey("tokens"), dg.AssetKey("raw_media")}
