"""Pixel art as SVG rectangles, the way on-chain renderers such as Nouns' SVGRenderer draw it.

Each layer is painted in order; on every row, a run of equal, non-transparent pixels becomes one
`<rect>`. The result is exact: rasterising the SVG at 1/scale gives back the composed pixels.
"""

from collections.abc import Iterable

import numpy as np


def _runs(layer: np.ndarray) -> Iterable[tuple[int, int, int, str]]:
    """(y, x, length, "#rrggbb") for each run of equal opaque colour along the rows of an RGBA layer."""
    width = layer.shape[1]
    packed = (layer.astype(np.uint32) @ np.array([1 << 24, 1 << 16, 1 << 8, 1], dtype=np.uint32)).ravel()
    is_start = np.ones(packed.size, dtype=bool)
    is_start[1:] = packed[1:] != packed[:-1]
    is_start[::width] = True
    starts = np.flatnonzero(is_start)
    lengths = np.diff(starts, append=packed.size)
    opaque = (packed[starts] & 0xFF) > 0
    for start, length, rgba in zip(starts[opaque].tolist(), lengths[opaque].tolist(), packed[starts[opaque]].tolist()):
        y, x = divmod(start, width)
        yield y, x, length, f"#{rgba >> 8:06x}"


def pixel_art_svg(layers: Iterable[np.ndarray], size: int, scale: int, background: str | None) -> str:
    """An SVG of `size`x`size` pixel art (RGBA layers, bottom first) drawn at `scale` units a pixel.

    `background` ("#rrggbb") fills the canvas first, as Nouns' renderer does. Pixels must be
    fully opaque or fully transparent; any non-zero alpha is painted opaque.
    """
    side = size * scale
    parts = [
        f'<svg width="{side}" height="{side}" viewBox="0 0 {side} {side}" '
        'xmlns="http://www.w3.org/2000/svg" shape-rendering="crispEdges">'
    ]
    if background is not None:
        parts.append(f'<rect width="100%" height="100%" fill="{background}" />')
    for layer in layers:
        for y, x, length, colour in _runs(layer):
            parts.append(
                f'<rect width="{length * scale}" height="{scale}" x="{x * scale}" y="{y * scale}" fill="{colour}" />'
            )
    parts.append("</svg>")
    return "".join(parts)
