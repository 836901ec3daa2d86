"""The production stack on one machine, for the daemon test and `benchmarks/bench_scale.py`.

A throwaway PostgreSQL server (`tests/postgres_cluster.py`) behind `deploy/dagster-postgres.yaml`
(the QueuedRunCoordinator, run and tag limits, op-granularity pools), pool limits set with the
CLI, then three processes the way an operator starts them: the sample gateway serving N generated
collections (`nft-pipeline gateway --generated N`, its catalog CSV as `$NFT_PIPELINE_CATALOG`),
`dagster-webserver` and `dagster-daemon run` on `workspace.yaml`. Nothing is executed in the
caller's process: the discovery sensor requests the first runs, the automation sensor the index
runs, and everything else is launched over the webserver's GraphQL API into the run queue.

`ProcessSampler` records each process type's peak RSS (the kernel's high-water mark, sampled)
and how many processes of each type ran.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from dagster import DagsterEventType
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.automation import collection_runs
from tests.postgres_cluster import DAGSTER_DB, PgServer, pg_bin_dir, throwaway_postgres
from tests.test_backfill_cli import dagster_home, free_port, run_cli, stop, wait_for_port
from tests.test_ui import Ui, wait_for_workspace

REPO = Path(__file__).resolve().parent.parent
POOL_LIMITS = {"download": 2, "training": 1, "search_index": 1}
ACTIVE_STATUSES = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
# Process types by a fragment of their command line, first match wins. Runs and the steps of the
# multiprocess executor start as `multiprocessing` children: a run worker is such a child of a code
# server, a step worker one further down.
PROCESS_TYPES = (
    ("api execute_step", "step worker"),
    ("api execute_run", "run worker"),
    ("api grpc", "code server"),
    ("dagster._daemon", "daemon"),
    ("dagster_webserver", "webserver"),
    ("nft_pipeline.cli gateway", "gateway"),
    ("chrom", "chromium"),
)
MULTIPROCESSING_CHILDREN = ("spawn_main", "forkserver")
RUN_EVENTS = (
    "RUN_ENQUEUED", "RUN_STARTING", "RUN_START", "RUN_SUCCESS", "RUN_FAILURE", "RUN_CANCELED",
    "STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "ASSET_MATERIALIZATION",
)  # fmt: skip
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}"""


def process_type(command_line: str, parent_type: str) -> str | None:
    for fragment, name in PROCESS_TYPES:
        if fragment in command_line:
            return name
    if any(fragment in command_line for fragment in MULTIPROCESSING_CHILDREN):
        return "run worker" if parent_type == "code server" else "step worker"
    return None


class ProcessSampler:
    """Samples the descendants of some root processes every `interval` s in a thread: per process
    type, the highest VmHWM (peak RSS) seen and the set of pids."""

    def __init__(self, roots: Sequence[int], interval: float = 0.5) -> None:
        self.roots = set(roots)
        self.interval = interval
        self.peak_mb: dict[str, float] = defaultdict(float)
        self.pids: dict[str, set[int]] = defaultdict(set)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        kinds: dict[int, str | None] = {}  # None: not a descendant of a root

        def kind_of(pid: int, depth: int = 0) -> str | None:
            if pid in kinds:
                return kinds[pid]
            kinds[pid] = None
            parent = parents.get(pid)
            if parent is None or depth > 30:
                return None
            parent_kind = "root" if parent in self.roots else kind_of(parent, depth + 1)
            if parent_kind is None:
                return None
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                return None
            kinds[pid] = process_type(command, parent_kind) or "other"
            return kinds[pid]

        for pid in parents:
            kind = kind_of(pid)
            if kind is None or kind == "other":
                continue
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_mb[kind] = max(self.peak_mb[kind], int(line.split()[1]) / 1024)
            self.pids[kind].add(pid)


@dataclass
class RunTiming:
    """One run's life from the event log (seconds since the epoch; 0 where the event is missing)."""

    run_id: str
    status: str
    partition: str | None
    enqueued: float = 0.0
    starting: float = 0.0
    started: float = 0.0
    ended: float = 0.0
    step_seconds: float = 0.0  # time inside steps (STEP_START to STEP_SUCCESS/FAILURE), summed
    assets: set[str] = field(default_factory=set)
    partitions: list[str] = field(default_factory=list)  # its partition, or every partition of its range

    @property
    def wall(self) -> float:
        """From the daemon starting the run's process to the run's end."""
        return self.ended - (self.starting or self.started)

    @property
    def queued(self) -> float:
        """From entering the run queue to the daemon starting the run (waits on run and tag limits)."""
        return (self.starting or self.started) - self.enqueued if self.enqueued else 0.0

    @property
    def overhead(self) -> float:
        """Everything of `wall` that is not inside a step: process start, imports, resources, events."""
        return self.wall - self.step_seconds


@dataclass
class DaemonStack:
    root: Path
    env: dict[str, str]
    postgres: PgServer
    gateway_url: str
    ui: Ui
    catalog: Path
    daemon: subprocess.Popen | None
    sampler: ProcessSampler
    location: str = ""

    # -- the run queue, through GraphQL --

    def launch(
        self,
        job: str,
        run_config: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        assets: Sequence[str] = (),
    ) -> str:
        """Queue a run of `job` (`__ASSET_JOB` with `assets` for an asset selection); returns its id."""
        if not self.location:
            nodes = self.ui.graphql("{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
            self.location = nodes["repositoriesOrError"]["nodes"][0]["location"]["name"]
        selector: dict[str, Any] = {"repositoryLocationName": self.location, "repositoryName": "__repository__", "jobName": job}
        if assets:
            selector["assetSelection"] = [{"path": [name]} for name in assets]
        params = {
            "selector": selector,
            "runConfigData": run_config or {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        }
        response = requests.post(
            f"{self.ui.url}/graphql", json={"query": LAUNCH_RUN, "variables": {"params": params}}, timeout=120
        )
        response.raise_for_status()
        result = response.json()["data"]["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launchRun({job}, {assets}) failed: {json.dumps(result)[:2000]}")
        return result["run"]["runId"]

    # -- what the instance holds, read from PostgreSQL --

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        return self.postgres.query(DAGSTER_DB, query, params)

    def run_statuses(self) -> dict[str, int]:
        return dict(self.sql("SELECT status, count(*) FROM runs GROUP BY status"))

    def active_runs(self) -> int:
        """Runs queued or running, plus asset backfills still submitting runs (the automation
        sensor's requests of several partitions become a backfill, which the daemon turns into runs)."""
        runs = sum(n for status, n in self.run_statuses().items() if status in ACTIVE_STATUSES)
        return runs + self.sql("SELECT count(*) FROM bulk_actions WHERE status = 'REQUESTED'")[0][0]

    def partitions(self) -> list[str]:
        rows = self.sql("SELECT partition FROM dynamic_partitions ORDER BY id")
        return [p for (p,) in rows]

    def materialized(self, asset: str, since: float = 0.0) -> set[str]:
        """Partitions of `asset` materialized after `since` (epoch seconds)."""
        rows = self.sql(
            "SELECT DISTINCT partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
            " AND asset_key = %s AND timestamp > to_timestamp(%s) AT TIME ZONE 'UTC'",
            (json.dumps([asset]), since),
        )
        return {p for (p,) in rows}

    def event_log_rows(self) -> int:
        return self.sql("SELECT count(*) FROM event_logs")[0][0]

    def database_mb(self) -> float:
        return self.sql("SELECT pg_database_size(%s)", (DAGSTER_DB,))[0][0] / 1e6

    def run_timings(self, since: float = 0.0) -> list[RunTiming]:
        """Every run created after `since`, with its queue, process and step times and its partitions."""
        runs = self.sql(
            "SELECT r.run_id, r.status, p.value, s.value, e.value FROM runs r"
            " LEFT JOIN run_tags p ON p.run_id = r.run_id AND p.key = 'dagster/partition'"
            " LEFT JOIN run_tags s ON s.run_id = r.run_id AND s.key = %s"
            " LEFT JOIN run_tags e ON e.run_id = r.run_id AND e.key = %s"
            " WHERE r.create_timestamp > to_timestamp(%s) AT TIME ZONE 'UTC'",
            (ASSET_PARTITION_RANGE_START_TAG, ASSET_PARTITION_RANGE_END_TAG, since),
        )
        order = self.partitions()
        timings = {}
        for run_id, status, partition, start, end in runs:
            span = order[order.index(start) : order.index(end) + 1] if start and end else [partition] if partition else []
            timings[run_id] = RunTiming(run_id, status, partition or (start if span else None), partitions=span)
        if not timings:
            return []
        event = {name: DagsterEventType[name].value for name in RUN_EVENTS}  # stored names (RUN_START is PIPELINE_START)
        events = self.sql(
            "SELECT run_id, dagster_event_type, step_key, extract(epoch FROM timestamp), asset_key FROM event_logs"
            " WHERE run_id = ANY(%s) AND dagster_event_type = ANY(%s) ORDER BY id",
            (list(timings), list(event.values())),
        )
        ended = {event[name] for name in ("RUN_SUCCESS", "RUN_FAILURE", "RUN_CANCELED")}
        step_started: dict[tuple[str, str], float] = {}
        for run_id, kind, step, at, asset in events:
            timing, at = timings[run_id], float(at)
            if kind == event["RUN_ENQUEUED"]:
                timing.enqueued = at
            elif kind == event["RUN_STARTING"]:
                timing.starting = at
            elif kind == event["RUN_START"]:
                timing.started = at
            elif kind in ended:
                timing.ended = at
            elif kind == event["STEP_START"]:
                step_started[(run_id, step)] = at
            elif kind in (event["STEP_SUCCESS"], event["STEP_FAILURE"]) and (run_id, step) in step_started:
                timing.step_seconds += at - step_started.pop((run_id, step))
            elif kind == event["ASSET_MATERIALIZATION"] and asset:
                timing.assets.add(json.loads(asset)[0])
        return list(timings.values())

    # -- waiting --

    def wait_until(self, done, what: str, timeout: float, poll: float = 2.0) -> float:
        """Poll `done()` until true; returns the seconds waited. Fails early if the daemon died."""
        started = time.monotonic()
        while not done():
            if self.daemon is None or self.daemon.poll() is not None:
                raise RuntimeError(f"dagster-daemon is not running while waiting for {what}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{what}: not done after {timeout:.0f} s; runs {self.run_statuses()}")
            time.sleep(poll)
        return time.monotonic() - started

    def wait_for_quiet(self, timeout: float, settle: float = 75.0) -> float:
        """Until no run is queued or running and none was created for `settle` seconds (the
        automation sensor ticks every 30 s, so a quiet minute means nothing more is coming).
        Returns the epoch time the last run ended."""
        deadline = time.monotonic() + timeout
        while True:
            quiet_since = None
            while self.active_runs() == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle:
                    last = self.sql("SELECT extract(epoch FROM max(update_timestamp)) FROM runs")[0][0]
                    return float(last or 0.0)
                time.sleep(2)
            if self.daemon is None or self.daemon.poll() is not None:
                raise RuntimeError("dagster-daemon is not running")
            if time.monotonic() > deadline:
                raise TimeoutError(f"runs still active after {timeout:.0f} s: {self.run_statuses()}")
            time.sleep(2)

    # -- the gateway --

    def set_supply(self, slug: str, supply: int) -> None:
        requests.post(f"{self.gateway_url}/admin/supply", params={"slug": slug, "n": supply}, timeout=30).raise_for_status()

    def gateway_counters(self) -> dict[str, Any]:
        return requests.get(f"{self.gateway_url}/admin/counters", timeout=30).json()


def _process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


@contextmanager
def daemon_stack(
    root: Path, collections: int, seed: int = 0, max_concurrent_runs: int | None = None, daemon: bool = True
) -> Iterator[DaemonStack]:
    """PostgreSQL, the gateway with `collections` generated collections, webserver and (unless not
    `daemon`) the daemon, all stopped on exit. `max_concurrent_runs` overrides the deploy file's run limit."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found; scripts/test-setup.sh installs them")
    with ExitStack() as stack:
        postgres = stack.enter_context(throwaway_postgres(bin_dir))
        env = dagster_home(root, REPO / "deploy" / "dagster-postgres.yaml")
        if max_concurrent_runs is not None:
            instance_yaml = Path(env["DAGSTER_HOME"]) / "dagster.yaml"
            text = instance_yaml.read_text()
            instance_yaml.write_text(text.replace("max_concurrent_runs: 8", f"max_concurrent_runs: {max_concurrent_runs}"))
        catalog = root / "catalog.csv"
        gateway_port, web_port = free_port(), free_port()
        env.update(postgres.dagster_env(), NFT_PIPELINE_GATEWAY_URL=f"http://127.0.0.1:{gateway_port}", NFT_PIPELINE_CATALOG=str(catalog))
        for pool, limit in POOL_LIMITS.items():
            run_cli([sys.executable, "-m", "dagster", "instance", "concurrency", "set", pool, str(limit)], env, root / f"pool-{pool}.log", timeout=120)
        gateway_args = ["-m", "nft_pipeline.cli", "gateway", "--port", str(gateway_port), "--generated", str(collections)]
        gateway = _process([sys.executable, *gateway_args, "--seed", str(seed), "--catalog", str(catalog)], env, root / "gateway.log")
        stack.callback(stop, gateway)
        wait_for_port(gateway_port, gateway, timeout=120)
        workspace = str(REPO / "workspace.yaml")
        web_args = ["-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(web_port), "-w", workspace]
        webserver = _process([sys.executable, *web_args], env, root / "webserver.log")
        stack.callback(stop, webserver)
        ui = Ui(f"http://127.0.0.1:{web_port}", env, root / "webserver.log")
        wait_for_port(web_port, webserver, timeout=240)
        wait_for_workspace(ui, webserver, timeout=240)
        daemon_process = None
        if daemon:
            daemon_process = _process([sys.executable, "-m", "dagster._daemon", "run", "-w", workspace], env, root / "daemon.log")
            stack.callback(stop, daemon_process)
        sampler = stack.enter_context(ProcessSampler([os.getpid()]))
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        yield DaemonStack(root, env, postgres, gateway_url, ui, catalog, daemon_process, sampler)


PARTITIONED_STEPS = ("tokens", "raw_media", "standardized_images", "captions", "components")


@dataclass
class Stage:
    """One stage of the scale run: its wall time (from its trigger to its last run's end), runs and
    what the instance grew by."""

    name: str
    seconds: float
    runs: list[RunTiming]
    event_rows: int  # event-log rows written during the stage
    database_mb: float  # the Dagster database's size after it
    notes: dict[str, Any] = field(default_factory=dict)
    load: str = ""  # the machine's load average (1, 5, 15 min) at its end: the machine may be shared

    @property
    def failed(self) -> list[RunTiming]:
        return [run for run in self.runs if run.status != "SUCCESS"]

    @property
    def collections(self) -> set[str]:
        """The partitions its runs covered (a refresh and the index runs it caused count a collection once)."""
        return {partition for run in self.runs for partition in run.partitions}


def training_config(epochs: int, max_examples: int) -> dict[str, Any]:
    """The tiny preset (the default model) for `epochs` on at most `max_examples` pairs, in batches
    of 32 so that a few small collections still fill an optimizer step."""
    config = {"epochs": epochs, "max_examples": max_examples, "batch_size": 32}
    return {"ops": {"clip_model": {"config": config}}}


def _stage(stack: DaemonStack, name: str, since: float, ended: float, rows_before: int, **notes: Any) -> Stage:
    rows_after, database_mb = stack.event_log_rows(), stack.database_mb()
    stage = Stage(name, ended - since, stack.run_timings(since), rows_after - rows_before, database_mb, dict(notes), load_average())
    covered = len(stage.collections)
    print(
        f"[{time.strftime('%H:%M:%S')}] stage {name}: {stage.seconds:.0f} s, {len(stage.runs)} runs ({len(stage.failed)} failed) "
        f"over {covered} collections, load {stage.load}",
        flush=True,
    )
    return stage


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _one_run(stack: DaemonStack, run_id: str, timeout: float) -> float:
    """Wait for one run to finish; the epoch time it ended."""
    finished = ("SUCCESS", "FAILURE", "CANCELED")
    stack.wait_until(lambda: stack.sql("SELECT status FROM runs WHERE run_id = %s", (run_id,))[0][0] in finished, run_id, timeout)
    [timing] = [t for t in stack.run_timings(0.0) if t.run_id == run_id]
    return timing.ended


def noop_refreshes(slugs: list[str], single: int) -> list[tuple[str, list[str], int | None]]:
    """The refreshes in which nothing changed, each (stage name, collections, collections per run):
    every collection in ranges as the daily schedule makes them, then the first `single` of them
    one run each (the way every run was made before ranges), for the per-collection cost of both."""
    stages: list[tuple[str, list[str], int | None]] = [("no-op refresh, ranges", slugs, None)]
    if single:
        stages.append(("no-op refresh, one run per collection", slugs[:single], 1))
    return stages


def _refresh(stack: DaemonStack, slugs: list[str], name: str, per_run: int | None = None) -> None:
    """Queue the daily schedule's runs over `slugs` (`collection_runs`), tagged like its runs."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    for request in collection_runs(slugs, f"{name}-{day}", {"nft_pipeline/refresh": day}, per_run):
        partition = {"dagster/partition": request.partition_key} if request.partition_key else {}
        stack.launch("collection_pipeline", tags={**request.tags, **partition})


def run_stages(
    stack: DaemonStack,
    collections: int,
    epochs: int,
    max_examples: int,
    refresh_share: float,
    timeout: float,
    noop_single: int = 0,
    stages: list[Stage] | None = None,
    report: bool = True,
) -> list[Stage]:
    """The backfill (the discovery sensor's range runs), training and the report (queued over
    GraphQL; `report=False` leaves it out), the index (the automation sensor's runs), then a refresh
    after minting `refresh_share` more tokens: the daily schedule's range runs and the index runs
    that follow; then refreshes in which nothing changed (`noop_refreshes`, the first `noop_single`
    collections' one run each). Each stage is appended to `stages` as it ends (kept if a later one fails)."""
    stages = [] if stages is None else stages
    rows = stack.event_log_rows()
    since = time.time()
    stack.wait_until(lambda: len(stack.partitions()) >= collections, "catalog discovery", timeout)
    ended = stack.wait_for_quiet(timeout)
    stages.append(_stage(stack, "backfill", since, ended, rows))

    rows, since = stack.event_log_rows(), time.time()
    run_id = stack.launch("__ASSET_JOB", training_config(epochs, max_examples), assets=["clip_model"])
    ended = _one_run(stack, run_id, timeout)
    stages.append(_stage(stack, "training", since, ended, rows))

    rows, since = stack.event_log_rows(), ended
    ended = stack.wait_for_quiet(timeout)
    stages.append(_stage(stack, "index", since, ended, rows))

    if report:
        rows, since = stack.event_log_rows(), time.time()
        ended = _one_run(stack, stack.launch("__ASSET_JOB", assets=["cvi_report"]), timeout)
        stages.append(_stage(stack, "report", since, ended, rows))

    supplies = {row["slug"]: int(row["total_supply"]) for row in _catalog_rows(stack.catalog)}
    new_tokens = max(1, round(refresh_share * sum(supplies.values())))
    grown = _mint(stack, supplies, new_tokens)
    before = stack.gateway_counters()
    rows, since = stack.event_log_rows(), time.time()
    _refresh(stack, stack.partitions(), "refresh")
    ended = stack.wait_for_quiet(timeout)
    after = stack.gateway_counters()
    fetched = {path: n - before["ipfs_paths"].get(path, 0) for path, n in after["ipfs_paths"].items()}
    fetched = {path: n for path, n in fetched.items() if n}
    stages.append(_stage(stack, "refresh", since, ended, rows, new_tokens=new_tokens, grown=grown, ipfs_fetched=fetched))

    for name, slugs, per_run in noop_refreshes(stack.partitions(), noop_single):
        rows, since = stack.event_log_rows(), time.time()
        _refresh(stack, slugs, name, per_run)
        ended = stack.wait_for_quiet(timeout)
        stages.append(_stage(stack, name, since, ended, rows, collections=len(slugs)))
    return stages


def _catalog_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _mint(stack: DaemonStack, supplies: dict[str, int], new_tokens: int) -> dict[str, int]:
    """Spread `new_tokens` over the collections, one each in catalog order from a fixed offset, at the gateway."""
    slugs = sorted(supplies)
    grown: dict[str, int] = defaultdict(int)
    for i in range(new_tokens):
        grown[slugs[(7 * i) % len(slugs)]] += 1
    for slug, extra in grown.items():
        stack.set_supply(slug, supplies[slug] + extra)
    return dict(grown)
