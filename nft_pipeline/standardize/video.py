"""One frame of an MP4, MOV or WebM, decoded with PyAV (FFmpeg bundled in its wheels).

The frame is found by seeking, not by decoding from the start: the container seeks to the
keyframe before the chosen time and decoding runs forward to it, so the work is bounded by one
group of pictures, not the video's length. Long videos are therefore fine; the frame cap bounds
the frames decoded after the seek instead (a video with no keyframes would otherwise be decoded
whole).
"""

from __future__ import annotations

import io
import math
from fractions import Fraction
from typing import TYPE_CHECKING

from nft_pipeline.standardize.frame import Frame, check_pixels, choose_frame
from nft_pipeline.standardize.model import Rejected, StandardizeSettings, Status

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream


def decode_video(data: bytes, settings: StandardizeSettings, seed_key: str) -> Frame:
    """The chosen frame of the first video stream, as RGB."""
    import av  # FFmpeg's libraries load on the first video, not with every importer of the standardize package

    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.video:
            kinds = sorted({stream.type for stream in container.streams}) or ["none"]
            raise Rejected(Status.NO_VIDEO_STREAM, f"streams: {', '.join(kinds)}")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1  # the pool already keeps every core busy
        check_pixels(stream.codec_context.width or 1, stream.codec_context.height or 1, settings)
        rate = stream.average_rate or stream.guessed_rate
        n_frames = _frame_count(container, stream, rate)
        frame_index = choose_frame(seed_key, settings.seed, n_frames) if n_frames > 1 else 0
        return _frame_at(container, stream, rate, frame_index, n_frames, settings)


def _frame_count(container: InputContainer, stream: VideoStream, rate: Fraction | None) -> int:
    """The stream's frame count from its header, else estimated from its duration (WebM has none)."""
    if stream.frames:
        return stream.frames
    if rate is None:
        return 1
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    else:
        import av  # loaded by decode_video already

        seconds = (container.duration or 0) / av.time_base
    return max(1, math.floor(seconds * rate))


def _frame_at(
    container: InputContainer,
    stream: VideoStream,
    rate: Fraction | None,
    frame_index: int,
    n_frames: int,
    settings: StandardizeSettings,
) -> Frame:
    """Seek to the keyframe before `frame_index` and decode forward to the first frame at or after it.

    The index recorded is the one of the frame actually returned (a video may end sooner than
    its header says), derived from its timestamp.
    """
    start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
    target = start + (frame_index / rate if rate else 0.0)
    half_frame = 0.5 / rate if rate else 0.0
    if frame_index and stream.time_base:
        container.seek(int(target / stream.time_base), stream=stream)
    chosen = None
    for decoded, frame in enumerate(container.decode(stream), start=1):
        chosen = frame
        if frame.time is None or frame.time >= target - half_frame:
            break
        if decoded >= settings.max_frames:
            raise Rejected(
                Status.TOO_MANY_FRAMES, f"over {settings.max_frames} frames decoded to reach frame {frame_index}"
            )
    if chosen is None:
        raise Rejected(Status.DECODE_ERROR, "the video stream has no decodable frame")
    check_pixels(chosen.width, chosen.height, settings)
    if chosen.time is not None and rate:
        frame_index = min(n_frames - 1, max(0, round((chosen.time - start) * rate)))
    return Frame(chosen.to_image(), None, frame_index, n_frames, (chosen.width, chosen.height))
