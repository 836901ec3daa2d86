"""The one frame standardization keeps from a source, and how it is chosen reproducibly.

The paper takes one random frame of each GIF or video. Ours is a function of the token and the
settings' seed: re-running a collection gives the same frames (so unchanged images are skipped
and hashes stay stable), while tokens of one collection still land on different frames.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from PIL import Image

from nft_pipeline.standardize.model import Rejected, StandardizeSettings, Status


@dataclass(frozen=True)
class Frame:
    """A decoded, upright frame in RGB or RGBA, with the profile its colours are still in.

    `source_size` is the upright size the file declares, which `image` may undercut when a JPEG
    was decoded at reduced scale.
    """

    image: Image.Image
    icc: bytes | None
    frame_index: int
    n_frames: int
    source_size: tuple[int, int]


def choose_frame(seed_key: str, seed: int, n_frames: int) -> int:
    """A frame index in [0, n_frames) fixed by the token (`seed_key`) and the settings' seed."""
    digest = hashlib.sha256(f"{seed}\x00{seed_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n_frames


def check_pixels(width: int, height: int, settings: StandardizeSettings) -> None:
    """Refuse a frame whose declared size exceeds the pixel cap, before anything is allocated."""
    if width <= 0 or height <= 0:
        raise Rejected(Status.DECODE_ERROR, f"empty frame {width}x{height}")
    if width * height > settings.max_pixels:
        raise Rejected(Status.TOO_MANY_PIXELS, f"{width}x{height} exceeds {settings.max_pixels} pixels")


def check_frames(n_frames: int, settings: StandardizeSettings) -> None:
    if n_frames > settings.max_frames:
        raise Rejected(Status.TOO_MANY_FRAMES, f"{n_frames} frames exceed {settings.max_frames}")
