"""Data-quality rules for the pipeline's tables, as pure functions over Arrow tables.

Each rule returns a `QualityResult`: whether the table passes and the numbers behind the verdict,
so a failure in the Dagster UI says how bad it is, not only that it failed. The asset layer turns
them into (blocking where bad data would poison the next stage) asset checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class QualityResult:
    passed: bool
    numbers: dict[str, Any] = field(default_factory=dict)


def unique_keys(table: pa.Table, keys: Sequence[str]) -> QualityResult:
    """No two rows share the same values of `keys` (e.g. collection, token_id)."""
    distinct = table.group_by(list(keys)).aggregate([]).num_rows if table.num_rows else 0
    duplicates = table.num_rows - distinct
    return QualityResult(duplicates == 0, {"rows": table.num_rows, "duplicate_rows": duplicates})


def success_rate(table: pa.Table, floor: float, status_column: str = "status") -> QualityResult:
    """The share of rows with status `ok` is at least `floor` (an empty table passes)."""
    rows = table.num_rows
    ok = pc.sum(pc.equal(table.column(status_column), "ok")).as_py() or 0 if rows else 0
    rate = ok / rows if rows else 1.0
    return QualityResult(rate >= floor, {"rows": rows, "ok": ok, "success_rate": round(rate, 4), "floor": floor})


def ok_rows_have_width(table: pa.Table, width: int) -> QualityResult:
    """Every successfully standardized image is exactly `width` pixels wide."""
    ok = table.filter(pc.equal(table.column("status"), "ok"))
    wrong = ok.num_rows - (pc.sum(pc.equal(ok.column("width"), width)).as_py() or 0) if ok.num_rows else 0
    return QualityResult(wrong == 0, {"ok_rows": ok.num_rows, "wrong_width": wrong, "expected_width": width})


def no_empty_text(table: pa.Table, column: str) -> QualityResult:
    """No row has a null or blank `column`."""
    values = table.column(column).to_pylist()
    empty = sum(1 for v in values if not (v or "").strip())
    return QualityResult(empty == 0, {"rows": len(values), "empty": empty})


def values_within(table: pa.Table, column: str, low: float, high: float, where_ok: bool = True) -> QualityResult:
    """Every (ok) row's `column` lies in [low, high]."""
    if where_ok and table.num_rows:
        table = table.filter(pc.equal(table.column("status"), "ok"))
    values = [v for v in table.column(column).to_pylist() if v is not None]
    outside = sum(1 for v in values if not low <= v <= high)
    return QualityResult(outside == 0, {"rows": len(values), "outside": outside, "low": low, "high": high})


def all_finite(table: pa.Table, columns: Sequence[str]) -> QualityResult:
    """Every value of `columns` is a finite number."""
    bad = {c: sum(1 for v in table.column(c).to_pylist() if v is None or not math.isfinite(v)) for c in columns}
    return QualityResult(not any(bad.values()), {"rows": table.num_rows, "not_finite": bad})


def row_counts_match(actual: int, expected: int) -> QualityResult:
    return QualityResult(actual == expected, {"rows": actual, "expected": expected})
