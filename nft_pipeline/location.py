"""Where data lives: a local directory (the default and the fast path) or any fsspec URL.

A location is a plain `pathlib.Path` when local and a `UPath` (universal-pathlib) on an fsspec
filesystem otherwise (`s3://bucket/prefix`, `gs://...`, `memory://...`). Both speak the same path
API for reading (`/`, `exists`, `open`, `read_bytes`, `stat`, `iterdir`, `unlink`), so readers do
not branch. Writers do, because what makes a write atomic differs:

- local disk: write a temporary file beside the target, then rename it into place;
- object storage has no rename, but an object becomes visible only once its upload is complete
  (one PUT; for large files S3's multipart upload appears at CompleteMultipartUpload), so the
  finished bytes are uploaded in one call.

Either way a reader sees the old file or the new one, never half of one, and a killed writer
leaves nothing behind. Kept light (universal-pathlib is imported only for URLs): the download
worker processes import this module.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from upath import UPath

Location: TypeAlias = "Path | UPath"

_LOCAL_PROTOCOLS = ("", "file", "local")


class LocalOnlyError(RuntimeError):
    """A step that needs files on a local (or shared) disk was given a location on object storage."""


def data_location(root: str | os.PathLike, storage_options: Mapping[str, Any] | None = None) -> Location:
    """`root` as a local `Path`, or as a `UPath` carrying `storage_options` for a remote URL.

    `file://` URLs become plain paths, so everything local takes the same (fast) code path.
    """
    if isinstance(root, Path) or "://" not in str(root):
        return Path(root)
    from upath import UPath

    path = UPath(root, **dict(storage_options or {}))
    return Path(path.path) if path.protocol in _LOCAL_PROTOCOLS else path


def is_local(path: Location) -> bool:
    return isinstance(path, Path)


def require_local(path: Location, needed_by: str) -> Path:
    """`path` if it is local; else a `LocalOnlyError` that says what needs local files and where to look."""
    if is_local(path):
        return path
    raise LocalOnlyError(
        f"{needed_by} needs a local (or shared-volume) data directory, but the data root {path} is on "
        "object storage; only tables, blobs and standardized images can live there (docs/deploy.md, Object storage)"
    )


def stored_path(stored: str, like: Location) -> Location:
    """A path string kept in a table (e.g. `png_path`) as a path on `like`'s filesystem, with its credentials."""
    if is_local(like):
        return Path(stored)
    return type(like)(stored, **like.storage_options)


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


def write_bytes_atomic(target: Location, data: bytes) -> None:
    """Put `data` at `target` whole: temp file + rename on disk, one upload on object storage."""
    if is_local(target):
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    else:
        target.fs.pipe_file(target.path, data)


def total_bytes(directory: Location) -> int:
    """Bytes of the files under `directory` (0 if it is absent); one listing on object storage, not a request per file."""
    if not directory.exists():
        return 0
    if is_local(directory):
        return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    return directory.fs.du(directory.path)
