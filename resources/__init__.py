"""Dagster resources: where data lives, how HTTP behaves, which sources serve collections.

Each resource is plain configuration that turns into the domain library's own objects
(`DataLayout`, `HttpLimits`, `SourceEndpoint`), so the domain code never sees Dagster.
`local_resources()` builds the set used by `make demo`, `dagster dev` and the tests from
environment variables, with defaults that work offline against the bundled sample gateway.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg

from nft_pipeline.catalog import CatalogEntry, load_catalog
from nft_pipeline.http_client import HttpLimits, gateway_limits
from nft_pipeline.location import data_location
from nft_pipeline.source import SourceEndpoint
from nft_pipeline.storage import DataLayout, default_data_root

GATEWAY_URL_ENV = "NFT_PIPELINE_GATEWAY_URL"
CATALOG_ENV = "NFT_PIPELINE_CATALOG"  # a bundled catalog's name or a CSV path (default: samples)
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8765"


class DataDirResource(dg.ConfigurableResource):
    """The data root holding tables, blobs and standardized images (`$NFT_PIPELINE_DATA`, default ./data).

    `path` is a directory or an fsspec URL (`s3://bucket/prefix`). `storage_options` go to the
    fsspec filesystem as they are (e.g. `endpoint_url` of an S3-compatible store);
    `storage_options_env` maps an option to the environment variable it is read from when the
    run starts (e.g. `{"key": "S3_ACCESS_KEY_ID", "secret": "S3_SECRET_ACCESS_KEY"}`), so secrets
    stay out of run config and the UI. `work_dir`: local directory for download journals and
    staging when `path` is a URL (default: under the system temp dir; see `DataLayout`).
    """

    path: str
    storage_options: dict[str, Any] = {}
    storage_options_env: dict[str, str] = {}
    work_dir: str | None = None

    def layout(self) -> DataLayout:
        missing = sorted(var for var in self.storage_options_env.values() if var not in os.environ)
        if missing:
            raise dg.Failure(f"storage options for {self.path} read environment variables that are not set: {', '.join(missing)}")
        options = {**self.storage_options, **{name: os.environ[var] for name, var in self.storage_options_env.items()}}
        return DataLayout(data_location(self.path, options), Path(self.work_dir) if self.work_dir else None)


class HttpResource(dg.ConfigurableResource):
    """Limits and gateways of the guarded HTTP client (see `nft_pipeline.http_client`)."""

    max_in_flight: int = 64
    max_per_host: int = 32
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    total_timeout_s: float = 60.0
    max_attempts: int = 5
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    retry_after_max_s: float = 30.0
    max_redirects: int = 3
    allowed_private: list[str] = []
    ipfs_gateways: list[str] = ["https://ipfs.io/ipfs/", "https://dweb.link/ipfs/"]
    arweave_gateways: list[str] = ["https://arweave.net/"]

    def limits(self) -> HttpLimits:
        fields = self.model_dump()
        for name in ("allowed_private", "ipfs_gateways", "arweave_gateways"):
            fields[name] = tuple(fields[name])
        return HttpLimits(**fields)


class NftSourcesResource(dg.ConfigurableResource):
    """The catalog to read and the sources that serve its collections.

    `sample`: the bundled gateway at `sample_gateway_url`. `alchemy`: the Alchemy NFT API v3 at
    `alchemy_base_url` with the key read from the environment variable `alchemy_api_key_env`.
    """

    catalog: str = "samples"
    sample_gateway_url: str = DEFAULT_GATEWAY_URL
    alchemy_base_url: str = "https://eth-mainnet.g.alchemy.com"
    alchemy_api_key_env: str = "ALCHEMY_API_KEY"

    def entries(self) -> list[CatalogEntry]:
        return load_catalog(self.catalog, default_source="alchemy")

    def entry(self, slug: str) -> CatalogEntry:
        for entry in self.entries():
            if entry.slug == slug and entry.problem is None:
                return entry
        raise dg.Failure(f"collection {slug!r} is not a valid entry of catalog {self.catalog!r}")

    def endpoints(self) -> dict[str, SourceEndpoint]:
        """The configured sources by name; alchemy only when its key is set."""
        found = {"sample": SourceEndpoint(self.sample_gateway_url)}
        key = os.environ.get(self.alchemy_api_key_env)
        if key:
            found["alchemy"] = SourceEndpoint(self.alchemy_base_url, key)
        return found

    def endpoint(self, source: str) -> SourceEndpoint:
        endpoints = self.endpoints()
        if source not in endpoints:
            raise dg.Failure(f"source {source!r} is not configured (set ${self.alchemy_api_key_env} for alchemy)")
        return endpoints[source]


def local_resources(gateway_url: str | None = None, data_dir: Path | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resource set for local runs: data under `data_dir` (default `$NFT_PIPELINE_DATA`, which
    may be a URL whose store takes its credentials from the environment), sample sources at `gateway_url`,
    the catalog `$NFT_PIPELINE_CATALOG` (default `samples`).

    HTTP limits come from `gateway_limits`: the sample gateway's IPFS route first, and its host
    allowed past the private-address guard when it runs on loopback.
    """
    gateway_url = (gateway_url or os.environ.get(GATEWAY_URL_ENV) or DEFAULT_GATEWAY_URL).rstrip("/")
    limits = gateway_limits(gateway_url)
    return {
        "data_dir": DataDirResource(path=str(data_dir or default_data_root())),
        "http": HttpResource(allowed_private=list(limits.allowed_private), ipfs_gateways=list(limits.ipfs_gateways)),
        "sources": NftSourcesResource(sample_gateway_url=gateway_url, catalog=os.environ.get(CATALOG_ENV, "samples")),
    }
