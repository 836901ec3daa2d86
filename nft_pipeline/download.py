"""Download token media into the content-addressed blob store, one result row per token and URL.

The hostile part of the pipeline: every body is fetched through the `GuardedHttpClient` (limits,
timeouts, retries, byte caps, address checks), streamed to a staging file, sniffed from its magic
bytes (the declared Content-Type is recorded, never trusted) and moved into `blobs/` under its
sha256, so identical media are stored once.

Incremental and resumable: a (token, role, url) already stored is not fetched again; each finished
row is appended to a journal as it completes, so a run killed half-way and restarted fetches only
what is missing; staging files of a killed run are swept. Failed rows are kept as they are unless
`retry_failed` asks for another try.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from nft_pipeline import schemas, sniff
from nft_pipeline.http_client import FetchResult, GuardedHttpClient, HttpLimits
from nft_pipeline.storage import BlobStore

ROLES = ("image", "animation")


@dataclass(frozen=True)
class DownloadSettings:
    """What to fetch and what to accept."""

    max_image_bytes: int = 50 * 1024 * 1024
    max_animation_bytes: int = 200 * 1024 * 1024
    allowed_types: tuple[str, ...] = sniff.MEDIA_TYPES
    fetch_animations: bool = True
    retry_failed: bool = False
    workers: int = 256  # concurrent fetch tasks; the HTTP limits cap requests in flight

    def max_bytes(self, role: str) -> int:
        return self.max_animation_bytes if role == "animation" else self.max_image_bytes


@dataclass(frozen=True)
class MediaJob:
    collection: str
    token_id: str
    role: str
    url: str | None


@dataclass
class MediaRow:
    """One row of the `raw_media` table (see `schemas.RAW_MEDIA`)."""

    collection: str
    token_id: str
    role: str
    url: str | None
    status: str
    fetched_at: datetime
    resolved_url: str | None = None
    http_status: int | None = None
    declared_type: str | None = None
    sniffed_type: str | None = None
    bytes: int = 0
    sha256: str | None = None
    attempts: int = 0
    error: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.token_id, self.role


@dataclass
class DownloadReport:
    rows: int = 0
    fetched: int = 0
    reused: int = 0
    bytes_fetched: int = 0
    seconds: float = 0.0
    status_counts: Counter = field(default_factory=Counter)
    top_errors: Counter = field(default_factory=Counter)

    @property
    def files_per_second(self) -> float:
        return self.fetched / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "fetched": self.fetched,
            "reused": self.reused,
            "bytes_fetched": self.bytes_fetched,
            "seconds": round(self.seconds, 3),
            "files_per_second": round(self.files_per_second, 1),
            "status_counts": dict(sorted(self.status_counts.items())),
            "top_errors": dict(self.top_errors.most_common(5)),
        }


def media_jobs(tokens: pa.Table, settings: DownloadSettings) -> list[MediaJob]:
    """One job per token for its image, plus one for its animation where it has one."""
    jobs = []
    for row in tokens.select(["collection", "token_id", "image_uri", "animation_uri"]).to_pylist():
        jobs.append(MediaJob(row["collection"], row["token_id"], "image", row["image_uri"]))
        if settings.fetch_animations and row["animation_uri"]:
            jobs.append(MediaJob(row["collection"], row["token_id"], "animation", row["animation_uri"]))
    return jobs


def _row_from_fetch(job: MediaJob, result: FetchResult, now: datetime) -> MediaRow:
    return MediaRow(
        collection=job.collection,
        token_id=job.token_id,
        role=job.role,
        url=job.url,
        status=str(result.status),
        fetched_at=now,
        resolved_url=result.resolved_url,
        http_status=result.http_status,
        declared_type=result.declared_type,
        bytes=result.n_bytes,
        attempts=result.attempts,
        error=result.error,
    )


class MediaDownloader:
    """Fetches the media of one collection's tokens into a blob store, resumably."""

    def __init__(self, blobs: BlobStore, journal: Path, settings: DownloadSettings) -> None:
        self.blobs = blobs
        self.journal = journal
        self.settings = settings

    def _journal_rows(self) -> Iterator[MediaRow]:
        if not self.journal.exists():
            return
        with self.journal.open(encoding="utf-8") as f:
            for line in f:
                try:
                    data = json.loads(line)
                    data["fetched_at"] = datetime.fromisoformat(data["fetched_at"])
                    yield MediaRow(**data)
                except (ValueError, TypeError, KeyError):
                    continue  # a line cut by a kill mid-write

    def _reusable(self, previous: MediaRow | None, job: MediaJob) -> bool:
        if previous is None or previous.url != job.url:
            return False
        if previous.status == "ok":
            return previous.sha256 is not None and self.blobs.has(previous.sha256)
        return not self.settings.retry_failed

    def _sweep_staging(self) -> Path:
        staging = self.blobs.staging_dir()
        for stale in staging.glob(f"{self.journal.stem}-*"):
            stale.unlink(missing_ok=True)
        return staging

    async def _fetch(self, http: GuardedHttpClient, job: MediaJob, staging: Path) -> MediaRow:
        now = datetime.now(UTC)
        if not job.url:
            return MediaRow(job.collection, job.token_id, job.role, job.url, "no_uri", now, error="token has no media URI")
        staged = staging / f"{self.journal.stem}-{uuid.uuid4().hex}"
        result = await http.fetch_uri(job.url, self.settings.max_bytes(job.role), dest=staged)
        row = _row_from_fetch(job, result, now)
        if not result.ok:
            return row
        row.sniffed_type = sniff.sniff_media_type(result.head)
        if row.sniffed_type == sniff.EMPTY:
            row.status, row.error = "empty", "empty body"
        elif row.sniffed_type not in self.settings.allowed_types:
            row.status = "bad_mime"
            row.error = f"body is {row.sniffed_type} (declared {row.declared_type or 'nothing'})"
        elif sniff.looks_truncated(row.sniffed_type, result.tail):
            row.status = "truncated"
            row.error = f"{row.sniffed_type} body ends without its trailer after {row.bytes} bytes"
        if row.status != "ok":
            staged.unlink(missing_ok=True)
            return row
        row.sha256 = self.blobs.put_file(staged, result.sha256 or "")
        return row

    def run(
        self,
        jobs: Iterable[MediaJob],
        previous: Iterable[MediaRow],
        limits: HttpLimits,
        on_row: Callable[[MediaRow, bool], None] | None = None,
    ) -> tuple[list[MediaRow], DownloadReport]:
        """Download what is missing; returns every job's row (reused or fetched) and a report."""
        known = {r.key: r for r in previous}
        known.update({r.key: r for r in self._journal_rows()})
        report = DownloadReport()
        rows: list[MediaRow] = []
        todo: list[MediaJob] = []
        for job in jobs:
            prev = known.get((job.token_id, job.role))
            if self._reusable(prev, job):
                rows.append(prev)
                report.reused += 1
                if on_row is not None:
                    on_row(prev, False)
            else:
                todo.append(job)
        started = time.perf_counter()
        rows.extend(asyncio.run(self._fetch_all(todo, limits, report, on_row)))
        report.seconds = time.perf_counter() - started
        rows.sort(key=lambda r: (len(r.token_id), r.token_id, r.role))
        report.rows = len(rows)
        report.status_counts.update(r.status for r in rows)
        report.top_errors.update(f"{r.status}: {(r.error or '')[:80]}" for r in rows if r.status != "ok")
        return rows, report

    async def _fetch_all(
        self,
        todo: list[MediaJob],
        limits: HttpLimits,
        report: DownloadReport,
        on_row: Callable[[MediaRow, bool], None] | None,
    ) -> list[MediaRow]:
        staging = self._sweep_staging()
        queue: asyncio.Queue[MediaJob] = asyncio.Queue()
        for job in todo:
            queue.put_nowait(job)
        done: list[MediaRow] = []
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with self.journal.open("a", encoding="utf-8") as journal:
            async with GuardedHttpClient(limits) as http:

                async def worker() -> None:
                    while not queue.empty():
                        job = queue.get_nowait()
                        row = await self._fetch(http, job, staging)
                        journal.write(json.dumps(asdict(row), default=str) + "\n")
                        if len(done) % 64 == 0:
                            journal.flush()  # a kill loses at most a few rows' worth of refetching
                        done.append(row)
                        report.fetched += 1
                        report.bytes_fetched += row.bytes
                        if on_row is not None:
                            on_row(row, True)

                n_workers = max(1, min(self.settings.workers, len(todo)))
                await asyncio.gather(*(worker() for _ in range(n_workers)))
                journal.flush()
                os.fsync(journal.fileno())
        return done

    def finish(self) -> None:
        """Forget the journal once the table that holds its rows is written."""
        self.journal.unlink(missing_ok=True)


def rows_to_table(rows: list[MediaRow]) -> pa.Table:
    return pa.Table.from_pylist([asdict(r) for r in rows], schema=schemas.RAW_MEDIA)


def rows_from_table(table: pa.Table) -> list[MediaRow]:
    return [MediaRow(**row) for row in table.to_pylist()]
