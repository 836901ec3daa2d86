"""Data versions: what a per-collection table was computed from, so an unchanged step does no work.

A step fingerprints its inputs and settings (`fingerprint`) before it works. The fingerprint is
stored in the Parquet footer of the table it writes (`with_fingerprint`), beside the data it
describes rather than in a Dagster instance, since several instances may share one data directory
(see `train/tables.py`, `trained_run`). When the table on disk carries the same fingerprint
(`stored_fingerprint`), the step returns it as it is. The same fingerprint is the data version the
asset reports to Dagster, so a refresh that changed nothing shows as an unchanged version.

A change of code that changes a step's output must change the `code_version` passed in (the
asset's own `code_version`), or a stored table would be taken as current.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from nft_pipeline.location import Location, is_local
from nft_pipeline.storage import read_table, write_table

FINGERPRINT_KEY = b"nft_pipeline.input_fingerprint"


def fingerprint(*parts: Any) -> str:
    """A digest of JSON-able parts (settings, code version, table fingerprints), 32 hex digits."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def table_fingerprint(table: pa.Table, columns: list[str] | None = None) -> str:
    """A digest of a table's rows (the given columns only, e.g. without fetch times), in row order."""
    selected = table.select(columns) if columns is not None else table
    return fingerprint(selected.to_pylist())


def with_fingerprint(table: pa.Table, value: str) -> pa.Table:
    """`table` with `value` in its schema metadata, which `storage.write_table` keeps in the file."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}), FINGERPRINT_KEY: value.encode()})


def stored_fingerprint(path: Location) -> str | None:
    """The fingerprint in the footer of the table at `path`, or None (no file, or written without one)."""
    if not path.exists():
        return None
    schema = pq.read_schema(path) if is_local(path) else pq.read_schema(path.path, filesystem=path.fs)
    value = (schema.metadata or {}).get(FINGERPRINT_KEY)
    return value.decode() if value is not None else None


def reused_or_computed(path: Location, version: str, schema: pa.Schema, compute: Callable[[], pa.Table]) -> tuple[pa.Table, int]:
    """(the table, rows computed now): the table at `path` when it was computed from `version`
    (nothing computed), else `compute()` written there with `version` in its footer."""
    if stored_fingerprint(path) == version:
        return read_table(path, schema), 0
    table = compute()
    write_table(with_fingerprint(table, version), path, schema)
    return table, table.num_rows
