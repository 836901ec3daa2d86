"""The production instance: `deploy/dagster-postgres.yaml` on a real PostgreSQL server.

A throwaway cluster (`initdb` + `pg_ctl`, as the unprivileged `postgres` user when the tests run
as root) listens on a free 127.0.0.1 port with password authentication. A `DAGSTER_HOME` holding
the deploy example config points at it; the pool limits are set with the CLI
(`dagster instance concurrency set`), `collections` and the partitioned `collection_pipeline`
job run for one collection against the sample gateway, and the runs, materializations, dynamic
partitions and pool limits are read back from PostgreSQL's own tables with psycopg2.

Skipped only when the PostgreSQL server binaries (`scripts/test-setup.sh` installs them) or
dagster-postgres (the `test` extra) are missing, and under CI=true not even then
(tests/components.py); any other failure (cluster start, login, migrations) fails the test.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest
import sqlalchemy

from assets import ingest
from assets.automation import PIPELINE_JOB
from assets.partitions import collection_partitions
from nft_pipeline.definitions import PARTITIONED_ASSETS, build_definitions
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.storage import DataLayout
from resources import local_resources
from tests.components import require_component, require_module
from tests.postgres_cluster import PgServer, pg_bin_dir, throwaway_postgres
from tests.test_backfill_cli import dagster_home, run_cli

REPO = Path(__file__).resolve().parent.parent
SUPPLY = 60
POOL_LIMITS = {"download": 2, "training": 1}


@contextmanager
def connections_opened() -> Iterator[list[object]]:
    """The database connections any SQLAlchemy engine of this process opens inside the block."""
    opened: list[object] = []

    def connected(dbapi_connection: object, _record: object) -> None:
        opened.append(dbapi_connection)

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", connected)
    try:
        yield opened
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "connect", connected)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PgServer]:
    bin_dir = pg_bin_dir()
    require_component("PostgreSQL server binaries (initdb, pg_ctl)", bin_dir is not None, "scripts/test-setup.sh installs them")
    require_module("dagster_postgres", "dagster-postgres", "the test extra installs it (make install)")
    with throwaway_postgres(bin_dir) as server:
        yield server


def test_one_partition_end_to_end_on_postgres(postgres, tmp_path):
    env = dagster_home(tmp_path, REPO / "deploy" / "dagster-postgres.yaml")
    env.update(postgres.dagster_env())
    for pool, limit in POOL_LIMITS.items():  # the documented CLI, on the PostgreSQL-backed instance
        run_cli(
            [sys.executable, "-m", "dagster", "instance", "concurrency", "set", pool, str(limit)],
            env,
            tmp_path / f"pool-{pool}.log",
            timeout=90,
        )

    with (
        mock.patch.dict(os.environ, env),
        running_gateway(SampleGateway(supplies={"cryptopunks": SUPPLY})) as gateway,
        connections_opened() as opened,
    ):
        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            resources = local_resources(gateway.base_url, Path(env["NFT_PIPELINE_DATA"]))
            assert dg.materialize([ingest.collections], instance=instance, resources=resources).success
            job = build_definitions(resources).resolve_job_def(PIPELINE_JOB)
            assert job.execute_in_process(partition_key="cryptopunks", instance=instance).success
            for pool, limit in POOL_LIMITS.items():
                info = instance.event_log_storage.get_concurrency_info(pool)
                assert (info.slot_count, info.active_slot_count, info.pending_step_count) == (limit, 0, 0), pool
    # PooledPostgresStorage keeps its connections: the instance opens a few (its stores, concurrent
    # threads) for both runs; dagster-postgres's own storage opened one per query, hundreds.
    assert 0 < len(opened) <= 20, len(opened)

    # Everything the instance knows is in PostgreSQL; nothing fell back to SQLite files.
    db = "nft_dagster"
    assert sorted(postgres.query(db, "SELECT status, count(*) FROM runs GROUP BY status")) == [("SUCCESS", 2)]
    [(pipeline_run_tags,)] = postgres.query(
        db, "SELECT count(*) FROM run_tags WHERE key = 'dagster/partition' AND value = 'cryptopunks'"
    )
    assert pipeline_run_tags == 1
    materialized = postgres.query(
        db, "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' ORDER BY 1"
    )
    expected = [('["collections"]', None)] + [(f'["{a.key.path[0]}"]', "cryptopunks") for a in PARTITIONED_ASSETS]
    assert sorted(materialized, key=str) == sorted(expected, key=str)
    partitions = postgres.query(
        db,
        "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s ORDER BY id",
        (collection_partitions.name,),
    )
    assert [p for (p,) in partitions] == ["cryptopunks", "nouns", "mixedmedia"]
    limits = postgres.query(db, 'SELECT concurrency_key, "limit" FROM concurrency_limits ORDER BY 1')
    assert limits == sorted(POOL_LIMITS.items())
    assert not list(Path(env["NFT_PIPELINE_DAGSTER_STORAGE"]).rglob("*.db"))

    layout = DataLayout(Path(env["NFT_PIPELINE_DATA"]))
    counts = layout.query(
        "SELECT (SELECT count(*) FROM {tokens}) AS tokens, (SELECT count(*) FROM {standardized_images} WHERE status = 'ok') AS images,"
        " (SELECT count(*) FROM {captions}) AS captions"
    ).to_pylist()
    assert counts == [{"tokens": SUPPLY, "images": SUPPLY, "captions": SUPPLY}]
