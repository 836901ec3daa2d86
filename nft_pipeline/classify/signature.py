"""Image signatures that survive what copies do to a picture: a perceptual hash and an aligned thumbnail.

A copy of an NFT is usually re-encoded (JPEG, WebP), enlarged by another factor, moved on its
canvas, put on another background and lightly recoloured. Both signatures undo these first:

1. Background: the colour of the image's border (its median), or transparency. Pixels within
   `BACKGROUND_DISTANCE` of it (per channel) connected to the border, or transparent, are
   background; the rest is the figure (`_figure_mask`).
2. Alignment: the figure's bounding box is cut out and resampled (area average) to `GRID` x `GRID`:
   shifts, margins and scale are gone. A cell's colour is averaged over figure pixels at least
   `EDGE_PIXELS` inside the figure, away from the blur and JPEG ringing a copy's edges carry.
3. Colour: kept, scaled to (x - 128) / 64; background cells are set to `BACKGROUND_LEVEL`, whatever
   colour the background was. Standardizing each channel instead (which would undo any recolour)
   also undid skin tones, which are all that tells a Male 1 punk from a Male 2 with the same hair:
   on 300 copies it picked the wrong punk 2.3% of the time, raw colour 0.7% (docs/benchmarks.md).

From the aligned grid:
- the perceptual hash (pHash): the signs of the 8 x 8 lowest 2-D DCT frequencies of its luminance
  against their median, 64 bits. Hamming distance between hashes is the cheap candidate test;
- the aligned thumbnail: the grid smoothed by a Gaussian of `BLUR_CELLS` (a copy's figure lands
  within a cell of the original's), flattened and unit-normalized (`clones.thumbnail_vectors`), so
  the cosine of two thumbnails compares the figures cell by cell.

Implemented here with numpy, Pillow and scipy's DCT rather than a hashing library (`imagehash`):
the hash is 15 lines, and the part that matters for NFT copies — cutting the figure from its
background before hashing — is not what such libraries do (they hash the whole frame, which a
shift on a larger canvas changes).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from nft_pipeline.location import Location

READ_SIZE = 128  # the 512 px standardized image is reduced 4x (area average) before anything else
GRID = 32
HASH_SIDE = 8
BACKGROUND_DISTANCE = 10  # per channel, out of 255: JPEG noise in a flat background stays below it
BACKGROUND_LEVEL = 2.5  # background cells, on the colour scale (x - 128) / 64: apart from white (2) and black (-2)
EDGE_PIXELS = 4  # at READ_SIZE: the colour of a cell is read inside the figure, this far from its edge
BLUR_CELLS = 0.7
SIGNATURE_DIM = GRID * GRID * 3


def _figure_mask(rgba: np.ndarray) -> np.ndarray:
    """True where the pixel belongs to the figure, not the background (see the module docstring).

    On an opaque background, the background is what is connected to the border in the border's
    colour (a face as light as the background stays figure when an outline encloses it). A resampled
    copy blurs the figure's edge into the background: an edge pixel counts as figure when it is at
    least half as far from the background colour as the figure next to it (the half-way crossing,
    where a transparent original's alpha crosses one half), so the blur does not widen the figure.
    """
    from scipy.ndimage import binary_dilation, label, maximum_filter

    opaque = rgba[..., 3] >= 128
    border = np.concatenate([rgba[0], rgba[-1], rgba[:, 0], rgba[:, -1]])
    border = border[border[:, 3] >= 128]
    if len(border) < 0.5 * (4 * rgba.shape[0]):  # a mostly transparent border: transparency is the background
        return opaque
    colour = np.median(border[:, :3], axis=0).astype(np.int16)
    distance = np.abs(rgba[..., :3].astype(np.int16) - colour).max(axis=-1)
    regions, _ = label((distance <= BACKGROUND_DISTANCE) | ~opaque)
    edge = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    figure = ~np.isin(regions, edge[edge > 0])
    rim = binary_dilation(~figure, iterations=2) & figure
    nearby = maximum_filter(distance, size=5)
    return figure & ~(rim & (2 * distance < nearby))


def _area_average(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """GRID x GRID weighted means of `values` (H x W x C) over equal areas: figure pixels only."""
    def resized(plane: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize((GRID, GRID), Image.Resampling.BOX))

    weight = resized(weights)
    sums = np.stack([resized(values[..., c] * weights) for c in range(values.shape[-1])], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight[..., None] > 0.05, sums / weight[..., None], np.nan), weight


def aligned_grid(image: Image.Image) -> np.ndarray | None:
    """GRID x GRID x 3 float32: the figure cut out, resampled and standardized; None for a blank image."""
    rgba = np.asarray(image.convert("RGBA").resize((READ_SIZE, READ_SIZE), Image.Resampling.BOX))
    mask = _figure_mask(rgba)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) < 2 or len(cols) < 2:
        return None
    from scipy.ndimage import binary_erosion

    crop = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    core = binary_erosion(mask, iterations=EDGE_PIXELS)[crop]  # without the edge a resampled copy blurs
    colours = rgba[crop][..., :3].astype(np.float32)
    pixels, _ = _area_average(colours, core.astype(np.float32))
    edge_pixels, coverage = _area_average(colours, mask[crop].astype(np.float32))
    figure = coverage >= 0.5
    thin = figure & ~np.isfinite(pixels).all(axis=-1)  # no core (an earring, a cigarette): all its figure pixels
    pixels[thin] = edge_pixels[thin]
    if figure.sum() < 2:
        return None
    scaled = (pixels - 128.0) / 64.0
    scaled[~figure] = BACKGROUND_LEVEL
    return scaled.astype(np.float32)


def perceptual_hash(grid: np.ndarray) -> int:
    """64-bit pHash of an aligned grid: signs of its lowest DCT frequencies against their median."""
    from scipy.fft import dctn

    luminance = grid @ np.array([0.299, 0.587, 0.114], np.float32)
    low = dctn(luminance, norm="ortho")[:HASH_SIDE, :HASH_SIDE].reshape(-1)
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def read_signature(path: Location) -> tuple[int, np.ndarray] | None:
    """(pHash, aligned grid) of the image at `path`, or None when it cannot be read or is blank."""
    try:
        with path.open("rb") as file, Image.open(file) as image:
            grid = aligned_grid(image)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    if grid is None:
        return None
    return perceptual_hash(grid), grid


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit differences between uint64 hashes (broadcasting)."""
    x = np.bitwise_xor(a, b)
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1)
