"""Pixel art: recognising it, and upscaling it by an integer factor so every art pixel stays a square.

The rule. An image is pixel art when either
  * its pixels are exact `b` x `b` blocks for some b >= 2 (an already upscaled sprite: `b` is the
    gcd of all run lengths of equal pixels along rows and columns), or
  * it has at most 256 distinct colours (flat-colour art, never a photograph);
and it is small enough to be enlarged at least twice: `width // (source width / b) >= 2`.
Its art pixels (the source reduced by `b`) are then enlarged by the integer
`k = min(width // art width, height // art height)`, so each becomes an exact k x k block, and
centred on the width x height canvas. The margin totals fewer output pixels than the art has
pixels across: 8 of 512 for a 24 px CryptoPunk (21 x 24 = 504), none for 16, 32 or 64 px art,
a third of the width at worst (171 px art doubled). It is transparent when the art has alpha,
else the most common colour of the art's border, which for the usual solid backdrop makes it
invisible.

Why pad rather than stretch: resizing 24 px to exactly 512 with nearest-neighbour makes some
art pixels 21 and others 22 px wide, a visible irregular grid that a model would learn as a
feature; bilinear or Lanczos blurs every edge. An exact grid with a thin uniform margin keeps
the art as drawn and the output 512 wide; the row's `scale`, `pad_x` and `pad_y` say where it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_PIXEL_ART_COLOURS = 256
_STRIP_ROWS = 16  # rows tried first: a photograph shows a 1 px run within them


@dataclass(frozen=True)
class Placement:
    """Where integer-scaled art sits on the output canvas."""

    scale: int
    pad_x: int
    pad_y: int


def _run_gcd(pixels: np.ndarray, axis: int) -> int:
    """The gcd of the lengths of the runs of equal pixels along `axis` (over all lines)."""
    changed = np.diff(pixels, axis=axis) != 0  # uint8 wraps around, so zero means equal
    other_axes = tuple(i for i in range(pixels.ndim) if i != axis)
    boundaries = np.flatnonzero(changed.any(axis=other_axes)) + 1
    return int(np.gcd.reduce(np.append(boundaries, pixels.shape[axis])))


def block_size(pixels: np.ndarray) -> int:
    """The side `b` of the largest square grid on which the H x W x C image is constant per cell."""
    if _run_gcd(pixels[:_STRIP_ROWS], axis=1) == 1:
        return 1
    return math.gcd(_run_gcd(pixels, axis=1), _run_gcd(pixels, axis=0))


def might_be_pixel_art(image: Image.Image, width: int) -> bool:
    """A cheap pre-test on the first rows, so photographs are never copied into arrays whole."""
    if image.width <= width // 2:
        return True
    strip = np.asarray(image.crop((0, 0, image.width, min(image.height, _STRIP_ROWS))))
    return _run_gcd(strip, axis=1) >= 2


def pixel_art_block(pixels: np.ndarray, width: int) -> int | None:
    """The block size if the image is pixel art by the module's rule, else None."""
    block = block_size(pixels)
    art = np.ascontiguousarray(pixels[::block, ::block])
    if width // art.shape[1] < 2:
        return None
    if block == 1 and Image.fromarray(art).getcolors(MAX_PIXEL_ART_COLOURS) is None:
        return None
    return block


def place(art_width: int, art_height: int, width: int, height: int) -> Placement:
    scale = min(width // art_width, height // art_height)
    return Placement(scale, (width - scale * art_width) // 2, (height - scale * art_height) // 2)


def margin_colour(art: np.ndarray) -> np.ndarray:
    """Transparent for RGBA art; else the most common colour of the outermost ring of art pixels."""
    if art.shape[2] == 4:
        return np.zeros(4, dtype=np.uint8)
    ring = np.concatenate([art[0], art[-1], art[:, 0], art[:, -1]])
    colours, counts = np.unique(ring, axis=0, return_counts=True)
    return colours[counts.argmax()]


def upscale(art: Image.Image, placement: Placement, size: tuple[int, int], fill: int | tuple[int, ...]) -> Image.Image:
    """`art` with each pixel a scale x scale block, placed on a `size` canvas of `fill`.

    Nearest-neighbour by an integer factor samples source pixel floor((x + 0.5) / scale) for
    output pixel x, which is exactly x // scale: every block is whole and uniform.
    """
    blocks = art.resize((art.width * placement.scale, art.height * placement.scale), Image.Resampling.NEAREST)
    canvas = Image.new(art.mode, size, fill)
    canvas.paste(blocks, (placement.pad_x, placement.pad_y))
    return canvas
