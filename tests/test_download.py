"""The downloader against a hostile server: every bad input ends as one row with the right status."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import pytest

from nft_pipeline.blobs import BlobStore
from nft_pipeline.download import DownloadSettings, MediaDownloader, MediaJob, MediaRow
from nft_pipeline.http_client import HttpLimits
from tests.hostile_server import JPEG, PNG, running_hostile_servers

CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


@pytest.fixture(scope="module")
def hostile():
    with running_hostile_servers() as servers:
        yield servers


def limits_for(base: str, **overrides) -> HttpLimits:
    settings = dict(
        allowed_private=("127.0.0.1",),
        connect_timeout_s=1.0,
        read_timeout_s=0.6,
        total_timeout_s=3.0,
        max_attempts=4,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        retry_after_max_s=1.0,
        ipfs_gateways=(f"{base}/dead/ipfs/", f"{base}/good/ipfs/"),
    )
    settings.update(overrides)
    return HttpLimits(**settings)


def download(tmp_path: Path, base: str, jobs_by_id: dict[str, str], settings: DownloadSettings | None = None, **limits):
    blobs = BlobStore(tmp_path / "blobs")
    downloader = MediaDownloader(blobs, tmp_path / "journal" / "c.jsonl", settings or DownloadSettings(max_image_bytes=4 << 20))
    jobs = [MediaJob("c", token_id, "image", url) for token_id, url in jobs_by_id.items()]
    rows, report = downloader.run(jobs, [], limits_for(base, **limits))
    return {r.token_id: r for r in rows}, report, blobs


def test_every_bad_input_becomes_one_row_with_its_status(hostile, tmp_path):
    base, raw, state = hostile
    cases = {
        "1": (f"{base}/ok.png", "ok"),
        "2": (f"{base}/wrong-type.png", "ok"),
        "3": (f"{raw}/cl-smaller", "protocol_error"),  # aiohttp refuses bytes beyond Content-Length
        "4": (f"{raw}/cl-larger", "truncated"),
        "5": (f"{base}/chunked.png", "ok"),
        "6": (f"{base}/huge", "too_large"),
        "7": (f"{base}/huge-declared", "too_large"),
        "8": (f"{base}/slow?s=30", "timeout"),
        "9": (f"{raw}/never", "timeout"),
        "10": (f"{raw}/slow-body", "timeout"),
        "11": (f"{base}/storm/a?n=2&after=1", "ok"),
        "12": (f"{base}/storm/b?n=99&after=0", "http_error"),
        "13": (f"{base}/flap/c", "ok"),
        "14": (f"{base}/loop", "too_many_redirects"),
        "15": (f"{base}/redirect?to=http://169.254.169.254/latest/meta-data/", "blocked_address"),
        "16": (f"{base}/redirect?to=http://10.1.2.3/x.png", "blocked_address"),
        "17": (f"{base}/html-200.png", "bad_mime"),
        "18": (f"{base}/truncated.png", "truncated"),
        "19": (f"{base}/empty.png", "empty"),
        "20": ("data:image/png;base64,!!notbase64!!", "decode_error"),
        "21": ("ipfs://notacid/1.png", "invalid_uri"),
        "22": ("gopher://example.org/1", "invalid_uri"),
        "23": (f"{base}/status/404", "http_error"),
        "24": (f"ipfs://{CID}/1.png", "ok"),
        "25": ("data:image/png;base64," + base64.b64encode(PNG).decode(), "ok"),
        "26": (None, "no_uri"),
        "27": ("http://127.0.0.2:9/x.png", "blocked_address"),
        "28": (f"{base}/redirect?to={base}/ok.png", "ok"),
    }
    started = time.perf_counter()
    rows, report, blobs = download(tmp_path, base, {k: url for k, (url, _) in cases.items()})
    elapsed = time.perf_counter() - started
    assert {k: rows[k].status for k in cases} == {k: status for k, (_, status) in cases.items()}
    assert report.rows == len(cases)
    # every good token is stored, under its sha256
    for key in ("1", "2", "5", "11", "13", "24", "25", "28"):
        row = rows[key]
        assert blobs.path_of(row.sha256).read_bytes() in (PNG, JPEG)
    assert rows["1"].sha256 == rows["25"].sha256 == hashlib.sha256(PNG).hexdigest()
    # lying headers are recorded, the sniffed type wins
    assert rows["2"].declared_type.startswith("image/png") and rows["2"].sniffed_type == "image/jpeg"
    assert rows["17"].sniffed_type == "text/html"
    # the oversized body was cut near the cap, never read whole
    assert 4 << 20 < rows["6"].bytes <= (4 << 20) + (1 << 20) and state.huge_bytes_sent < 200 << 20
    assert rows["7"].bytes == 0
    # 429 storms honour Retry-After, retries are counted, 4xx is not retried
    assert rows["11"].attempts == 3 and rows["12"].attempts == 4 and rows["12"].http_status == 429
    assert rows["23"].attempts == 1 and state.hits["status-404"] == 1
    # IPFS fell back from the dead gateway to the good one
    assert rows["24"].resolved_url.startswith(f"{base}/good/ipfs/{CID}")
    assert state.hits["dead-gateway"] >= 1
    # failures carry a reason; nothing half-written is left behind
    assert all(r.error for r in rows.values() if r.status != "ok")
    assert not list((tmp_path / "blobs" / ".staging").iterdir())
    assert elapsed < 60  # a sanity bound on hanging, not a performance assertion


def test_rerun_fetches_only_what_is_missing_and_retries_failures_on_request(hostile, tmp_path):
    base, _, state = hostile
    jobs = {str(i): f"{base}/ok.png?i={i}" for i in range(20)}
    jobs["bad"] = f"{base}/status/500"
    blobs = BlobStore(tmp_path / "blobs")
    journal = tmp_path / "journal.jsonl"
    first = MediaDownloader(blobs, journal, DownloadSettings())
    job_list = [MediaJob("c", k, "image", u) for k, u in jobs.items()]
    rows, report = first.run(job_list[:10], [], limits_for(base, max_attempts=1))
    assert report.fetched == 10
    # a "killed" run: the journal holds 10 rows, no table was written; restart with every job
    hits_before = state.hits["ok"]
    rows, report = MediaDownloader(blobs, journal, DownloadSettings()).run(job_list, [], limits_for(base, max_attempts=1))
    assert report.reused == 10 and report.fetched == 11
    assert state.hits["ok"] - hits_before == 10
    first.finish()
    # failures stay as they are on a plain rerun, and are retried alone when asked
    previous = rows
    hits_500 = state.hits["status-500"]
    _, report = MediaDownloader(blobs, journal, DownloadSettings()).run(job_list, previous, limits_for(base, max_attempts=1))
    assert report.fetched == 0 and state.hits["status-500"] == hits_500
    _, report = MediaDownloader(blobs, journal, DownloadSettings(retry_failed=True)).run(
        job_list, previous, limits_for(base, max_attempts=1)
    )
    assert report.fetched == 1 and state.hits["status-500"] == hits_500 + 1


def test_a_changed_url_is_fetched_again(hostile, tmp_path):
    base, _, _ = hostile
    blobs = BlobStore(tmp_path / "blobs")
    old = MediaRow("c", "1", "image", f"{base}/ok.png", "ok", None, sha256=hashlib.sha256(PNG).hexdigest())
    blobs.put_bytes(PNG)
    downloader = MediaDownloader(blobs, tmp_path / "j.jsonl", DownloadSettings())
    _, report = downloader.run([MediaJob("c", "1", "image", f"{base}/ok.png")], [old], limits_for(base))
    assert report.fetched == 0 and report.reused == 1
    _, report = downloader.run([MediaJob("c", "1", "image", f"{base}/ok.png?v=2")], [old], limits_for(base))
    assert report.fetched == 1


def test_large_jobs_are_sharded_over_processes_and_every_row_comes_back(hostile, tmp_path):
    base, _, _ = hostile
    blobs = BlobStore(tmp_path / "blobs")
    journal = tmp_path / "journal" / "c.jsonl"
    settings = DownloadSettings(processes=2, min_jobs_per_process=50)
    jobs = [MediaJob("c", str(i), "image", f"{base}/ok.png?i={i}") for i in range(200)]
    jobs.append(MediaJob("c", "bad", "image", f"{base}/status/404"))
    seen = []
    downloader = MediaDownloader(blobs, journal, settings)
    rows, report = downloader.run(jobs, [], limits_for(base), seen.append)
    assert report.fetched == 201 and seen[-1] == 201
    assert sorted(r.token_id for r in rows) == sorted(j.token_id for j in jobs)
    assert sum(r.status == "ok" for r in rows) == 200 and {r.status for r in rows} == {"ok", "http_error"}
    assert sorted(p.name for p in journal.parent.iterdir()) == ["c.0.jsonl", "c.1.jsonl"]
    downloader.finish()
    assert not list(journal.parent.iterdir())
