"""Small, dependency-free renderings of tables for humans (Dagster metadata, CLI summaries)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa


def _cell(value: Any, width: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = text.replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(rows: list[dict[str, Any]], width: int = 60) -> str:
    """Rows (dicts with the same keys) as a markdown table, long cells cut to `width`."""
    if not rows:
        return "_(no rows)_"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[c], width) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def markdown_preview(table: pa.Table, n: int = 5, skip: tuple[str, ...] = ("metadata_json",)) -> str:
    """The first `n` rows of a table as markdown, without bulky columns."""
    columns = [c for c in table.column_names if c not in skip]
    return markdown_table(table.select(columns).slice(0, n).to_pylist())


def text_table(rows: list[dict[str, Any]]) -> str:
    """Rows as an aligned plain-text table for terminals."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    cells = [[str(c) for c in columns]] + [[_cell(row[c], 40) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
