"""The installed dagster family is one release train, the one `constraints.txt` pins.

Dagster releases its core packages (dagster, dagster-webserver, dagster-graphql, dagster-pipes,
dagster-shared) as 1.X.Y and its libraries (dagster-postgres, dagster-k8s, ...) on the same day
as 0.(X+16).Y, each pinning the core release it was built with. A library from another train
installs, when a resolver backtracks to it, but may fail on import: issue #14, where dagster
1.13.28 got dagster-postgres 0.11.14. Versions are read from the installed metadata, not from the
modules, so a package that fails to import is still checked.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

CONSTRAINTS = Path(__file__).resolve().parent.parent / "constraints.txt"
LIBRARY_MINOR_OFFSET = 16  # dagster 1.X.Y <-> libraries 0.(X+16).Y


def release_train(version: str) -> tuple[int, int]:
    """The core release (X, Y) that a dagster-* version 1.X.Y or 0.(X+16).Y belongs to."""
    release = Version(version).release
    major, minor, micro = (*release, 0, 0)[:3]
    if major == 1:
        return minor, micro
    if major == 0:
        return minor - LIBRARY_MINOR_OFFSET, micro
    raise ValueError(f"{version} follows neither the core (1.X.Y) nor the library (0.X.Y) numbering")


def installed_dagster_family() -> dict[str, str]:
    """Every installed distribution named dagster or dagster-*, with its version."""
    family = {}
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name == "dagster" or name.startswith("dagster-"):
            family[name] = dist.version
    return family


def pinned_dagster_family() -> dict[str, str]:
    """The dagster and dagster-* pins of `constraints.txt`."""
    pins = re.findall(r"^(dagster(?:[-_.][a-z0-9]+)*)==(\S+)$", CONSTRAINTS.read_text(), flags=re.M | re.I)
    return {canonicalize_name(name): version for name, version in pins}


@pytest.mark.parametrize(
    ("core", "library", "same_train"),
    [
        ("1.13.27", "0.29.27", True),
        ("1.13.28", "0.29.27", False),
        ("1.13.27", "0.28.27", False),
        ("1.13.28", "0.11.14", False),  # what a resolver picked in issue #14
    ],
)
def test_the_numbering_rule(core: str, library: str, same_train: bool) -> None:
    assert (release_train(core) == release_train(library)) is same_train


def test_the_installed_dagster_packages_are_one_release_train() -> None:
    family = installed_dagster_family()
    assert {"dagster", "dagster-webserver", "dagster-postgres"} <= family.keys(), family
    trains = {name: release_train(version) for name, version in family.items()}
    assert len(set(trains.values())) == 1, f"dagster packages from different release trains: {family}"


def test_the_lock_pins_one_train_and_the_installed_family_is_the_pinned_one() -> None:
    pinned = pinned_dagster_family()
    assert {"dagster", "dagster-webserver", "dagster-postgres", "dagster-k8s"} <= pinned.keys(), pinned
    assert len({release_train(version) for version in pinned.values()}) == 1, pinned
    installed = installed_dagster_family()
    both = installed.keys() & pinned.keys()
    reinstall = "constraints.txt pins other versions: make install"
    assert {name: installed[name] for name in both} == {name: pinned[name] for name in both}, reinstall
