"""What a test needs beyond its own code: present, or the test skips naming it; under `CI=true`
the test fails instead, naming it.

On a developer machine a missing PostgreSQL or Chromium should not stop the rest of the suite, so
such a test skips and says what to install. In CI the same skip would hide an untested feature
behind a green run: on every fresh machine the PostgreSQL instance went untested because
dagster-postgres had silently failed to install (issue #14). So with `CI=true`, as `.ci/run` runs,
a missing component is a failure that names it.

Every component check goes through `require_component` (or `require_module` for a Python
package). The two hooks below, registered by `tests/conftest.py`, turn any other skip into a
failure under `CI=true` too, so a skip added without these helpers cannot pass CI unnoticed.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

CI_ENV = "CI"


def ci_mode() -> bool:
    """Whether this run is CI (`CI=true`, which most CI services set), where nothing may skip."""
    return os.environ.get(CI_ENV, "").strip().lower() in {"true", "1", "yes"}


def missing_component(name: str, reason: str) -> NoReturn:
    """Skip the current test for the missing component `name`, or fail it under `CI=true`."""
    message = f"{name} is missing: {reason}"
    if ci_mode():
        pytest.fail(f"{CI_ENV}=true, so a missing component fails the test: {message}", pytrace=False)
    # Reported at the test, as a skip mark is, rather than at this line (pytest's own flag).
    raise pytest.skip.Exception(message, _use_item_location=True)


def require_component(name: str, available: bool, reason: str) -> None:
    """Go on when `available`; otherwise skip, or fail under `CI=true`, naming `name` and `reason`
    (what it is needed for and how to install it)."""
    if not available:
        missing_component(name, reason)


def require_module(module: str, component: str, reason: str) -> ModuleType:
    """Import `module`, the Python side of `component`. An install that imports with an error
    (such as a release built for another dagster) counts as missing, with that error."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing_component(component, f"{reason} (import {module}: {error})")


def _skip_as_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    if ci_mode() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        hint = "use tests/components.py to name what is missing"
        report.longrepr = f"{CI_ENV}=true, so a skip fails the test ({reason}); {hint}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    _skip_as_failure(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport:
    report = yield
    _skip_as_failure(report)
    return report
