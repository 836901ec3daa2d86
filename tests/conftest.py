"""Shared fixtures: a real sample gateway on 127.0.0.1 and a temporary Dagster instance; under
CI=true no test may skip (tests/components.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from nft_pipeline.gateway import SampleGateway, running_gateway
from resources import local_resources

pytest_plugins = ["tests.components"]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def gateway() -> Iterator:
    """The sample gateway with its default supplies (10,000 punks, 1,000 nouns)."""
    with running_gateway(SampleGateway()) as running:
        yield running


@contextmanager
def temp_instance(directory: Path) -> Iterator[dg.DagsterInstance]:
    """A real (sqlite-backed) Dagster instance stored in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(directory)) as inst:
        yield inst


@pytest.fixture()
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    with temp_instance(tmp_path / "dagster") as inst:
        yield inst


@pytest.fixture()
def resources_for(tmp_path: Path):
    """Build the local resource set for a gateway URL, with data under a temporary directory."""

    def build(base_url: str, data_dir: Path | None = None) -> dict:
        return local_resources(base_url, data_dir or tmp_path / "data")

    return build
