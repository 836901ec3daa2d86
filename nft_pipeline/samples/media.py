"""Encoders for the media formats the samples serve, all deterministic for the same pixels.

Determinism matters: tests compare bytes from two gateways, and the pipeline deduplicates media
by content hash, so re-encoding the same token must give the same file.
"""

import io
from collections.abc import Sequence

import av
import numpy as np
from PIL import Image

MP4_CODEC = "libx264"


def _encode(image: Image.Image, format_name: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format_name, **options)
    return buffer.getvalue()


def encode_png(rgba: np.ndarray) -> bytes:
    return _encode(Image.fromarray(rgba), "PNG")


def encode_jpeg(rgb: np.ndarray, quality: int = 88) -> bytes:
    return _encode(Image.fromarray(rgb), "JPEG", quality=quality)


def encode_webp(rgb: np.ndarray, quality: int = 80) -> bytes:
    return _encode(Image.fromarray(rgb), "WEBP", quality=quality, method=4)


def encode_gif(frames: Sequence[np.ndarray], frame_ms: int) -> bytes:
    """A looping animated GIF of RGB frames; consecutive frames must differ or PIL merges them."""
    first, *rest = (Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE) for frame in frames)
    return _encode(first, "GIF", save_all=True, append_images=rest, duration=frame_ms, loop=0)


def encode_mp4(frames: Sequence[np.ndarray], fps: int) -> bytes:
    """An H.264 (yuv420p) MP4 of RGB frames with even sides.

    One encoder thread and bit-exact muxing keep the bytes independent of the machine and clock.
    """
    height, width = frames[0].shape[:2]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(MP4_CODEC, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.options = {"preset": "veryfast", "crf": "26"}
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()
