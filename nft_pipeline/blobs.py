"""The content-addressed blob store: media by sha256, each stored once.

On a local directory (the default, and the downloader's hot path) blobs are written with plain
`os` calls and renamed into place; on object storage (`root` a `UPath`, see
`nft_pipeline.location`) each blob is one complete upload, atomic by nature. Content addressing
makes either idempotent: two writers of one digest write the same bytes.

Kept free of heavy imports (no pyarrow, no duckdb): download worker processes import it.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import BinaryIO

from nft_pipeline.location import LocalOnlyError, Location, is_local, write_bytes_atomic


class BlobStore:
    """Content-addressed bytes: `blobs/ab/abcdef...` by sha256, written once, atomically.

    Downloads are staged on local disk before they are stored: `staging` defaults to
    `root/.staging` for a local store (the same disk, so storing is a rename) and must be given
    for a store on object storage.
    """

    def __init__(self, root: Location, staging: Path | None = None) -> None:
        self.root = root
        self._root = str(root)
        self._shards: set[str] = set()
        self._staging = root / ".staging" if staging is None and is_local(root) else staging

    def path_of(self, sha256: str) -> Location:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_of(sha256).exists()

    def put_bytes(self, data: bytes, sha256: str | None = None) -> str:
        """Store `data` (its digest may be passed when already known) and return its sha256.

        Locally the downloader's hot path (one call per file): plain `os` calls, shard folders
        created once, a temp name unique per process and thread, then an atomic rename.
        """
        sha = sha256 or hashlib.sha256(data).hexdigest()
        if not is_local(self.root):
            if not self.has(sha):
                write_bytes_atomic(self.path_of(sha), data)
            return sha
        shard = f"{self._root}/{sha[:2]}"
        target = f"{shard}/{sha}"
        if os.path.exists(target):
            return sha
        if shard not in self._shards:
            self.path_of(sha)  # validates the digest once per shard
            os.makedirs(shard, exist_ok=True)
            self._shards.add(shard)
        tmp = f"{target}.{os.getpid()}-{threading.get_ident()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)
        return sha

    def put_file(self, staged: Path, sha256: str) -> str:
        """Move an already-hashed staged file into the store (a no-op if the blob exists)."""
        target = self.path_of(sha256)
        if target.exists():
            staged.unlink(missing_ok=True)
        elif is_local(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
        else:  # one upload; S3 shows a multipart upload of a large file only once it completes
            target.fs.put_file(str(staged), target.path)
            staged.unlink()
        return sha256

    def open(self, sha256: str) -> BinaryIO:
        return self.path_of(sha256).open("rb")

    def staging_dir(self) -> Path:
        if self._staging is None:
            raise LocalOnlyError(f"the blob store {self.root} is on object storage and was given no local staging directory")
        self._staging.mkdir(parents=True, exist_ok=True)
        return self._staging
