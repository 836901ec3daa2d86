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

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest

from assets import ingest
from assets.automation import PIPELINE_JOB
from assets.partitions import collection_partitions
from nft_pipeline.definitions import PARTITIONED_ASSETS, build_definitions
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.storage import DataLayout
from resources import local_resources
from tests.components import require_component, require_module
from tests.test_backfill_cli import dagster_home, free_port, run_cli

REPO = Path(__file__).resolve().parent.parent
SUPPLY = 60
POOL_LIMITS = {"download": 2, "training": 1}


def pg_bin_dir() -> Path | None:
    """Where `initdb` and `pg_ctl` are: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    username: str
    password: str

    def connect(self, db_name: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host=self.host, port=self.port, user=self.username, password=self.password, dbname=db_name
        )

    def query(self, db_name: str, sql: str, params: tuple = ()) -> list[tuple]:
        with self.connect(db_name) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PgServer]:
    bin_dir = pg_bin_dir()
    require_component("PostgreSQL server binaries (initdb, pg_ctl)", bin_dir is not None, "scripts/test-setup.sh installs them")
    require_module("dagster_postgres", "dagster-postgres", "the test extra installs it (make install)")
    root = Path(tempfile.mkdtemp(prefix="nft-pg-"))  # not under pytest's 0700 root-owned tmp: postgres must reach it
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        owner = pwd.getpwnam("postgres")  # created by Debian's postgresql package
        os.chown(root, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    server = PgServer("127.0.0.1", free_port(), "dagster", secrets.token_hex(12))
    pwfile = root / "pw"
    pwfile.write_text(server.password + "\n")
    if run_as:
        shutil.chown(pwfile, "postgres", "postgres")

    def pg(*args: str) -> None:
        result = subprocess.run([*run_as, *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"

    data = root / "data"
    pg(
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-U",
        server.username,
        f"--pwfile={pwfile}",
        "--auth=scram-sha-256",
        "-E",
        "UTF8",
        "--no-sync",
        "--no-instructions",
    )
    options = f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    pg(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(root / "server.log"),
        "-w",
        "-t",
        "60",
        "start",
    )
    try:
        conn = server.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE nft_dagster")
        conn.close()
        yield server
    finally:
        subprocess.run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_one_partition_end_to_end_on_postgres(postgres, tmp_path):
    env = dagster_home(tmp_path, REPO / "deploy" / "dagster-postgres.yaml")
    env.update(
        DAGSTER_PG_HOST=postgres.host,
        DAGSTER_PG_PORT=str(postgres.port),
        DAGSTER_PG_USERNAME=postgres.username,
        DAGSTER_PG_PASSWORD=postgres.password,
        DAGSTER_PG_DB="nft_dagster",
    )
    for pool, limit in POOL_LIMITS.items():  # the documented CLI, on the PostgreSQL-backed instance
        run_cli(
            [sys.executable, "-m", "dagster", "instance", "concurrency", "set", pool, str(limit)],
            env,
            tmp_path / f"pool-{pool}.log",
            timeout=90,
        )

    with mock.patch.dict(os.environ, env), running_gateway(SampleGateway(supplies={"cryptopunks": SUPPLY})) as gateway:
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
