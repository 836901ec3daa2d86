"""The code location stays light: loading the definitions imports no model or index library.

Every Dagster run process, step process and code server imports `nft_pipeline.definitions`;
torch, transformers, lancedb and matplotlib belong to the steps that use them (docs/scale.md,
"Code location weight"). Checked in a fresh interpreter, since this test process has them loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "lancedb", "matplotlib", "umap", "sklearn", "faiss", "av", "duckdb")
TRAINING = ("nft_pipeline.train.loop", "nft_pipeline.train.data", "nft_pipeline.train.prepared", "nft_pipeline.train.evaluate")


def loaded_after_import(module: str) -> set[str]:
    """Top-level names in `sys.modules` after importing `module` in a new interpreter."""
    script = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(json.loads(output.splitlines()[-1]))


def test_definitions_import_no_heavy_library():
    loaded = loaded_after_import("nft_pipeline.definitions")
    assert "dagster" in loaded  # the import did happen
    assert sorted(name for name in HEAVY if name in loaded) == []


@pytest.mark.parametrize("module", ["nft_pipeline.embedding", "nft_pipeline.index", "nft_pipeline.search"])
def test_search_side_imports_no_training_loop(module):
    loaded = loaded_after_import(module)
    assert module in loaded
    assert sorted(name for name in TRAINING if name in loaded) == []


def test_definitions_import_prints_no_warning():
    """Every CLI call, run and code server imports the definitions: nothing may be printed then."""
    done = subprocess.run([sys.executable, "-c", "import nft_pipeline.definitions"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert (done.stdout, done.stderr) == ("", "")
