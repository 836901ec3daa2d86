"""Where the pipeline keeps its tables and blobs, and how it writes them safely.

Every stage writes one Parquet file per (table, collection) partition. Writes go to a temporary
file in the same directory and are renamed into place, so a reader never sees half a table and a
killed run leaves no partial file behind; re-running a partition replaces its file whole, so rows
are never duplicated. Large bytes (media, images) live in a content-addressed blob store keyed by
sha256, so identical media are stored once and a table row only carries the digest.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from nft_pipeline.blobs import BlobStore

DATA_DIR_ENV = "NFT_PIPELINE_DATA"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def default_data_dir() -> Path:
    """The data directory: `$NFT_PIPELINE_DATA`, else `./data` (git-ignored)."""
    return Path(os.environ.get(DATA_DIR_ENV, "data")).resolve()


def safe_name(untrusted: str, max_len: int = 120) -> str:
    """A file-name-safe form of an untrusted string (slug, token id) that cannot escape a folder.

    Unsafe runs become `_`; a digest suffix keeps distinct inputs distinct when they collide or
    are cut to `max_len`.
    """
    cleaned = _SAFE_NAME.sub("_", untrusted).strip("._") or "_"
    if cleaned == untrusted and len(cleaned) <= max_len:
        return cleaned
    digest = hashlib.sha256(untrusted.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{cleaned[: max_len - 13]}-{digest}"


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(table: pa.Table, path: Path, schema: pa.Schema) -> Path:
    """Write `table` as Parquet at `path` atomically, cast to the table's declared `schema`."""
    if table.schema.metadata and not schema.metadata:
        schema = schema.with_metadata(table.schema.metadata)  # e.g. how a column was measured
    table = table.select(schema.names).cast(schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def read_table(path: Path, schema: pa.Schema) -> pa.Table:
    """Read a table written by `write_table`; a missing file is an empty table of `schema`."""
    if not path.exists():
        return schema.empty_table()
    return pq.read_table(path, schema=schema)


@dataclass(frozen=True)
class DataLayout:
    """The on-disk layout under one data directory.

    `tables/<table>/<collection>.parquet` for partitioned tables, `tables/<table>.parquet` for
    unpartitioned ones, `blobs/ab/<sha256>` for content-addressed bytes.
    """

    root: Path

    def table_dir(self, table: str) -> Path:
        return self.root / "tables" / table

    def partition_path(self, table: str, collection: str) -> Path:
        return self.table_dir(table) / f"{safe_name(collection)}.parquet"

    def table_path(self, table: str) -> Path:
        return self.root / "tables" / f"{table}.parquet"

    def journal_path(self, table: str, collection: str) -> Path:
        """Rows of a partition run in progress, so a killed run resumes where it stopped."""
        return self.root / "journals" / table / f"{safe_name(collection)}.jsonl"

    @property
    def blobs(self) -> BlobStore:
        return BlobStore(self.root / "blobs")

    def query(self, sql: str, params: list | None = None) -> pa.Table:
        """Run DuckDB SQL; `{table}` placeholders name a table, all its partitions (`{tokens}`)."""
        root = self.root / "tables"
        tables = {p.stem: f"read_parquet('{p}')" for p in root.glob("*.parquet")}
        tables.update({p.name: f"read_parquet('{p}/*.parquet')" for p in root.glob("*/") if any(p.glob("*.parquet"))})
        with duckdb.connect() as con:
            return con.sql(sql.format(**tables), params=params or None).to_arrow_table()
