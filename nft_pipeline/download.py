"""Download token media into the content-addressed blob store, one result row per token and URL.

The hostile part of the pipeline: every body is fetched through the `GuardedHttpClient` (limits,
timeouts, retries, byte caps, address checks), streamed to a staging file, sniffed from its magic
bytes (the declared Content-Type is recorded, never trusted) and moved into `blobs/` under its
sha256, so identical media are stored once. The blob store may be on object storage; staging
files and the journal are always on local disk.

Incremental and resumable: a (token, role, url) already stored is not fetched again; each finished
row is appended to a journal as it completes, so a run killed half-way and restarted fetches only
what is missing; staging files of a killed run are swept. Failed rows are kept as they are unless
`retry_failed` asks for another try.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nft_pipeline import sniff
from nft_pipeline.blobs import BlobStore
from nft_pipeline.cpus import usable_cpus
from nft_pipeline.http_client import (
    FetchResult,
    GuardedHttpClient,
    HttpLimits,
    run_event_loop,
)
from nft_pipeline.uris import substitute_token_id

if TYPE_CHECKING:  # imported lazily: download child processes never need pyarrow or duckdb (~70 MB)
    import pyarrow as pa

    from nft_pipeline.storage import DataLayout



@dataclass(frozen=True)
class DownloadSettings:
    """What to fetch and what to accept."""

    max_image_bytes: int = 50 * 1024 * 1024
    max_animation_bytes: int = 200 * 1024 * 1024
    allowed_types: tuple[str, ...] = sniff.MEDIA_TYPES
    fetch_animations: bool = True
    retry_failed: bool = False
    workers: int = 256  # concurrent fetch tasks per process; the HTTP limits cap requests in flight
    processes: int = usable_cpus()  # download processes for large jobs (one event loop each); the cgroup quota counts
    min_jobs_per_process: int = 5000  # below this a process costs more (spawn, imports) than it saves

    def max_bytes(self, role: str) -> int:
        return self.max_animation_bytes if role == "animation" else self.max_image_bytes


# The source's copies of an image, tried in this order once the original URI and its gateways failed.
FALLBACK_COLUMNS = ("alchemy_cached_url", "alchemy_png_url")
ORIGINAL = "original"


@dataclass(frozen=True, slots=True)
class MediaJob:
    collection: str
    token_id: str
    role: str
    url: str | None
    # (served_by, url) pairs tried in order when `url` fails (the source's cached copies; images only).
    fallbacks: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
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
    served_by: str | None = None  # which source the stored bytes came from (`ORIGINAL` or a fallback's name)

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
    """One job per token for its image, plus one for its animation where it has one.

    ERC-1155 `{id}` placeholders in the URIs are filled in (`uris.substitute_token_id`); the image
    carries the source's cached copies as fallbacks (`FALLBACK_COLUMNS`).
    """
    jobs = []
    for row in tokens.select(["collection", "token_id", "image_uri", "animation_uri", *FALLBACK_COLUMNS]).to_pylist():
        token_id = row["token_id"]
        image = substitute_token_id(row["image_uri"], token_id) if row["image_uri"] else None
        fallbacks = tuple((column.removesuffix("_url"), row[column]) for column in FALLBACK_COLUMNS if row[column])
        jobs.append(MediaJob(row["collection"], token_id, "image", image, fallbacks))
        if settings.fetch_animations and row["animation_uri"]:
            jobs.append(MediaJob(row["collection"], token_id, "animation", substitute_token_id(row["animation_uri"], token_id)))
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
        self._staged_names = itertools.count()

    def _journal_paths(self) -> list[Path]:
        """The run journal and its per-process shards (`<stem>.jsonl`, `<stem>.<i>.jsonl`)."""
        return sorted(self.journal.parent.glob(f"{self.journal.stem}*.jsonl"))

    def _journal_rows(self) -> Iterator[MediaRow]:
        for path in self._journal_paths():
            with path.open(encoding="utf-8") as f:
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

    async def _fetch(self, http: GuardedHttpClient, job: MediaJob, staging: Path) -> MediaRow:
        """The original URI (and its gateways), then each fallback in turn until one gives good bytes.

        The row of a fallback that served keeps the original `url` and says where the bytes came
        from (`served_by`, `resolved_url`) and why the original failed (`error`); when every one
        fails, the row is the original's failure.
        """
        now = datetime.now(UTC)
        if job.url:
            row = await self._fetch_one(http, job, job.url, ORIGINAL, staging, now)
        else:
            row = MediaRow(job.collection, job.token_id, job.role, job.url, "no_uri", now, error="token has no media URI")
        for served_by, url in job.fallbacks if row.status != "ok" else ():
            fallback = await self._fetch_one(http, job, url, served_by, staging, now)
            if fallback.status == "ok":
                fallback.error = f"{row.status} from the original: {row.error}"
                fallback.attempts += row.attempts
                return fallback
        return row

    async def _fetch_one(
        self, http: GuardedHttpClient, job: MediaJob, url: str, served_by: str, staging: Path, now: datetime
    ) -> MediaRow:
        staged = staging / f"{self.journal.stem}-{os.getpid()}-{next(self._staged_names)}"
        result = await http.fetch_uri(url, self.settings.max_bytes(job.role), dest=staged)
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
        if result.body is not None:
            row.sha256 = self.blobs.put_bytes(result.body, result.sha256)
        else:
            row.sha256 = self.blobs.put_file(staged, result.sha256 or "")
        row.served_by = served_by
        return row

    def run(
        self,
        jobs: Iterable[MediaJob],
        previous: Iterable[MediaRow],
        limits: HttpLimits,
        on_progress: Callable[[int], None] | None = None,
    ) -> tuple[list[MediaRow], DownloadReport]:
        """Download what is missing; returns every job's row (reused or fetched) and a report.

        `on_progress(n)` is called as rows complete with the number done so far (reused first).
        """
        known = {r.key: r for r in previous}
        known.update({r.key: r for r in self._journal_rows()})
        report = DownloadReport()
        rows: list[MediaRow] = []
        todo: list[MediaJob] = []
        for job in jobs:
            prev = known.get((job.token_id, job.role))
            if self._reusable(prev, job):
                rows.append(prev)
            else:
                todo.append(job)
        report.reused = len(rows)
        progress = (lambda n: on_progress(report.reused + n)) if on_progress else (lambda n: None)
        progress(0)
        started = time.perf_counter()
        processes = min(self.settings.processes, max(1, len(todo) // self.settings.min_jobs_per_process))
        if processes > 1:
            fetched = self._fetch_in_processes(todo, limits, processes, progress)
        else:
            fetched = run_event_loop(self._fetch_all(todo, limits, self.journal, progress))
        report.seconds = time.perf_counter() - started
        rows.extend(fetched)
        rows.sort(key=lambda r: (len(r.token_id), r.token_id, r.role))
        report.fetched = len(fetched)
        report.bytes_fetched = sum(r.bytes for r in fetched)
        report.rows = len(rows)
        report.status_counts.update(r.status for r in rows)
        report.top_errors.update(f"{r.status}: {(r.error or '')[:80]}" for r in rows if r.status != "ok")
        return rows, report

    def _fetch_in_processes(
        self, todo: list[MediaJob], limits: HttpLimits, processes: int, progress: Callable[[int], None]
    ) -> list[MediaRow]:
        """Shard the jobs over processes (one event loop each), so fetching uses every core.

        `spawn` keeps children safe from the parent's threads (Dagster, the gateway in tests);
        children count finished rows in a shared counter that the parent polls for progress.
        """
        context = multiprocessing.get_context("spawn")
        done = context.Value("q", 0)
        shards = [todo[i::processes] for i in range(processes)]
        limits = replace(  # the limits are global: each process gets its share
            limits,
            max_in_flight=max(1, limits.max_in_flight // processes),
            max_per_host=max(1, limits.max_per_host // processes),
        )
        journals = [self.journal.with_name(f"{self.journal.stem}.{i}.jsonl") for i in range(processes)]
        with ProcessPoolExecutor(processes, mp_context=context, initializer=_share_counter, initargs=(done,)) as pool:
            futures = [
                pool.submit(_fetch_shard, self.blobs, journal, self.settings, limits, shard)
                for journal, shard in zip(journals, shards)
            ]
            while not all(f.done() for f in futures):
                wait(futures, timeout=0.5)
                progress(done.value)
            return [row for future in futures for row in future.result()]

    async def _fetch_all(
        self, todo: list[MediaJob], limits: HttpLimits, journal_path: Path, progress: Callable[[int], None]
    ) -> list[MediaRow]:
        staging = self.blobs.staging_dir()
        for stale in staging.glob(f"{self.journal.stem}-*"):  # left by a killed run
            stale.unlink(missing_ok=True)
        pending = iter(todo)
        done: list[MediaRow] = []
        journal_path.parent.mkdir(parents=True, exist_ok=True)
        with journal_path.open("a", encoding="utf-8") as journal:
            async with GuardedHttpClient(limits) as http:

                async def worker() -> None:
                    for job in pending:  # a shared iterator: each job is taken once
                        row = await self._fetch(http, job, staging)
                        journal.write(json.dumps(asdict_shallow(row), default=str) + "\n")
                        done.append(row)
                        if len(done) % 64 == 0:
                            journal.flush()  # a kill loses at most a few rows' worth of refetching
                            progress(len(done))

                await asyncio.gather(*(worker() for _ in range(max(1, min(self.settings.workers, len(todo))))))
                journal.flush()
                os.fsync(journal.fileno())
        progress(len(done))
        return done

    def finish(self) -> None:
        """Forget the journals once the table that holds their rows is written."""
        for path in self._journal_paths():
            path.unlink(missing_ok=True)


_shared_done: Synchronized | None = None


def _share_counter(counter: Synchronized) -> None:
    global _shared_done
    _shared_done = counter


def _fetch_shard(
    blobs: BlobStore, journal: Path, settings: DownloadSettings, limits: HttpLimits, jobs: list[MediaJob]
) -> list[MediaRow]:
    """One process's share of a download (runs in a child process)."""
    downloader = MediaDownloader(blobs, journal, settings)
    reported = 0

    def progress(n: int) -> None:
        nonlocal reported
        if _shared_done is not None:
            with _shared_done.get_lock():
                _shared_done.value += n - reported
        reported = n

    return run_event_loop(downloader._fetch_all(jobs, limits, journal, progress))


def asdict_shallow(row: MediaRow) -> dict[str, Any]:
    """A row's fields as a dict (`dataclasses.asdict` deep-copies: too slow per file)."""
    return {name: getattr(row, name) for name in MediaRow.__slots__}


def rows_to_table(rows: list[MediaRow]) -> pa.Table:
    import pyarrow as pa

    from nft_pipeline import schemas

    return pa.Table.from_pylist([asdict_shallow(r) for r in rows], schema=schemas.RAW_MEDIA)


def rows_from_table(table: pa.Table) -> list[MediaRow]:
    return [MediaRow(**row) for row in table.to_pylist()]


def download_collection_media(
    layout: DataLayout,
    collection: str,
    settings: DownloadSettings,
    limits: HttpLimits,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[pa.Table, DownloadReport]:
    """The `raw_media` stage for one collection: read its tokens, fetch what is missing, write the table.

    `on_progress(done, total)` reports rows as they complete (the Dagster log or a CLI progress bar).
    """
    from nft_pipeline import schemas
    from nft_pipeline.storage import read_table, write_table

    path = layout.partition_path("raw_media", collection)
    jobs = media_jobs(read_table(layout.partition_path("tokens", collection), schemas.TOKENS), settings)
    downloader = MediaDownloader(layout.blobs, layout.journal_path("raw_media", collection), settings)
    previous = rows_from_table(read_table(path, schemas.RAW_MEDIA))
    progress = (lambda done: on_progress(done, len(jobs))) if on_progress else None
    rows, report = downloader.run(jobs, previous, limits, progress)
    table = rows_to_table(rows)
    write_table(table, path, schemas.RAW_MEDIA)
    downloader.finish()
    return table, report
