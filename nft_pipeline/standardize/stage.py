"""The `standardized_images` stage over one collection: pick each token's source, reuse, standardize.

A token's source is its image if that downloaded, else its animation (a video-only token still
gets a frame). Tokens with neither get a `no_source` row that carries the download's reason. An
image whose source sha256 and settings fingerprint are unchanged, and whose PNG is still where
this run would write it, is not redone. Blobs and PNGs may be on object storage: the PNGs still
there are found with one listing of the collection's folder, not one request per token.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from nft_pipeline import schemas
from nft_pipeline.blobs import BlobStore
from nft_pipeline.location import Location
from nft_pipeline.standardize.model import StandardizeJob, StandardizeSettings, settings_fingerprint
from nft_pipeline.standardize.pool import collection_dir, output_path, standardize_many

SOURCE_ROLES = ("image", "animation")  # preference order


@dataclass
class StandardizeReport:
    rows: int = 0
    standardized: int = 0
    reused: int = 0
    seconds: float = 0.0
    status_counts: Counter = field(default_factory=Counter)
    source_types: Counter = field(default_factory=Counter)

    @property
    def images_per_second(self) -> float:
        return self.standardized / self.seconds if self.seconds else 0.0


def _sources(raw_media: pa.Table) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """token_id -> the preferred ok raw_media row, and token_id -> why a token has none."""
    best: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    for row in sorted(raw_media.to_pylist(), key=lambda r: SOURCE_ROLES.index(r["role"]) if r["role"] in SOURCE_ROLES else 9):
        token = row["token_id"]
        if token in best:
            continue
        if row["status"] == "ok" and row["sha256"]:
            best[token] = row
            missing.pop(token, None)
        else:
            missing.setdefault(token, f"{row['role']} {row['status']}: {row['error'] or ''}".strip())
    return best, missing


def standardize_collection(
    collection: str,
    raw_media: pa.Table,
    previous: pa.Table,
    blobs: BlobStore,
    images_dir: Location,
    settings: StandardizeSettings,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[pa.Table, StandardizeReport]:
    """The collection's `standardized_images` table (one row per token of `raw_media`)."""
    fingerprint = settings_fingerprint(settings)
    sources, missing = _sources(raw_media)
    folder = collection_dir(images_dir, collection)
    on_store = {str(p) for p in folder.iterdir()} if folder.exists() else set()
    kept = {
        r["token_id"]: r
        for r in previous.to_pylist()
        if r["status"] == "ok"
        and r["settings_fingerprint"] == fingerprint
        and r["token_id"] in sources
        and r["source_sha256"] == sources[r["token_id"]]["sha256"]
        and r["png_path"] == str(output_path(images_dir, collection, r["token_id"]))
        and r["png_path"] in on_store
    }
    report = StandardizeReport(reused=len(kept))
    rows: list[dict[str, Any]] = list(kept.values())
    rows += [
        {"collection": collection, "token_id": t, "settings_fingerprint": fingerprint, "status": "no_source", "error": why}
        for t, why in missing.items()
    ]
    jobs = [
        StandardizeJob(collection, token, blobs.path_of(row["sha256"]))
        for token, row in sources.items()
        if token not in kept
    ]
    started = time.perf_counter()
    for n, outcome in enumerate(standardize_many(jobs, settings, images_dir, workers=workers), start=1):
        rows.append({**outcome.as_dict(), "settings_fingerprint": fingerprint})
        if on_progress is not None:
            on_progress(report.reused + n)
    report.seconds = time.perf_counter() - started
    report.standardized = len(jobs)
    rows.sort(key=lambda r: (len(r["token_id"]), r["token_id"]))
    table = pa.Table.from_pylist(rows, schema=schemas.STANDARDIZED_IMAGES)
    report.rows = table.num_rows
    report.status_counts.update(table.column("status").to_pylist())
    report.source_types.update(t for t in table.column("source_type").to_pylist() if t)
    return table, report
