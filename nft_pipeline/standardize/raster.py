"""PNG, JPEG, GIF and WebP decoding (still and animated) into one upright frame.

Guards come before pixels: PIL reads only the header on open, so the declared size is checked
against the pixel cap and the frame count against the frame cap before any frame is decoded. Each
file may only be opened by the decoder of its sniffed type, so a crafted file cannot reach
another of PIL's many parsers. Truncated files stay errors: `ImageFile.LOAD_TRUNCATED_IMAGES`
is left off, because a half-grey image is worse training data than no image.
"""

from __future__ import annotations

import io
import math
import warnings

from PIL import ExifTags, Image, ImageOps

from nft_pipeline import sniff
from nft_pipeline.standardize.colour import working_mode
from nft_pipeline.standardize.frame import (
    Frame,
    check_frames,
    check_pixels,
    choose_frame,
)
from nft_pipeline.standardize.model import Rejected, StandardizeSettings, Status

PIL_FORMATS = {sniff.PNG: "PNG", sniff.JPEG: "JPEG", sniff.GIF: "GIF", sniff.WEBP: "WEBP"}
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees


def decode_raster(data: bytes, source_type: str, settings: StandardizeSettings, seed_key: str) -> Frame:
    """The chosen frame of a raster image, EXIF-oriented, as RGB or RGBA (colours not yet sRGB)."""
    with warnings.catch_warnings():
        # Our own cap decides; PIL's bomb warning (and its error at twice its limit) mean the same.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[PIL_FORMATS[source_type]])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise Rejected(Status.TOO_MANY_PIXELS, str(exc)) from exc
    check_pixels(image.width, image.height, settings)
    n_frames = getattr(image, "n_frames", 1)
    check_frames(n_frames, settings)
    frame_index = choose_frame(seed_key, settings.seed, n_frames) if n_frames > 1 else 0
    if frame_index:
        image.seek(frame_index)  # decodes the frames before it: animations compose over them
    declared = image.size
    if source_type == sniff.JPEG:
        _draft_for_width(image, settings.width)
    image.load()
    icc = image.info.get("icc_profile")
    stored = image.size
    ImageOps.exif_transpose(image, in_place=True)
    upright = declared if image.size == stored else (declared[1], declared[0])
    rgb, icc = working_mode(image, icc)
    return Frame(rgb, icc, frame_index, n_frames, upright)


def _draft_for_width(image: Image.Image, width: int) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the output is at most half as wide.

    DCT scaling skips most of the decoding work and never goes below the requested size, so the
    Lanczos resize that follows still shrinks. The side that becomes the output's width is
    the source height when the EXIF orientation turns the image by 90 degrees.
    """
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    across = image.height if orientation in _SWAPS_AXES else image.width
    if across < 2 * width:
        return
    ratio = width / across
    image.draft(None, (math.ceil(image.width * ratio), math.ceil(image.height * ratio)))
