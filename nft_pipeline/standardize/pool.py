"""`standardize_many`: standardize a collection's images on every core, surviving dying workers.

Overheads are kept off the parent: jobs travel in chunks (one pickle round trip per chunk, not
per image), a job names its blob by path so the worker reads the bytes itself, and the worker
writes the PNG itself (atomically: temporary file + rename on disk, one upload on object storage,
so a reader never sees half a PNG) and sends back only the small row. Blob and output paths may
be `UPath`s on object storage; they carry their filesystem's options into the worker. At most
`INFLIGHT_PER_WORKER` chunks per worker are queued, so a lazy job iterator of any length is
consumed as the pool frees up, and results stream back in completion order (each outcome names
its collection and token).

Limits inside a worker: a wall-clock alarm raises `TimeLimitExceeded` between Python steps
(between frames, between decoder reads, during a blocking read) and becomes a `timeout` row; a
CPU-time alarm at `HARD_LIMIT_FACTOR` times the limit kills the worker outright when it is stuck
inside one native call where Python cannot raise. Workers are started from a fork server, not
forked from a parent that may run threads (Dagster's does).

A worker that dies (segfault, abort, the hard limit) breaks a `ProcessPoolExecutor` and fails
every chunk in flight. The jobs of those chunks are re-run one at a time in a fresh one-worker
pool: the ones that succeed give their rows, the one that kills that worker again is recorded as
`worker_crash`, and the remaining jobs continue on a fresh full pool.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import replace
from itertools import chain, islice
from types import FrameType

from nft_pipeline.cpus import usable_cpus
from nft_pipeline.location import Location, write_bytes_atomic
from nft_pipeline.standardize.core import standardize_image
from nft_pipeline.standardize.model import (
    ImageRow,
    Rejected,
    StandardizedImage,
    StandardizeJob,
    StandardizeOutcome,
    StandardizeSettings,
    Status,
    TimeLimitExceeded,
)
from nft_pipeline.storage import safe_name

DEFAULT_CHUNK_SIZE = 16
INFLIGHT_PER_WORKER = 2
HARD_LIMIT_FACTOR = 2.0


def collection_dir(out_dir: Location, collection: str) -> Location:
    """The folder of one collection's PNGs: `out_dir/<safe collection>`."""
    return out_dir / safe_name(collection)


def output_path(out_dir: Location, collection: str, token_id: str) -> Location:
    """Where a token's standard PNG lives: `out_dir/<safe collection>/<safe token id>.png`."""
    return collection_dir(out_dir, collection) / f"{safe_name(token_id)}.png"


def standardize_many(
    jobs: Iterable[StandardizeJob],
    settings: StandardizeSettings,
    out_dir: Location,
    workers: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[StandardizeOutcome]:
    """One outcome per job, in completion order, PNGs written under `out_dir` (see `output_path`).

    A failed job has no PNG: any file left at its path by an earlier run is removed, so the
    directory always matches the rows.
    """
    workers = workers or usable_cpus()
    chunks = _chunked(iter(jobs), chunk_size)
    first = next(chunks, None)
    if first is None:  # nothing to do (every image reused): start no pool
        return
    chunks = chain([first], chunks)
    while True:
        suspects = yield from _run_pool(chunks, settings, out_dir, workers)
        if not suspects:
            return
        yield from _isolate(suspects, settings, out_dir)


def _chunked(jobs: Iterator[StandardizeJob], size: int) -> Iterator[list[StandardizeJob]]:
    while chunk := list(islice(jobs, size)):
        yield chunk


def _new_pool(workers: int) -> ProcessPoolExecutor:
    """A started pool; a pool whose workers cannot even start is an environment error, raised.

    Without the check, workers that die on start-up (an unimportable `__main__`, say) would be
    blamed on each job in turn and every row would read `worker_crash`.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
    try:
        pool.submit(os.getpid).result()
    except (BrokenProcessPool, OSError) as exc:
        pool.shutdown(wait=True, cancel_futures=True)
        raise RuntimeError("standardization worker processes cannot start") from exc
    return pool


def _run_pool(
    chunks: Iterator[list[StandardizeJob]], settings: StandardizeSettings, out_dir: Location, workers: int
) -> Generator[StandardizeOutcome, None, list[StandardizeJob]]:
    """Run chunks until they run out (returns []) or a worker dies (returns the unfinished jobs)."""
    pool = _new_pool(workers)
    inflight: dict[Future[list[StandardizeOutcome]], list[StandardizeJob]] = {}
    unfinished: list[StandardizeJob] = []
    try:
        while not unfinished:
            while len(inflight) < workers * INFLIGHT_PER_WORKER and (chunk := next(chunks, None)):
                try:
                    inflight[pool.submit(_work, chunk, settings, out_dir)] = chunk
                except (BrokenProcessPool, OSError):  # OSError: it broke while starting a worker
                    unfinished.extend(chunk)
                    break
            if not inflight:
                return unfinished
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for future in done:
                chunk = inflight.pop(future)
                if future.exception() is None:
                    yield from future.result()
                elif isinstance(future.exception(), BrokenProcessPool):
                    unfinished.extend(chunk)
                else:
                    raise future.exception()  # a bug in our code, not a bad input: surface it
        for future, chunk in inflight.items():  # a broken pool fails every pending future
            if future.exception() is None:
                yield from future.result()
            else:
                unfinished.extend(chunk)
        return unfinished
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _isolate(
    suspects: list[StandardizeJob], settings: StandardizeSettings, out_dir: Location
) -> Iterator[StandardizeOutcome]:
    """Re-run the jobs in flight when a worker died, one at a time, to find the one that kills it."""
    pool: ProcessPoolExecutor | None = None
    try:
        for job in suspects:
            pool = pool or _new_pool(1)
            try:
                yield from pool.submit(_work, [job], settings, out_dir).result()
            except (BrokenProcessPool, OSError):
                pool.shutdown(wait=True)
                pool = None
                yield _crashed(job, settings)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _crashed(job: StandardizeJob, settings: StandardizeSettings) -> StandardizeOutcome:
    try:
        data = job.source if isinstance(job.source, bytes) else job.source.read_bytes()
        source_sha256 = hashlib.sha256(data).hexdigest()
    except OSError:
        source_sha256 = None
    reason = (
        "the worker process died twice on this input "
        f"(a native crash, or stuck past the hard limit of {settings.timeout_s * HARD_LIMIT_FACTOR:g} CPU s)"
    )
    row = ImageRow(status=Status.WORKER_CRASH, error=reason, source_sha256=source_sha256)
    return StandardizeOutcome(job.collection, job.token_id, row)


def _init_worker() -> None:
    signal.signal(signal.SIGVTALRM, signal.SIG_DFL)  # the hard limit: terminate the process


def _work(chunk: list[StandardizeJob], settings: StandardizeSettings, out_dir: Location) -> list[StandardizeOutcome]:
    return [_work_one(job, settings, out_dir) for job in chunk]


def _work_one(job: StandardizeJob, settings: StandardizeSettings, out_dir: Location) -> StandardizeOutcome:
    """Read, standardize and write one job in the worker; every failure becomes the row's status."""
    try:
        with _time_limit(settings.timeout_s):
            result = standardize_image(_read_source(job.source, settings), settings, job.seed_key)
    except TimeLimitExceeded:
        result = StandardizedImage(ImageRow(status=Status.TIMEOUT, error=f"over {settings.timeout_s} s"))
    except Rejected as exc:
        result = StandardizedImage(ImageRow(status=exc.status, error=exc.reason))
    except OSError as exc:
        result = StandardizedImage(ImageRow(status=Status.READ_ERROR, error=f"{type(exc).__name__}: {exc}"))
    return StandardizeOutcome(
        job.collection, job.token_id, _write(result, output_path(out_dir, job.collection, job.token_id))
    )


def _read_source(source: Location | bytes, settings: StandardizeSettings) -> bytes:
    if isinstance(source, bytes):
        return source
    size = source.stat().st_size
    if size > settings.max_source_bytes:
        raise Rejected(Status.TOO_LARGE, f"{size} bytes exceed {settings.max_source_bytes}")
    return source.read_bytes()


def _write(result: StandardizedImage, target: Location) -> ImageRow:
    """Put the PNG at `target` atomically (or remove a stale one) and return the row with its path."""
    try:
        if result.png is None:
            target.unlink(missing_ok=True)
            return result.row
        write_bytes_atomic(target, result.png)
        return replace(result.row, png_path=str(target))
    except OSError as exc:
        return replace(result.row, status=Status.WRITE_ERROR, error=f"{type(exc).__name__}: {exc}", png_sha256=None)


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise `TimeLimitExceeded` after `seconds` of wall time; die after the hard CPU limit."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise TimeLimitExceeded

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds * HARD_LIMIT_FACTOR)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGALRM, previous)
