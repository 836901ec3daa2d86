"""The `raw_media` asset: every token's media fetched into the blob store, one row per token and URL."""

import dagster as dg

from assets.batching import collection_asset
from assets.checks import check_result, check_spec
from assets.ingest import tokens
from assets.table_metadata import table_metadata
from nft_pipeline import sniff
from nft_pipeline.download import DownloadSettings, download_collection_media
from nft_pipeline.quality import success_rate, unique_keys
from nft_pipeline.versions import table_fingerprint
from resources import DataDirResource, HttpResource


class RawMediaConfig(dg.Config):
    """Per-run download settings (see `nft_pipeline.download.DownloadSettings`)."""

    max_image_bytes: int = 50 * 1024 * 1024
    max_animation_bytes: int = 200 * 1024 * 1024
    allowed_types: list[str] = list(sniff.MEDIA_TYPES)
    fetch_animations: bool = True
    retry_failed: bool = False
    workers: int = 256
    processes: int = DownloadSettings.processes
    min_success_rate: float = 0.5  # the blocking check's floor: below it, stop before standardizing

    def settings(self) -> DownloadSettings:
        fields = self.model_dump(exclude={"min_success_rate"})
        fields["allowed_types"] = tuple(fields["allowed_types"])
        return DownloadSettings(**fields)


DOWNLOAD_SUCCESS = check_spec("raw_media", "download_success_rate", "Enough media downloaded (config floor).")
UNIQUE_MEDIA = check_spec("raw_media", "unique_media_rows", "One row per (token, role).")


@collection_asset(
    group_name="ingest",
    kinds={"parquet"},
    deps=[tokens],
    check_specs=[DOWNLOAD_SUCCESS, UNIQUE_MEDIA],
    pool="download",
)
def raw_media(
    context: dg.AssetExecutionContext, config: RawMediaConfig, data_dir: DataDirResource, http: HttpResource
) -> dg.MaterializeResult:
    """Media bytes in `blobs/` by sha256; a status and reason for every token whose media failed."""
    layout = data_dir.layout()
    slug = context.partition_key
    logged = {"at": 0}

    def log_progress(done: int, total: int) -> None:
        if done - logged["at"] >= 5000:
            logged["at"] = done
            context.log.info(f"{slug}: {done}/{total} media rows done")

    table, report = download_collection_media(layout, slug, config.settings(), http.limits(), log_progress)
    path = layout.partition_path("raw_media", slug)
    summary = report.as_dict()
    return dg.MaterializeResult(
        # Which bytes each token has (by content), not when they were fetched.
        data_version=dg.DataVersion(table_fingerprint(table, ["token_id", "role", "url", "status", "sha256"])),
        metadata=table_metadata(
            table,
            path,
            status_counts=summary["status_counts"],
            fetched=report.fetched,
            reused=report.reused,
            bytes_fetched=dg.MetadataValue.int(report.bytes_fetched),
            files_per_second=dg.MetadataValue.float(summary["files_per_second"]),
            top_errors=dg.MetadataValue.json(summary["top_errors"]),
        ),
        check_results=[
            check_result(DOWNLOAD_SUCCESS, success_rate(table, config.min_success_rate)),
            check_result(UNIQUE_MEDIA, unique_keys(table, ["collection", "token_id", "role"])),
        ],
    )
