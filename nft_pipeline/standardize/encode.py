"""Lossless PNG encoding: a palette PNG when the image has at most 256 exact colours, else RGB(A).

The palette is built from the exact colours (no quantiser, no dithering), so decoding the PNG
gives back every pixel unchanged; pixel art and flat SVG art shrink several-fold this way, and
PNG picks 1, 2 or 4 bits per pixel for small palettes.

Compression levels (zlib, Pillow 13's encoder), measured on our real outputs with
`python benchmarks/bench_standardize.py --png-levels`, ms to encode / KB per image, 2-core VM:

    level            punks (P)     Nouns SVG (P)  photo PNG (RGB)  GIF frame (RGB)  vector SVG (RGBA)
    1                0.97 / 1.75   1.02 / 1.98    35.5 / 381       20.4 / 161       12.1 / 97.4
    4                1.45 / 1.18   1.49 / 1.40    63.7 / 319       22.1 / 129       13.2 / 81.6
    6 (PIL default)  2.01 / 1.25   2.14 / 1.45    226  / 326       41.4 / 124       21.2 / 66.1
    8                2.28 / 0.89   2.41 / 1.01    238  / 325       132  / 121       67.8 / 64.4
    9                3.17 / 0.89   3.59 / 0.98    273  / 325       236  / 119       124  / 60.7
    9 + optimize     2.23 / 0.9    3.46 / 1.0     290  / 319       280  / 119       150  / 62.9

Level 4 is the knee for both kinds. Photographs: within 2% of the smallest output at a quarter of
the default level's time (Pillow's adaptive row filters make levels 6-9 several times slower for
nothing). Palette images: a third smaller than levels 1-3; levels 8-9 save another 0.3 KB an
image (about 3 GB per 10 million tokens) for 1-2 ms each, a fifth of a punk's whole budget.
`optimize` only adds time.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from nft_pipeline.standardize.model import StandardizeSettings

MAX_PALETTE = 256


@dataclass(frozen=True)
class Palette:
    """An indexed form of an image: `colours` (N x C, N <= 256) and one index per pixel."""

    colours: np.ndarray
    indices: np.ndarray

    def index_of(self, colour: np.ndarray) -> int:
        return int(np.flatnonzero((self.colours == colour).all(axis=1))[0])

    def indexed_image(self) -> Image.Image:
        """The indices as a "P" image (its palette is attached when it is encoded)."""
        height, width = self.indices.shape
        return Image.frombytes("P", (width, height), np.ascontiguousarray(self.indices).tobytes())


def _pack(pixels: np.ndarray) -> np.ndarray:
    """Each pixel's channels as one uint32, so colours compare and sort as numbers."""
    packed = np.zeros(pixels.shape[:-1], dtype=np.uint32)
    for channel in range(pixels.shape[-1]):
        packed |= pixels[..., channel].astype(np.uint32) << (8 * channel)
    return packed


def exact_palette(pixels: np.ndarray, extra_colour: np.ndarray | None = None) -> Palette | None:
    """The exact palette of an H x W x C image (plus `extra_colour`), or None past 256 colours."""
    counted = Image.fromarray(pixels).getcolors(MAX_PALETTE)
    if counted is None:
        return None
    colours = np.array([colour for _, colour in counted], dtype=np.uint8).reshape(-1, pixels.shape[2])
    if extra_colour is not None:
        colours = np.vstack([colours, extra_colour.reshape(1, -1)])
    values = np.unique(_pack(colours))
    if values.size > MAX_PALETTE:
        return None
    indices = np.searchsorted(values, _pack(pixels)).astype(np.uint8)
    unpacked = ((values[:, None] >> (8 * np.arange(pixels.shape[2], dtype=np.uint32))) & 0xFF).astype(np.uint8)
    return Palette(unpacked, indices)


def encode_indexed(image: Image.Image, colours: np.ndarray, settings: StandardizeSettings) -> bytes:
    """A palette PNG of a "P" image of indices into `colours`; RGBA colours get a tRNS chunk."""
    image.putpalette(np.ascontiguousarray(colours[:, :3]).tobytes(), "RGB")
    options = {"transparency": colours[:, 3].tobytes()} if colours.shape[1] == 4 else {}
    return _save(image, settings.png_compress_level, options)


def encode_png(pixels: np.ndarray, settings: StandardizeSettings) -> bytes:
    """A lossless PNG of an H x W x 3|4 uint8 image: indexed when its colours fit a palette."""
    palette = exact_palette(pixels)
    if palette is not None:
        return encode_indexed(palette.indexed_image(), palette.colours, settings)
    return _save(Image.fromarray(pixels), settings.png_compress_level, {})


def _save(image: Image.Image, level: int, options: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=level, **options)
    return buffer.getvalue()
