"""The pixel grid of standardized pixel art, so components are found at the art's own resolution.

The standardize stage enlarges pixel art by an integer factor with nearest-neighbour and centres
it on a 512 px canvas (a 24 px CryptoPunk becomes 21 px blocks from (4, 4), a 32 px Noun 16 px
blocks from (0, 0)). Every decision about a component is the same for all pixels of a block, so
the work is done on one pixel per block, 256 times fewer for a Noun, and masks are enlarged back
at the end. The grid is taken from the standardize rows when the caller knows it, or detected from
a sample of images: the gcd of the distances between colour changes gives the block, the first
change its offset, and the sample must then be exactly constant on every block (and on the margin
outside the grid), or the identity grid (block 1) is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GRID_SAMPLE = 48  # images looked at to detect a grid, spread over the collection


@dataclass(frozen=True)
class PixelGrid:
    """Art pixels are `block` x `block` squares from (`top`, `left`), `rows` x `cols` of them, on a height x width canvas."""

    height: int
    width: int
    block: int
    top: int
    left: int
    rows: int
    cols: int

    @classmethod
    def identity(cls, height: int, width: int) -> PixelGrid:
        return cls(height, width, 1, 0, 0, height, width)

    @classmethod
    def from_padding(cls, height: int, width: int, block: int, top: int, left: int) -> PixelGrid:
        """The grid of art enlarged `block` times and placed at (top, left), e.g. from a standardize row's scale and padding."""
        return cls(height, width, block, top, left, (height - top) // block, (width - left) // block)


def _change_positions(stack: np.ndarray, axis: int) -> np.ndarray:
    """Positions along `axis` (1 = rows, 2 = columns) where any image's pixel differs from the previous one."""
    changed = np.diff(stack, axis=axis) != 0  # uint8 wraps around, so zero means equal
    other = tuple(i for i in range(stack.ndim) if i != axis)
    return np.flatnonzero(changed.any(axis=other)) + 1


def _fits(stack: np.ndarray, grid: PixelGrid) -> bool:
    """True when every image of `stack` is constant on each block and the margin is one colour everywhere."""
    b = grid.block
    bottom, right = grid.top + grid.rows * b, grid.left + grid.cols * b
    art = stack[:, grid.top : bottom, grid.left : right]
    blocks = art.reshape(len(stack), grid.rows, b, grid.cols, b, -1)
    if not (blocks == blocks[:, :, :1, :, :1]).all():
        return False
    margin = np.ones(stack.shape[1:3], dtype=bool)
    margin[grid.top : bottom, grid.left : right] = False
    pixels = stack[:, margin]
    return pixels.size == 0 or bool((pixels == pixels[:1, :1]).all())


def detect_grid(images: Sequence[np.ndarray]) -> PixelGrid:
    """The grid shared by `images` (H x W x C uint8, all one size), or the identity grid."""
    height, width = np.asarray(images[0]).shape[:2]
    picks = np.unique(np.linspace(0, len(images) - 1, min(GRID_SAMPLE, len(images))).astype(int))
    stack = np.stack([np.asarray(images[int(i)]).reshape(height, width, -1) for i in picks])
    ys, xs = _change_positions(stack, 1), _change_positions(stack, 2)
    block = math.gcd(
        int(np.gcd.reduce(np.diff(ys))) if len(ys) > 1 else 0, int(np.gcd.reduce(np.diff(xs))) if len(xs) > 1 else 0
    )
    if block < 2:
        return PixelGrid.identity(height, width)
    grid = PixelGrid.from_padding(
        height, width, block, int(ys[0]) % block if len(ys) else 0, int(xs[0]) % block if len(xs) else 0
    )
    return grid if grid.rows > 0 and grid.cols > 0 and _fits(stack, grid) else PixelGrid.identity(height, width)


def to_native(image: np.ndarray, grid: PixelGrid) -> np.ndarray:
    """One pixel per block (its centre): the art at its own resolution, rows x cols x C."""
    b, half = grid.block, grid.block // 2
    return image[grid.top + half : grid.top + grid.rows * b : b, grid.left + half : grid.left + grid.cols * b : b]


def to_standardized(native: np.ndarray, grid: PixelGrid) -> np.ndarray:
    """A native-resolution mask or image enlarged onto the canvas; the margin is zero (False, transparent)."""
    canvas = np.zeros((grid.height, grid.width, *native.shape[2:]), dtype=native.dtype)
    enlarged = native.repeat(grid.block, axis=0).repeat(grid.block, axis=1)
    canvas[grid.top : grid.top + enlarged.shape[0], grid.left : grid.left + enlarged.shape[1]] = enlarged
    return canvas
