"""Dagster's PostgreSQL storage with connections kept open: the instance storage of `deploy/dagster-postgres.yaml`.

`dagster_postgres` opens a new connection for every query (SQLAlchemy's `NullPool`, so that
short-lived instances hold none). Each costs a PostgreSQL backend process and a SCRAM
handshake, about 7 ms here, and a range run writes a few events and reads the partition keys for
every collection and asset: a range of 25 collections opened 2,684 connections, and a no-op one
took 30.5 s against 11.5 s with the connections kept (docs/scale.md, "Connections to PostgreSQL",
`benchmarks/bench_pg_connections.py`).

Each process keeps up to `POOL_SIZE` connections per store (runs, events, schedules): two,
because writing an event can need a second connection while the first is held, and with one a
range of 25 still opened 200. Concurrent threads open extra ones (`MAX_OVERFLOW`), closed when
they return. A connection is tested before use (`pool_pre_ping`) and replaced after
`POOL_RECYCLE_S`, so a restarted server costs one failed check, not a failed run. The webserver
already pools (Dagster's `optimize_for_webserver`); this does it for the daemon, code servers and
run workers. It replaces the stores' private `_engine`, as `optimize_for_webserver` does: the
dagster-postgres release is pinned with dagster's (constraints.txt), and `tests/test_postgres.py`
fails if a new one stops honouring the replaced engine (it counts the connections an instance opens).
"""

from __future__ import annotations

from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

POOL_SIZE = 2
MAX_OVERFLOW = 10
POOL_RECYCLE_S = 3600


class PooledPostgresStorage(DagsterPostgresStorage):
    """`DagsterPostgresStorage` (same tables, same configuration) whose stores keep their connections."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, **kwargs: Any) -> None:
        super().__init__(postgres_url, should_autocreate_tables, **kwargs)
        for store in (self._run_storage, self._event_log_storage, self._schedule_storage):
            store._engine.dispose()  # the NullPool engine: it holds no connection, nothing is lost
            store._engine = create_pg_engine(
                store.postgres_url,
                store._token_provider,  # token authentication (`auth_provider`) as before
                isolation_level="AUTOCOMMIT",
                pool_size=POOL_SIZE,
                max_overflow=MAX_OVERFLOW,
                pool_recycle=POOL_RECYCLE_S,
                pool_pre_ping=True,
            )

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
