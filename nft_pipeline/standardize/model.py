"""The vocabulary of standardisation: settings, statuses, the output row and its Arrow fields.

Kept apart from the decoders so the pool, the tests and the lead's asset can share the row shape
without importing any codec.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from nft_pipeline.location import Location

# Bump when the pixels produced for unchanged settings change (a new rule, a fixed bug), so the
# fingerprint invalidates every stored image made by the old code.
ALGORITHM_VERSION = 1


class Status(StrEnum):
    """Why a token has (`ok`) or has no standardized image; stored in the `status` column."""

    OK = "ok"
    UNSUPPORTED = "unsupported"  # not an image or video type we decode (HTML, JSON, unknown)
    DECODE_ERROR = "decode_error"  # truncated or malformed file, or a decoder failure
    READ_ERROR = "read_error"  # the source blob could not be read
    WRITE_ERROR = "write_error"  # the output PNG could not be written
    TOO_LARGE = "too_large"  # the source (or SVG text) exceeds its byte cap
    TOO_MANY_PIXELS = "too_many_pixels"  # the header declares more pixels than the cap
    TOO_MANY_FRAMES = "too_many_frames"  # an animation longer than the frame cap
    BAD_ASPECT = "bad_aspect"  # longer side more than `max_aspect` times the shorter
    UNSAFE_SVG = "unsafe_svg"  # SVG with entity declarations or external DTD
    NO_VIDEO_STREAM = "no_video_stream"  # a container with audio or data only
    TIMEOUT = "timeout"  # over the per-image time cap
    WORKER_CRASH = "worker_crash"  # the worker process died on this input (twice)


class Rejected(Exception):
    """An input that cannot be standardized, with the status it is recorded under."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class TimeLimitExceeded(Exception):
    """Raised inside a worker by its alarm when one image takes longer than the time cap."""


@dataclass(frozen=True)
class StandardizeSettings:
    """Everything that changes the output bytes; its fingerprint decides what is re-done."""

    width: int = 512
    max_aspect: float = 4.0
    max_pixels: int = 64_000_000  # 8000 x 8000; ~256 MB of RGBA per worker at worst
    max_frames: int = 1000
    max_source_bytes: int = 256 * 1024 * 1024
    max_svg_bytes: int = 5_000_000
    timeout_s: float = 30.0
    seed: int = 0
    # zlib level chosen with `benchmarks/bench_standardize.py --png-levels`; numbers in `encode.py`.
    png_compress_level: int = 4


def settings_fingerprint(settings: StandardizeSettings) -> str:
    """A digest of the settings and the algorithm version: equal fingerprint, equal pixels.

    `timeout_s` is left out: it decides whether an image finishes, not what it looks like.
    """
    fields = dataclasses.asdict(settings)
    fields.pop("timeout_s")
    canonical = json.dumps({"algorithm": ALGORITHM_VERSION, **fields}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Resample(StrEnum):
    """How the output pixels were made from the source, stored in the `resample` column."""

    NEAREST = "nearest"  # pixel art: integer k x k blocks, centred on a padded canvas
    LANCZOS = "lanczos"  # photographic raster
    VECTOR = "vector"  # SVG rasterised directly at the output width


@dataclass(frozen=True)
class ImageRow:
    """One token's standardization result, exactly the columns of `STANDARDIZED_IMAGE_FIELDS`.

    Geometry: the source is `source_width` x `source_height` pixels whose art pixels are
    `block` x `block` squares; each art pixel became `scale` output pixels per side, and the
    content sits `pad_x`, `pad_y` pixels from the top-left of the `width` x `height` output.
    """

    status: str
    error: str | None = None
    source_sha256: str | None = None
    source_type: str | None = None
    png_path: str | None = None
    png_sha256: str | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    frame_index: int | None = None
    n_frames: int | None = None
    source_width: int | None = None
    source_height: int | None = None
    block: int | None = None
    scale: float | None = None
    pad_x: int | None = None
    pad_y: int | None = None
    resample: str | None = None


STANDARDIZED_IMAGE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("source_sha256", pa.string()),
    pa.field("source_type", pa.string()),
    pa.field("png_path", pa.string()),
    pa.field("png_sha256", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("mode", pa.string()),  # RGB or RGBA: what the PNG decodes to (it may be stored as a palette)
    pa.field("frame_index", pa.int32()),
    pa.field("n_frames", pa.int32()),
    pa.field("source_width", pa.int32()),
    pa.field("source_height", pa.int32()),
    pa.field("block", pa.int32()),
    pa.field("scale", pa.float64()),
    pa.field("pad_x", pa.int32()),
    pa.field("pad_y", pa.int32()),
    pa.field("resample", pa.string()),
)


@dataclass(frozen=True)
class StandardizedImage:
    """The pure result of standardizing one source: the PNG bytes (if any) and its row."""

    row: ImageRow
    png: bytes | None = None


@dataclass(frozen=True)
class StandardizeJob:
    """One token to standardize: its source is a blob path, local or on object storage (preferred: the
    worker reads it), or bytes."""

    collection: str
    token_id: str
    source: Location | bytes

    @property
    def seed_key(self) -> str:
        return f"{self.collection}/{self.token_id}"


@dataclass(frozen=True)
class StandardizeOutcome:
    """A job's row as returned by the pool; the PNG is already on disk at `row.png_path`."""

    collection: str
    token_id: str
    row: ImageRow

    def as_dict(self) -> dict[str, object]:
        return {"collection": self.collection, "token_id": self.token_id, **dataclasses.asdict(self.row)}
