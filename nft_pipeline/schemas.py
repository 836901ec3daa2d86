"""The explicit schema of every table the pipeline writes, defined once.

Writers cast to these schemas and tests read them back with DuckDB, so a column that changes type
or disappears fails loudly at the stage that broke it rather than three stages later.
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

ATTRIBUTE = pa.struct(
    [
        pa.field("trait_type", pa.string()),
        pa.field("value", pa.string()),
        pa.field("display_type", pa.string()),
    ]
)

COLLECTIONS = pa.schema(
    [
        pa.field("slug", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("chain", pa.string()),
        pa.field("contract", pa.string()),
        pa.field("source", pa.string()),
        pa.field("catalog_split", pa.string()),
        pa.field("contract_name", pa.string()),
        pa.field("symbol", pa.string()),
        pa.field("token_type", pa.string()),
        pa.field("total_supply", pa.int64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("fetched_at", TIMESTAMP),
    ]
)

TOKENS = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("token_id", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("token_uri", pa.string()),
        pa.field("image_uri", pa.string()),
        pa.field("animation_uri", pa.string()),
        pa.field("attributes", pa.list_(ATTRIBUTE)),
        pa.field("attributes_status", pa.string(), nullable=False),
        pa.field("metadata_json", pa.string()),
        pa.field("metadata_sha256", pa.string()),
        pa.field("metadata_source", pa.string(), nullable=False),
        pa.field("metadata_status", pa.string(), nullable=False),
        pa.field("metadata_error", pa.string()),
        pa.field("discovered_at", TIMESTAMP, nullable=False),
    ]
)

RAW_MEDIA = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("token_id", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),  # image | animation
        pa.field("url", pa.string()),
        pa.field("resolved_url", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("http_status", pa.int32()),
        pa.field("declared_type", pa.string()),
        pa.field("sniffed_type", pa.string()),
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("sha256", pa.string()),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("fetched_at", TIMESTAMP, nullable=False),
    ]
)
