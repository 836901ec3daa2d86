"""Dagster metadata for a written table: row count, column schema, path and a preview."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa

from nft_pipeline.reporting import markdown_preview


def table_metadata(table: pa.Table, path: Path, **extra: Any) -> dict[str, Any]:
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name=f.name, type=str(f.type), description=None) for f in table.schema]
    )
    return {
        "dagster/row_count": table.num_rows,
        "dagster/column_schema": schema,
        "path": dg.MetadataValue.path(str(path)),
        "preview": dg.MetadataValue.md(markdown_preview(table)),
        **extra,
    }


def image_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG embedded in markdown metadata (contact sheets, plots), shown inline by the UI."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")
