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
        # The source's own copies of the image (Alchemy's `image.cachedUrl` / `pngUrl`): the last
        # resort of `raw_media` when the original URI and every gateway fail.
        pa.field("alchemy_cached_url", pa.string()),
        pa.field("alchemy_png_url", pa.string()),
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
        pa.field("served_by", pa.string()),  # original (the URI, or a gateway for it) | alchemy_cached | alchemy_png
    ]
)

CAPTION_TAG = pa.struct(
    [pa.field("trait_type", pa.string()), pa.field("value", pa.string()), pa.field("phrase", pa.string())]
)
CAPTIONS = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("token_id", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("tags", pa.list_(CAPTION_TAG), nullable=False),
        pa.field("template_id", pa.string(), nullable=False),
        pa.field("shortened", pa.bool_(), nullable=False),
        pa.field("dropped_tags", pa.int32(), nullable=False),
        pa.field("n_text_tokens", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # ok | no_attributes
        pa.field("title", pa.string(), nullable=False),  # "CryptoPunk #0": what remains when every tag is removed
    ]
)

COMPONENTS = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("trait_type", pa.string(), nullable=False),  # "" for a value without a trait type
        pa.field("value", pa.string(), nullable=False),
        pa.field("n_tokens", pa.int32(), nullable=False),
        pa.field("method", pa.string(), nullable=False),  # contrast | plain
        pa.field("status", pa.string(), nullable=False),  # ok | empty | base_layer | too_few_tokens | too_many_colours
        pa.field("reason", pa.string()),
        pa.field("mask_png", pa.binary()),  # 1-bit, the standardized size
        pa.field("rgba_png", pa.binary()),  # RGBA, the standardized size, transparent outside the mask
        pa.field("coverage", pa.float64()),  # fraction of the standardized canvas in the mask
        pa.field("rounds", pa.int32(), nullable=False),
        pa.field("images_per_round", pa.int32(), nullable=False),
        pa.field("agreement", pa.float64()),
    ]
)

# Imported late: the standardize package defines its row fields beside the row dataclass.
from nft_pipeline.standardize.model import STANDARDIZED_IMAGE_FIELDS  # noqa: E402

STANDARDIZED_IMAGES = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("token_id", pa.string(), nullable=False),
        pa.field("settings_fingerprint", pa.string(), nullable=False),
        *STANDARDIZED_IMAGE_FIELDS,
    ]
)
