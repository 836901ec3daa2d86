"""Dagster metadata for a written table: row count, column schema, path and a preview."""

from __future__ import annotations

import base64
from collections.abc import Callable
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


# What an unchanged table's materialization shows where its image preview would be.
UNCHANGED_PREVIEW = dg.MetadataValue.md(
    "Unchanged: the table has the same data version as before, so its preview is not drawn again. "
    "It is on the materialization that first had this data version (the asset's history)."
)


def changed_image_markdown(changed: bool, render: Callable[[], bytes], alt: str) -> dg.MetadataValue:
    """`image_markdown(render(), alt)` when the table changed, else `UNCHANGED_PREVIEW`.

    A contact sheet is drawn from the table's images and stored in the event log with every
    materialization: on a refresh where nothing changed, redrawing it cost a quarter of the run's
    time and storing it again 85% of the event log's growth (docs/scale.md, "NFT1000 in miniature").
    """
    return image_markdown(render(), alt) if changed else UNCHANGED_PREVIEW
