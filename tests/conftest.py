"""Shared fixtures: a real sample gateway on 127.0.0.1 and a temporary Dagster instance; under
CI=true no test may skip (tests/components.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import yaml

from nft_pipeline.gateway import SampleGateway, running_gateway
from resources import local_resources

pytest_plugins = ["tests.components"]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def gateway() -> Iterator:
    """The sample gateway with its default supplies (10,000 punks, 1,000 nouns)."""
    with running_gateway(SampleGateway()) as running:
        yield running


REPO_INSTANCE_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


@contextmanager
def temp_instance(directory: Path) -> Iterator[dg.DagsterInstance]:
    """A real (sqlite-backed) Dagster instance stored in `directory`, logging the domain's Python
    loggers the way the repository's `dagster.yaml` does."""
    directory.mkdir(parents=True, exist_ok=True)
    python_logs = yaml.safe_load(REPO_INSTANCE_YAML.read_text())["python_logs"]
    with dg.instance_for_test(temp_dir=str(directory), overrides={"python_logs": python_logs}) as inst:
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
