"""The `components` stage over one collection: standardized PNGs + caption tags -> component rows.

Images are decoded lazily, one at a time, as the separation reads them (it keeps one pixel per art
pixel), so a collection never sits in memory at 512 px. When every image was enlarged from pixel
art with the same geometry, the standardize rows give the pixel grid directly. The PNGs may be on
object storage: `files` turns a row's `png_path` into a path on the right filesystem.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from nft_pipeline.components.grid import PixelGrid
from nft_pipeline.components.separate import DEFAULT_CONFIG, ComponentConfig
from nft_pipeline.components.table import components_table
from nft_pipeline.location import Location


class PngStack(Sequence[np.ndarray]):
    """PNG files read as RGBA arrays on access (a lazy image stack)."""

    def __init__(self, paths: Sequence[Location]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        with self.paths[index].open("rb") as file, Image.open(file) as image:
            return np.asarray(image.convert("RGBA"))


def shared_grid(rows: Sequence[dict]) -> PixelGrid | None:
    """The pixel grid if all images are pixel art enlarged the same way (else detect from pixels)."""
    geometry = {(r["height"], r["width"], r["scale"], r["pad_y"], r["pad_x"]) for r in rows}
    if len(geometry) != 1 or any(r["resample"] != "nearest" for r in rows):
        return None
    height, width, scale, top, left = geometry.pop()
    if scale is None or not float(scale).is_integer():
        return None
    return PixelGrid.from_padding(height, width, int(scale), top, left)


def collection_components(
    collection: str,
    images: pa.Table,
    captions: pa.Table,
    config: ComponentConfig = DEFAULT_CONFIG,
    files: Callable[[str], Location] = Path,
) -> pa.Table:
    """The collection's components table from its `standardized_images` and `captions` tables."""
    tags = {row["token_id"]: row["tags"] for row in captions.select(["token_id", "tags"]).to_pylist()}
    rows = [r for r in images.to_pylist() if r["status"] == "ok" and r["png_path"] and r["token_id"] in tags]
    pngs = {r["token_id"]: files(r["png_path"]) for r in rows}
    rows = [r for r in rows if pngs[r["token_id"]].exists()]
    traits = [[(tag["trait_type"], tag["value"]) for tag in tags[r["token_id"]]] for r in rows]
    return components_table(collection, PngStack([pngs[r["token_id"]] for r in rows]), traits, config, shared_grid(rows))
