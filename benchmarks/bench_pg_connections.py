"""Range runs on the PostgreSQL instance: one new connection per query (dagster-postgres) against kept connections.

For each storage, in one run so that both share the machine's load: a fresh throwaway PostgreSQL
server (`tests/postgres_cluster.py`) behind `deploy/dagster-postgres.yaml`, with `--padding`
extra collection partitions registered (NFT1000 has 1,000; Dagster reads every partition key on
some calls), the sample gateway serving `--collections` generated collections, and three runs of
the `collection_pipeline` job over one range of them, in process:

1. first: every collection downloaded and prepared;
2. no-op: the same range again, nothing changed;
3. refresh: one new token in every fifth collection, then the range again.

Storages:
- `dagster-postgres`: the deploy file with its `storage:` block turned back into dagster-postgres's
  own `postgres:` block (a new connection for every query);
- `pooled`: the deploy file as it is (`resources.postgres_storage.PooledPostgresStorage`).

Printed as markdown: per storage and run, the wall time, the connections the run opened (counted
by a SQLAlchemy `connect` listener on every engine), and the ratio of the pooled storage's time to
the other's.

    python benchmarks/bench_pg_connections.py --collections 25 --padding 975
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import sqlalchemy
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY_YAML = REPO / "deploy" / "dagster-postgres.yaml"
RUNS = ("first", "no-op", "refresh")


def instance_yaml(storage: str, directory: Path) -> Path:
    """The deploy file, as it is (`pooled`) or with dagster-postgres's own storage block."""
    config = yaml.safe_load(DEPLOY_YAML.read_text())
    if storage == "dagster-postgres":
        config["storage"] = {"postgres": config["storage"]["custom"]["config"]}
    path = directory / f"{storage}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class ConnectionCounter:
    """Counts the database connections every SQLAlchemy engine of this process opens."""

    def __init__(self) -> None:
        self.opened = 0
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", self._connected)

    def _connected(self, *_: object) -> None:
        self.opened += 1


def measure(
    storage: str, collections: int, padding: int, root: Path, counter: ConnectionCounter
) -> dict[str, tuple[float, int]]:
    """(wall seconds, connections accepted) of each run in `RUNS` on a fresh server."""
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from assets.automation import PIPELINE_JOB
    from assets.partitions import collection_partitions
    from nft_pipeline.definitions import build_definitions
    from nft_pipeline.gateway import SampleGateway, running_gateway
    from nft_pipeline.samples.nft1000_mini import generated_collections, write_catalog
    from resources import local_resources
    from tests.postgres_cluster import pg_bin_dir, throwaway_postgres
    from tests.test_backfill_cli import dagster_home

    generated = generated_collections(collections)
    slugs = list(generated)
    os.environ["NFT_PIPELINE_CATALOG"] = str(write_catalog(generated, root / "catalog.csv"))
    results: dict[str, tuple[float, int]] = {}
    with throwaway_postgres(pg_bin_dir()) as server:
        os.environ.update(server.dagster_env())
        os.environ.update(dagster_home(root, instance_yaml(storage, root)))
        gateway = SampleGateway(collections=generated)

        with running_gateway(gateway) as running, dg.DagsterInstance.get() as instance:
            job = build_definitions(local_resources(running.base_url, root / "data")).resolve_job_def(PIPELINE_JOB)
            instance.add_dynamic_partitions(collection_partitions.name, slugs + [f"pad-{i:04d}" for i in range(padding)])
            tags = {ASSET_PARTITION_RANGE_START_TAG: slugs[0], ASSET_PARTITION_RANGE_END_TAG: slugs[-1]}
            for run in RUNS:
                if run == "refresh":
                    for slug in slugs[::5]:
                        gateway.set_supply(slug, generated[slug].default_supply + 1)
                before, started = counter.opened, time.perf_counter()
                assert job.execute_in_process(instance=instance, tags=tags).success
                results[run] = (time.perf_counter() - started, counter.opened - before)
                print(f"{storage} {run}: {results[run][0]:.1f} s, {results[run][1]:,} connections", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", type=int, default=25, help="collections in the range")
    parser.add_argument("--padding", type=int, default=975, help="further partitions registered, not run")
    arguments = parser.parse_args()
    measured, counter = {}, ConnectionCounter()
    for storage in ("dagster-postgres", "pooled"):
        with tempfile.TemporaryDirectory(prefix=f"bench-pg-{storage}-") as scratch:
            measured[storage] = measure(storage, arguments.collections, arguments.padding, Path(scratch), counter)
    total = arguments.collections + arguments.padding
    print(f"\n{arguments.collections} collections in one range, {total:,} partitions registered\n")
    print("| run | dagster-postgres s | connections | pooled s | connections | pooled / dagster-postgres |")
    print("|---|---:|---:|---:|---:|---:|")
    for run in RUNS:
        (base_s, base_n), (pooled_s, pooled_n) = measured["dagster-postgres"][run], measured["pooled"][run]
        print(f"| {run} | {base_s:.1f} | {base_n:,} | {pooled_s:.1f} | {pooled_n:,} | {pooled_s / base_s:.2f} |")


if __name__ == "__main__":
    main()
