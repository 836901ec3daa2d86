"""Colour handling: every decoded frame ends as 8-bit sRGB, RGB or RGBA, whatever it came as.

Colour profiles are applied with LittleCMS (ImageCms) rather than ignored, because a Display-P3
or CMYK source read as sRGB has visibly wrong colours and the model learns from colour. A profile
that cannot be read or does not fit the pixels is ignored rather than failing the image: the
pixels are still the artist's, only their interpretation is uncertain. Profiles that describe
sRGB are skipped, since converting sRGB to sRGB would only add rounding.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, ImageCms

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


@lru_cache(maxsize=64)
def _transform_to_srgb(icc: bytes, in_mode: str, out_mode: str) -> ImageCms.ImageCmsTransform | None:
    """A cached transform from an embedded profile to sRGB; None for sRGB or unusable profiles."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(profile).lower():
            return None
        return ImageCms.buildTransform(profile, _SRGB, in_mode, out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """`image` (RGB, RGBA or CMYK) in sRGB, RGB or RGBA, using its embedded profile when it has one."""
    out_mode = "RGBA" if image.mode == "RGBA" else "RGB"
    transform = _transform_to_srgb(icc, image.mode, out_mode) if icc else None
    if transform is not None:
        return ImageCms.applyTransform(image, transform)
    return image if image.mode == out_mode else image.convert(out_mode)


def working_mode(image: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """`image` as RGB or RGBA, and the profile still to apply (None once it has been used).

    CMYK is converted here, through its profile, because nothing downstream handles four ink
    channels. 16-bit greyscale keeps its high byte (PIL's own conversion clips at 255 instead,
    turning most 16-bit images white). Palette, grey and 1-bit images with a transparent colour
    become RGBA, the rest RGB; whether the alpha is really used is decided later, on fewer pixels.
    """
    if image.mode == "CMYK":
        return to_srgb(image, icc), None
    if image.mode in _SIXTEEN_BIT_MODES:
        high_bytes = (np.clip(np.asarray(image), 0, 0xFFFF) >> 8).astype(np.uint8)
        return Image.fromarray(high_bytes).convert("RGB"), None
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return (image if image.mode == "RGBA" else image.convert("RGBA")), icc
    return (image if image.mode == "RGB" else image.convert("RGB")), icc


def settle_alpha(pixels: np.ndarray) -> np.ndarray:
    """RGB if no pixel is transparent at all, else RGBA with colour cleared under alpha 0.

    Declared-but-unused alpha is dropped so the row's mode says what the image needs. Invisible
    pixels keep no stray colour, which would otherwise count as extra colours and break up
    pixel-art blocks that only differ where nobody can see.
    """
    if pixels.shape[2] == 3:
        return pixels
    alpha = pixels[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(pixels[..., :3])
    settled = pixels.copy()
    settled[alpha == 0] = 0
    return settled
