"""CI mode: a test whose component is missing skips on a developer machine and fails under CI=true.

pytest runs in a subprocess on a small generated test file, with Chromium hidden (PATH holds only
an empty directory): the browser tests' real check (`tests.chromium.chromium_binary`), a skip
that bypasses `tests/components.py`, and a module skipped at import. CI is set or unset
explicitly, whatever this run's own environment says.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

NEEDS_CHROMIUM = """
from tests.chromium import chromium_binary

def test_needs_chromium():
    chromium_binary()

def test_skips_without_the_helper():
    import pytest
    pytest.skip("an unnamed reason")
"""
SKIPPED_AT_IMPORT = """
import pytest
pytest.importorskip("a_module_that_is_not_installed")

def test_never_collected():
    pass
"""


def run_pytest(directory: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    (directory / "test_needs_chromium.py").write_text(NEEDS_CHROMIUM)
    (directory / "test_skipped_at_import.py").write_text(SKIPPED_AT_IMPORT)
    (directory / "empty-bin").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env |= {"PATH": str(directory / "empty-bin"), "PYTHONPATH": str(REPO), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    if ci:
        env["CI"] = "true"
    plugins = ["-p", "tests.components", "-p", "no:cacheprovider"]
    # A module skipped at import fails collection under CI=true, which would stop the run there.
    command = [sys.executable, "-m", "pytest", *plugins, "--continue-on-collection-errors", "-rs", "-q", "."]
    return subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=300)


def test_a_missing_component_skips_with_its_reason_on_a_developer_machine(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 skipped" in result.stdout, result.stdout
    assert "Chromium is missing: the browser tests need it" in result.stdout


def test_a_missing_component_fails_under_ci_naming_it(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, ci=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "skipped" not in result.stdout.splitlines()[-1], result.stdout
    assert "2 failed, 1 error" in result.stdout, result.stdout
    assert "CI=true, so a missing component fails the test: Chromium is missing" in result.stdout
    assert "CI=true, so a skip fails the test (an unnamed reason)" in result.stdout
    assert "a_module_that_is_not_installed" in result.stdout
