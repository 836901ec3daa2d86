"""`standardize_image`: one source's bytes in, one standard PNG and its row out, never an exception.

Every source is decoded by the decoder of its sniffed type (never its file name or declared
type), reduced to one upright sRGB frame, then either integer-upscaled as pixel art
(`pixelart.py`) or resized with Lanczos (photographs, shrinking uses PIL's `reducing_gap`, which
first box-reduces by an integer factor, and JPEG's DCT draft) or, for vector SVG, drawn at the
output size. The output is `settings.width` wide and `round(width * h / w)` high; sources whose
longer side exceeds `settings.max_aspect` times the shorter are refused (`bad_aspect`), since
banners and strips 4:1 and beyond become unusable slivers or towers at width 512.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
from PIL import Image

from nft_pipeline import sniff
from nft_pipeline.sniff import sniff_media_type
from nft_pipeline.standardize.colour import settle_alpha, to_srgb
from nft_pipeline.standardize.encode import encode_indexed, encode_png, exact_palette
from nft_pipeline.standardize.frame import Frame
from nft_pipeline.standardize.model import (
    ImageRow,
    Rejected,
    Resample,
    StandardizedImage,
    StandardizeSettings,
    Status,
    TimeLimitExceeded,
)
from nft_pipeline.standardize.pixelart import (
    margin_colour,
    might_be_pixel_art,
    pixel_art_block,
    place,
    upscale,
)
from nft_pipeline.standardize.raster import PIL_FORMATS, decode_raster
from nft_pipeline.standardize.svg import SvgDocument, parse_svg, render_svg
from nft_pipeline.standardize.video import decode_video

SNIFF_BYTES = 512
MAX_ERROR_CHARS = 500


def standardize_image(data: bytes, settings: StandardizeSettings, seed_key: str) -> StandardizedImage:
    """Standardize one source (`seed_key`, e.g. "collection/token_id", picks animation frames).

    Pure: no files are read or written. Failures come back as a row with a status and reason.
    """
    row = ImageRow(
        status=Status.OK,
        source_sha256=hashlib.sha256(data).hexdigest(),
        source_type=sniff_media_type(data[:SNIFF_BYTES]),
    )
    try:
        return _standardize(data, row, settings, seed_key)
    except Rejected as exc:
        return StandardizedImage(replace(row, status=exc.status, error=exc.reason))
    except TimeLimitExceeded:
        return StandardizedImage(replace(row, status=Status.TIMEOUT, error=f"over {settings.timeout_s} s"))
    except Exception as exc:  # noqa: BLE001 - decoders of untrusted bytes raise anything; it is data
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        return StandardizedImage(replace(row, status=Status.DECODE_ERROR, error=error))


def output_size(settings: StandardizeSettings, source_width: float, source_height: float) -> tuple[int, int]:
    """(width, round(width * h / w)), or `bad_aspect` past the aspect cap."""
    if max(source_width / source_height, source_height / source_width) > settings.max_aspect:
        raise Rejected(Status.BAD_ASPECT, f"{source_width:g}x{source_height:g} exceeds aspect {settings.max_aspect:g}")
    return settings.width, max(1, round(settings.width * source_height / source_width))


def _standardize(data: bytes, row: ImageRow, settings: StandardizeSettings, seed_key: str) -> StandardizedImage:
    if len(data) > settings.max_source_bytes:
        raise Rejected(Status.TOO_LARGE, f"{len(data)} bytes exceed {settings.max_source_bytes}")
    if row.source_type == sniff.SVG:
        return _from_svg(parse_svg(data, settings), row, settings)
    if row.source_type in sniff.VIDEO_TYPES:
        return _from_frame(decode_video(data, settings, seed_key), row, settings)
    if row.source_type in PIL_FORMATS:
        return _from_frame(decode_raster(data, row.source_type, settings, seed_key), row, settings)
    raise Rejected(Status.UNSUPPORTED, f"sniffed type {row.source_type}")


def _from_frame(frame: Frame, row: ImageRow, settings: StandardizeSettings) -> StandardizedImage:
    image = frame.image
    source_width, source_height = frame.source_size
    size = output_size(settings, source_width, source_height)
    row = replace(
        row,
        frame_index=frame.frame_index,
        n_frames=frame.n_frames,
        source_width=source_width,
        source_height=source_height,
    )
    if might_be_pixel_art(image, settings.width):
        pixels = settle_alpha(np.asarray(image))
        block = pixel_art_block(pixels, settings.width)
        if block is not None:
            art = np.ascontiguousarray(pixels[::block, ::block])
            if frame.icc:
                art = settle_alpha(np.asarray(to_srgb(Image.fromarray(art), frame.icc)))
            return _pixel_art(art, block, size, row, settings)
    resized = image if image.size == size else image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    pixels = settle_alpha(np.asarray(to_srgb(resized, frame.icc)))
    png = encode_png(pixels, settings)
    return _done(row, png, size, pixels.shape[2], 1, size[0] / source_width, (0, 0), Resample.LANCZOS)


def _from_svg(document: SvgDocument, row: ImageRow, settings: StandardizeSettings) -> StandardizedImage:
    width, height = document.size
    size = output_size(settings, width, height)
    row = replace(row, frame_index=0, n_frames=1, source_width=round(width), source_height=round(height))
    if document.grid_cells is not None and settings.width // document.grid_cells[0] >= 2:
        cells_wide, cells_high = document.grid_cells
        art = settle_alpha(np.asarray(render_svg(document, cells_wide, cells_high)))
        return _pixel_art(art, max(1, round(width / cells_wide)), size, row, settings)
    pixels = settle_alpha(np.asarray(render_svg(document, *size)))
    scale = size[0] / width
    png = encode_png(pixels, settings)
    return _done(row, png, size, pixels.shape[2], 1, scale, (0, 0), Resample.VECTOR)


def _pixel_art(
    art: np.ndarray, block: int, size: tuple[int, int], row: ImageRow, settings: StandardizeSettings
) -> StandardizedImage:
    """Upscale art pixels into exact blocks; the palette is taken on the art, before the upscale."""
    placement = place(art.shape[1], art.shape[0], *size)
    fill = margin_colour(art)
    palette = exact_palette(art, fill)
    if palette is not None:
        canvas = upscale(palette.indexed_image(), placement, size, palette.index_of(fill))
        png = encode_indexed(canvas, palette.colours, settings)
    else:
        canvas = upscale(Image.fromarray(art), placement, size, tuple(fill.tolist()))
        png = encode_png(np.asarray(canvas), settings)
    pad = (placement.pad_x, placement.pad_y)
    return _done(row, png, size, art.shape[2], block, placement.scale, pad, Resample.NEAREST)


def _done(
    row: ImageRow,
    png: bytes,
    size: tuple[int, int],
    channels: int,
    block: int,
    scale: float,
    pad: tuple[int, int],
    resample: Resample,
) -> StandardizedImage:
    return StandardizedImage(
        replace(
            row,
            png_sha256=hashlib.sha256(png).hexdigest(),
            width=size[0],
            height=size[1],
            mode="RGBA" if channels == 4 else "RGB",
            block=block,
            scale=scale,
            pad_x=pad[0],
            pad_y=pad[1],
            resample=resample,
        ),
        png,
    )
