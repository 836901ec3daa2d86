"""Where the pipeline keeps its tables and blobs, and how it writes them safely.

Every stage writes one Parquet file per (table, collection) partition. Writes are atomic (a
temporary file renamed into place on local disk, one complete upload on object storage; see
`nft_pipeline.location`), so a reader never sees half a table and a killed run leaves no partial
file behind; re-running a partition replaces its file whole, so rows are never duplicated. Large
bytes (media) live in a content-addressed blob store keyed by sha256, so identical media are
stored once and a table row only carries the digest.

The data root is a local directory (the default) or any fsspec URL (`s3://bucket/prefix`): tables,
blobs and standardized images live under it. What cannot live on object storage (download
journals and staging files, which are appended to and renamed) goes to a local `work_dir`.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nft_pipeline.blobs import BlobStore
from nft_pipeline.location import (
    Location,
    atomic_path,
    data_location,
    is_local,
    require_local,
    stored_path,
    write_bytes_atomic,
)

DATA_DIR_ENV = "NFT_PIPELINE_DATA"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def default_data_root() -> str:
    """The data root: `$NFT_PIPELINE_DATA` (a directory or an fsspec URL), else `./data` (git-ignored)."""
    root = os.environ.get(DATA_DIR_ENV, "data")
    return str(root) if "://" in root else str(Path(root).resolve())


def default_data_dir() -> Path:
    """The data root as a local directory, for the tools that read files on disk (CLI, search, web).

    A URL in `$NFT_PIPELINE_DATA` raises `LocalOnlyError` here rather than becoming a relative path.
    """
    return require_local(data_location(default_data_root()), "this command")


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


def write_table(table: pa.Table, path: Location, schema: pa.Schema) -> Location:
    """Write `table` as Parquet at `path` atomically, cast to the table's declared `schema`.

    On object storage the file is built in memory and uploaded in one call (a partition's table is
    megabytes, not gigabytes), so the object appears complete or not at all.
    """
    if table.schema.metadata and not schema.metadata:
        schema = schema.with_metadata(table.schema.metadata)  # e.g. how a column was measured
    table = table.select(schema.names).cast(schema)
    if is_local(path):
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, compression="zstd")
    else:
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression="zstd")
        write_bytes_atomic(path, buffer.getvalue().to_pybytes())
    return path


def read_table(path: Location, schema: pa.Schema) -> pa.Table:
    """Read a table written by `write_table`; a missing file is an empty table of `schema`."""
    if not path.exists():
        return schema.empty_table()
    if is_local(path):
        return pq.read_table(path, schema=schema)
    return pq.read_table(path.path, schema=schema, filesystem=path.fs)


@dataclass(frozen=True)
class DataLayout:
    """The layout under one data root, a local directory or an fsspec URL (see `data_location`).

    Under `location`: `tables/<table>/<collection>.parquet` for partitioned tables,
    `tables/<table>.parquet` for unpartitioned ones, `blobs/ab/<sha256>` for content-addressed
    bytes, `images/<collection>/<token>.png` for standardized images. Under `work_dir`, always
    local disk: download journals and staging (appended to and renamed, which object storage
    cannot do). `work_dir` is `location` itself when that is local, so a local root keeps
    everything in one directory; for a URL it defaults to a folder under the system temp dir.
    """

    location: Location
    work_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "location", data_location(self.location))
        if self.work_dir is None:
            work_dir = self.location if self.is_local else Path(tempfile.gettempdir()) / "nft-pipeline" / safe_name(str(self.location))
            object.__setattr__(self, "work_dir", work_dir)

    @property
    def is_local(self) -> bool:
        return is_local(self.location)

    @property
    def root(self) -> Path:
        """The data root as a local directory, for what keeps files on disk (models, reports, the index).

        Raises `LocalOnlyError` for a root on object storage, before such a step writes anything.
        """
        return require_local(self.location, "this step (training, the CVI report, the search index)")

    def table_dir(self, table: str) -> Location:
        return self.location / "tables" / table

    def partition_path(self, table: str, collection: str) -> Location:
        return self.table_dir(table) / f"{safe_name(collection)}.parquet"

    def table_path(self, table: str) -> Location:
        return self.location / "tables" / f"{table}.parquet"

    def journal_path(self, table: str, collection: str) -> Path:
        """Rows of a partition run in progress, so a killed run resumes where it stopped."""
        return self.work_dir / "journals" / table / f"{safe_name(collection)}.jsonl"

    @property
    def images_dir(self) -> Location:
        return self.location / "images"

    @property
    def blobs(self) -> BlobStore:
        return BlobStore(self.location / "blobs", staging=None if self.is_local else self.work_dir / "staging")

    def file(self, stored: str) -> Location:
        """A path kept in a table (`png_path`) as a readable path on this root's filesystem."""
        return stored_path(stored, self.location)

    def query(self, sql: str, params: list | None = None) -> pa.Table:
        """Run DuckDB SQL; `{table}` placeholders name a table, all its partitions (`{tokens}`).

        On object storage DuckDB reads through the root's fsspec filesystem, registered on the
        connection (its own `httpfs` extension would need a download and separate credentials).
        """
        import duckdb  # 20 MB of native code, and absent on training machines: loaded by the steps that query

        with duckdb.connect() as con:
            if not self.is_local:
                con.register_filesystem(self.location.fs)
            return con.sql(sql.format(**self._table_sources()), params=params or None).to_arrow_table()

    def _table_sources(self) -> dict[str, str]:
        """`read_parquet(...)` of each table: its one file, or a glob over its partition files."""
        root = self.location / "tables"
        if not root.exists():
            return {}
        sources: dict[str, str] = {}
        for path in root.iterdir():
            if path.name.endswith(".parquet"):
                sources.setdefault(path.name.removesuffix(".parquet"), _read_parquet(path))
            elif path.is_dir() and any(p.name.endswith(".parquet") for p in path.iterdir()):
                sources[path.name] = _read_parquet(path / "*.parquet")
        return sources


def _read_parquet(path: Location) -> str:
    quoted = str(path).replace("'", "''")
    return f"read_parquet('{quoted}')"
