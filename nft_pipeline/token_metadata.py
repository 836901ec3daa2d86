"""Token metadata as it really is, turned into one well-typed row per token.

Real metadata is messy: attributes missing, a dict instead of a list, values that are numbers,
booleans or null, `display_type` numbers, raw SVG in `image_data`, non-UTF-8 bytes, JSON that
does not parse or nests without end. None of this may crash a run: each case becomes a recorded
state on the row (`attributes_status`, `metadata_status`, `metadata_error`).
"""

from __future__ import annotations

import hashlib
import json
import math
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MAX_METADATA_BYTES = 2 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_ATTRIBUTES = 256
MAX_TEXT = 2000


@dataclass(frozen=True)
class ParsedMetadata:
    """The outcome of parsing metadata bytes: an object, or a status and an error."""

    metadata: dict[str, Any] | None
    status: str  # ok | recovered | invalid_json | not_an_object | too_deep | too_large
    error: str | None = None


def json_depth_exceeds(text: str, max_depth: int) -> bool:
    """True if brackets nest deeper than `max_depth` (outside strings), checked without parsing."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def parse_metadata_bytes(data: bytes, max_bytes: int = MAX_METADATA_BYTES, max_depth: int = MAX_JSON_DEPTH) -> ParsedMetadata:
    """Parse JSON metadata bytes safely (size and depth limits; non-UTF-8 bytes recovered)."""
    if len(data) > max_bytes:
        return ParsedMetadata(None, "too_large", f"{len(data)} bytes > cap {max_bytes}")
    status, error = "ok", None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8-sig", errors="replace")
        status, error = "recovered", f"non-UTF-8 bytes replaced (first at byte {exc.start})"
    if json_depth_exceeds(text, max_depth):
        return ParsedMetadata(None, "too_deep", f"JSON nests deeper than {max_depth}")
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        return ParsedMetadata(None, "invalid_json", f"invalid JSON: {exc}"[:300])
    if not isinstance(parsed, dict):
        return ParsedMetadata(None, "not_an_object", f"metadata is a JSON {type(parsed).__name__}, not an object")
    return ParsedMetadata(parsed, status, error)


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A scalar as text the way a person would write it; None for null/empty/containers."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value) if math.isfinite(value) else None
        if text is None:
            return None
    else:
        text = str(value).strip()
    return text[:limit] if text else None


def normalize_attributes(raw: Any) -> tuple[list[dict[str, str | None]], str]:
    """Attributes as a list of {trait_type, value, display_type} with text values, and a status.

    Status: `ok`; `missing` (absent or null); `not_a_list` (unusable shape: string, number);
    `repaired` (usable after fixes: a {trait: value} object, entries that were bare strings,
    numbers or booleans, null or missing fields, over-long text, too many entries).
    """
    if raw is None:
        return [], "missing"
    repaired = False
    if isinstance(raw, dict):
        raw = [{"trait_type": k, "value": v} for k, v in raw.items()]
        repaired = True
    if not isinstance(raw, list):
        return [], "not_a_list"
    if len(raw) > MAX_ATTRIBUTES:
        raw, repaired = raw[:MAX_ATTRIBUTES], True
    attributes = []
    for item in raw:
        if not isinstance(item, dict):
            item, repaired = {"value": item}, True
        trait_type = _text(item.get("trait_type", item.get("type")), 200)
        value = _text(item.get("value"))
        display_type = _text(item.get("display_type"), 100)
        original = item.get("value")
        if trait_type is None or value is None or not isinstance(original, str) or len(str(original)) > MAX_TEXT:
            repaired = True
        attributes.append({"trait_type": trait_type, "value": value, "display_type": display_type})
    return attributes, "repaired" if repaired else "ok"


def media_uri(metadata: dict[str, Any], *keys: str) -> str | None:
    """The first non-empty URI among `keys`; inline SVG (`image_data`) becomes a data: URI."""
    for key in keys:
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            value = value.strip()
            if key == "image_data" and value.lstrip().startswith("<"):
                return "data:image/svg+xml," + urllib.parse.quote(value)
            return value
    return None


def canonical_json(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass
class TokenRecord:
    """One row of the `tokens` table (see `schemas.TOKENS`)."""

    collection: str
    token_id: str
    discovered_at: datetime
    name: str | None = None
    token_uri: str | None = None
    image_uri: str | None = None
    animation_uri: str | None = None
    attributes: list[dict[str, str | None]] = field(default_factory=list)
    attributes_status: str = "missing"
    metadata_json: str | None = None
    metadata_sha256: str | None = None
    metadata_source: str = "none"  # inline | token_uri | none
    metadata_status: str = "missing"
    metadata_error: str | None = None
    alchemy_cached_url: str | None = None
    alchemy_png_url: str | None = None

    def apply_metadata(self, parsed: ParsedMetadata, source: str, fallback_image: str | None = None) -> None:
        """Fill the metadata-derived columns from a parse outcome."""
        self.metadata_source = source
        self.metadata_status = parsed.status
        self.metadata_error = parsed.error
        meta = parsed.metadata
        if meta is None:
            self.image_uri = self.image_uri or fallback_image
            return
        canonical = canonical_json(meta)
        self.metadata_json = canonical
        self.metadata_sha256 = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
        self.name = _text(meta.get("name"), 500) or self.name
        self.image_uri = media_uri(meta, "image", "image_url", "image_data") or fallback_image
        self.animation_uri = media_uri(meta, "animation_url", "animation")
        raw_attributes = meta.get("attributes", meta.get("traits"))
        self.attributes, self.attributes_status = normalize_attributes(raw_attributes)


def token_id_text(raw: Any) -> str | None:
    """Token ids are uint256: keep them as decimal text (Alchemy v3 sends decimal strings)."""
    if isinstance(raw, bool) or raw is None:
        return None
    text = str(raw).strip()
    if text.lower().startswith("0x"):
        try:
            return str(int(text, 16))
        except ValueError:
            return None
    return text if text.isdigit() else None
