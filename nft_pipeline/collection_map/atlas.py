"""Thumbnail atlases: the map's tokens as small thumbnails packed into PNG sprite sheets.

A page that drew a map from one image request per token would make 10,000 requests; from sheets
of 4,096 thumbnails it makes three. Sheets are content-addressed (`<sha256>.png` under
`<data dir>/maps/atlas/`): a sheet whose thumbnails did not change keeps its name, so browsers
and the server can cache it forever, and two maps holding the same tokens in the same order share
it. A token whose image cannot be read gets no slot (-1): the page draws it as a dot.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nft_pipeline.collection_map.settings import MapSettings
from nft_pipeline.location import atomic_path

ATLAS_DIR = Path("maps") / "atlas"  # under the data directory
ATLAS_NAME = re.compile(r"^[0-9a-f]{64}$")
NO_SLOT = -1


@dataclass(frozen=True)
class AtlasSlots:
    """Where each token's thumbnail is: the sheet's digest ("" for none) and its slot (row-major)."""

    atlas: list[str]
    slot: list[int]


def thumbnail(path: Path, size: int) -> np.ndarray | None:
    """`size` x `size` RGBA pixels of the image (box-filtered, which keeps pixel art readable at 32 px), or None."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGBA").resize((size, size), Image.Resampling.BOX))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _sheet_png(tiles: Sequence[np.ndarray | None], size: int, columns: int) -> bytes:
    rows = max(1, -(-len(tiles) // columns))
    sheet = np.zeros((rows * size, columns * size, 4), dtype=np.uint8)
    for index, tile in enumerate(tiles):
        if tile is not None:
            row, column = divmod(index, columns)
            sheet[row * size : (row + 1) * size, column * size : (column + 1) * size] = tile
    buffer = io.BytesIO()
    Image.fromarray(sheet).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def atlas_path(data_dir: Path, digest: str) -> Path:
    return Path(data_dir) / ATLAS_DIR / f"{digest}.png"


def build_atlases(data_dir: Path, png_paths: Sequence[str | None], settings: MapSettings, threads: int = 2) -> AtlasSlots:
    """Sheets of the thumbnails of `png_paths` (in order), written under the data directory; a sheet
    already there (same digest) is not rewritten. Thumbnails are made by `threads` threads (Pillow
    releases the GIL while decoding)."""
    size, per_sheet = settings.thumbnail_px, settings.atlas_columns * settings.atlas_columns
    with ThreadPoolExecutor(threads) as pool:
        tiles = list(pool.map(lambda p: thumbnail(Path(p), size) if p else None, png_paths))
    atlas, slot = [], []
    for start in range(0, len(tiles), per_sheet):
        chunk = tiles[start : start + per_sheet]
        png = _sheet_png(chunk, size, settings.atlas_columns)
        digest = hashlib.sha256(png).hexdigest()
        target = atlas_path(data_dir, digest)
        if not target.exists():
            with atomic_path(target) as tmp:
                tmp.write_bytes(png)
        for index, tile in enumerate(chunk):
            atlas.append(digest if tile is not None else "")
            slot.append(index if tile is not None else NO_SLOT)
    return AtlasSlots(atlas, slot)
