"""A throwaway PostgreSQL server for tests and benchmarks that need Dagster's production storage.

`initdb` + `pg_ctl` (as the unprivileged `postgres` user when running as root) in a fresh
directory, listening on a free 127.0.0.1 port with password authentication, fsync off; a database
`nft_dagster` created. `dagster_pg_env` gives the variables `deploy/dagster-postgres.yaml` reads.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.test_backfill_cli import free_port

DAGSTER_DB = "nft_dagster"


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

    def dagster_env(self, db_name: str = DAGSTER_DB) -> dict[str, str]:
        """The environment `deploy/dagster-postgres.yaml` reads its connection from."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.username,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": db_name,
        }


@contextmanager
def throwaway_postgres(bin_dir: Path) -> Iterator[PgServer]:
    """A fresh cluster with the database `nft_dagster`, stopped and deleted on exit."""
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
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}")

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
            cur.execute(f"CREATE DATABASE {DAGSTER_DB}")
        conn.close()
        yield server
    finally:
        subprocess.run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)
