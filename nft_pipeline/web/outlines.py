"""Trait outlines for the page: where a matched trait is in a hit's image, drawn as a transparent PNG.

The `components` table (components/) holds each trait value's mask and colours at the standardized
size. For one token, `token_component_mask` keeps the mask's pixels this token actually shows (a
higher layer may cover part of it); the outline is that mask's edge, a few pixels wide, in the
page's accent colour, transparent elsewhere, so the page lays it over the image on hover.

A collection's components are read once (one Parquet file) and outlines are remembered, so hovering
over a page of hits costs one small PNG encode per (token, trait) the first time.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from PIL import Image

from nft_pipeline import schemas
from nft_pipeline.components import token_component_mask
from nft_pipeline.storage import DataLayout, read_table

OUTLINE_RGBA = (124, 196, 255, 255)  # the page's --accent
OUTLINE_PIXELS = 6  # edge width at the standardized 512 px


def _decoded(png: bytes, mode: str) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert(mode))


def edge(mask: np.ndarray, width: int = OUTLINE_PIXELS) -> np.ndarray:
    """The pixels of `mask` within `width` of its outside (a morphological inner edge)."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return mask & ~inner


class ComponentOutlines:
    """Outline PNGs of trait components under one data directory."""

    def __init__(self, data_dir: Path):
        self.layout = DataLayout(data_dir)
        self.outline = lru_cache(maxsize=2048)(self._outline)
        self._components = lru_cache(maxsize=64)(self._read_components)

    def _read_components(self, collection: str) -> dict[tuple[str, str], tuple[bytes, bytes]]:
        table = read_table(self.layout.partition_path("components", collection), schemas.COMPONENTS)
        table = table.filter(pc.equal(table["status"], "ok"))
        return {
            (row["trait_type"], row["value"]): (row["mask_png"], row["rgba_png"])
            for row in table.select(["trait_type", "value", "mask_png", "rgba_png"]).to_pylist()
            if row["mask_png"] and row["rgba_png"]
        }

    def _outline(self, collection: str, trait_type: str, value: str, token_png: Path) -> bytes | None:
        """The outline PNG of one trait in one token's image, or None without a usable component."""
        component = self._components(collection).get((trait_type, value))
        if component is None:
            return None
        mask = _decoded(component[0], "L") > 0
        rgba = _decoded(component[1], "RGBA")
        with Image.open(token_png) as opened:
            token = np.asarray(opened.convert("RGBA"))
        if token.shape[:2] != mask.shape:
            return None
        shown = token_component_mask(mask, rgba, token)
        outline = np.zeros((*mask.shape, 4), np.uint8)
        outline[edge(shown)] = OUTLINE_RGBA
        buffer = io.BytesIO()
        Image.fromarray(outline, "RGBA").save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()
