"""Whole-collection views of standardized images: the paper's collection filters and a contact sheet.

NFT1000 drops collections with fewer than 500 images, with one image repeated for every token,
or without attributes (nothing to build captions from). Here they are flags, not deletions:
the images stay, and training decides what to leave out.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence

from PIL import Image

from nft_pipeline.location import Location

MIN_COLLECTION_IMAGES = 500
FLAG_TOO_FEW_IMAGES = "too_few_images"
FLAG_IDENTICAL_IMAGES = "identical_images"
FLAG_NO_ATTRIBUTES = "no_attributes"
_SHEET_BACKGROUND = (40, 40, 40, 255)


def collection_flags(
    png_sha256s: Iterable[str | None], attribute_count: int, min_images: int = MIN_COLLECTION_IMAGES
) -> list[str]:
    """The paper's reasons to exclude a collection, from its rows' `png_sha256` (None: no image).

    `attribute_count` is the number of attributes over all the collection's tokens.
    """
    images = [sha for sha in png_sha256s if sha]
    flags = []
    if len(images) < min_images:
        flags.append(FLAG_TOO_FEW_IMAGES)
    if len(images) > 1 and len(set(images)) == 1:
        flags.append(FLAG_IDENTICAL_IMAGES)
    if attribute_count == 0:
        flags.append(FLAG_NO_ATTRIBUTES)
    return flags


def contact_sheet(png_paths: Sequence[Location], columns: int = 8, cell: int = 96) -> bytes:
    """A PNG grid of thumbnails (cell x cell, aspect kept) on a dark ground, for run metadata.

    Paths are opened through their own filesystem (local or object storage). Unreadable files
    leave their cell empty rather than failing the sheet.
    """
    rows = max(1, math.ceil(len(png_paths) / columns))
    sheet = Image.new("RGBA", (columns * cell, rows * cell), _SHEET_BACKGROUND)
    for position, path in enumerate(png_paths):
        try:
            with path.open("rb") as file, Image.open(file, formats=["PNG"]) as image:
                thumbnail = image.convert("RGBA")
        except OSError:
            continue
        thumbnail.thumbnail((cell, cell), Image.Resampling.LANCZOS, reducing_gap=2.0)
        row, column = divmod(position, columns)
        corner = (column * cell + (cell - thumbnail.width) // 2, row * cell + (cell - thumbnail.height) // 2)
        sheet.alpha_composite(thumbnail, corner)
    buffer = io.BytesIO()
    sheet.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()
