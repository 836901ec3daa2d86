"""NFT1000 in miniature: generated collections shaped like the NFT1000 catalog, served over real HTTP."""

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests

from nft_pipeline.catalog import load_catalog
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.samples.mixedmedia import FILE_TYPES, Fault
from nft_pipeline.samples.nft1000_mini import (
    FORMAT_WEIGHTS,
    MEDIAN_TOKENS,
    generated_collections,
    nft1000_sizes,
    size_scale,
    write_catalog,
)

MAGIC = {
    "png": b"\x89PNG",
    "jpeg": b"\xff\xd8\xff",
    "webp": b"RIFF",
    "gif": b"GIF8",
    "svg": b"<svg",
}


@pytest.fixture(scope="module")
def thousand():
    return generated_collections(1000)


def test_sizes_match_the_catalog_quantiles_scaled(thousand) -> None:
    sizes = np.array([c.default_supply for c in thousand.values()])
    catalog = np.array([size.collected for size in nft1000_sizes()]) * size_scale()
    for quantile in (0.1, 0.25, 0.5, 0.75, 0.9):
        expected = np.quantile(catalog, quantile)
        assert abs(np.quantile(sizes, quantile) - expected) <= max(2.0, 0.15 * expected), quantile
    assert np.median(sizes) == pytest.approx(MEDIAN_TOKENS, abs=2)
    assert sizes.min() >= 1
    assert 15_000 <= sizes.sum() <= 25_000  # the catalog's 7.57M tokens scaled by 1/400


def test_formats_and_failure_rates_follow_their_weights_and_the_catalog(thousand) -> None:
    formats = Counter(c.format for c in thousand.values())
    for media_format, weight in FORMAT_WEIGHTS.items():
        assert formats[media_format] / 1000 == pytest.approx(weight, abs=0.04), media_format
    rates = np.array([c.failure_rate for c in thousand.values()])
    catalog_rates = np.array([size.failure_rate for size in nft1000_sizes()])
    assert np.mean(rates == 0) == pytest.approx(np.mean(catalog_rates == 0), abs=0.06)
    assert np.mean(rates > 0.1) == pytest.approx(np.mean(catalog_rates > 0.1), abs=0.04)
    supplies = np.array([c.default_supply for c in thousand.values()])
    broken = sum(c.fault_of(token) is not None for c in thousand.values() for token in range(c.default_supply))
    expected = float(rates @ supplies)
    assert abs(broken - expected) <= 4 * np.sqrt(expected) + 5
    for collection in thousand.values():  # data: images cannot 404: their tokens' metadata fails instead
        if collection.format not in FILE_TYPES:
            faults = {collection.fault_of(token) for token in range(collection.default_supply)}
            assert faults <= {None, Fault.TOKEN_URI_404, Fault.TOKEN_URI_INVALID_JSON}


def test_deterministic_from_the_seed_and_prefix_stable(thousand) -> None:
    def described(collections):
        return [(c.slug, c.contract, c.default_supply, c.format, c.failure_rate, c.image_cid) for c in collections]

    first = generated_collections(20)
    assert described(first.values()) == described(list(thousand.values())[:20])
    assert first["mini-0003"].metadata(0) == thousand["mini-0003"].metadata(0)
    other_seed = generated_collections(20, seed=1)
    assert described(other_seed.values()) != described(first.values())
    assert len({c.contract for c in thousand.values()}) == 1000
    assert len({c.image_cid for c in thousand.values()}) == 1000
    traits = {tuple(sorted(c.traits(0).items())) for c in first.values()}
    assert len(traits) > 10  # each collection draws its own critters


def test_gateway_serves_them_with_their_catalog(tmp_path: Path) -> None:
    collections = generated_collections(40)
    entries = load_catalog(str(write_catalog(collections, tmp_path / "mini.csv")))
    assert [e.slug for e in entries] == list(collections) and all(e.problem is None for e in entries)
    assert {e.source for e in entries} == {"sample"}
    with running_gateway(SampleGateway(collections=collections)) as running:
        served_formats = set()
        for collection in collections.values():
            page = requests.get(
                f"{running.base_url}/nft/v3/key/getNFTsForContract",
                params={"contractAddress": collection.contract, "withMetadata": "true", "limit": 100},
                timeout=30,
            ).json()
            nfts = page["nfts"]
            assert [n["tokenId"] for n in nfts] == [str(i) for i in range(min(100, collection.default_supply))]
            for nft in nfts[:3]:
                token = int(nft["tokenId"])
                fault = collection.fault_of(token)
                image = nft["image"]["originalUrl"]
                if fault is not None or not image or not image.startswith("ipfs://"):
                    continue
                body = requests.get(f"{running.base_url}/ipfs/{image.removeprefix('ipfs://')}", timeout=30)
                assert body.status_code == 200
                if collection.format in MAGIC:
                    assert body.content.startswith(MAGIC[collection.format])
                served_formats.add(collection.format)
        assert len(served_formats) >= 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_cli_serves_generated_collections_and_writes_their_catalog(tmp_path: Path) -> None:
    port, catalog = free_port(), tmp_path / "mini.csv"
    command = [sys.executable, "-m", "nft_pipeline.cli", "gateway", "--port", str(port), "--generated", "25"]
    server = subprocess.Popen([*command, "--catalog", str(catalog)], env=os.environ.copy(), stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                entries = load_catalog(str(catalog))
                contract = requests.get(
                    f"http://127.0.0.1:{port}/nft/v3/key/getContractMetadata",
                    params={"contractAddress": entries[-1].contract},
                    timeout=5,
                ).json()
                break
            except (OSError, requests.ConnectionError):
                assert server.poll() is None and time.monotonic() < deadline, "the gateway did not come up"
                time.sleep(0.2)
        assert len(entries) == 25
        assert contract["openSeaMetadata"]["collectionSlug"] == "mini-0024"
        assert contract["totalSupply"] == str(generated_collections(25)["mini-0024"].default_supply)
    finally:
        server.terminate()
        server.wait(timeout=30)
