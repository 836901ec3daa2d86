"""Standardization on real files made here with PIL and PyAV, and on real CryptoPunks.

Nothing is mocked: every input goes through the real decoders, resvg and a real process pool.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import socket
import struct
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pytest
import resvg_py
from PIL import Image, ImageCms

from nft_pipeline import sniff
from nft_pipeline.standardize import (
    FLAG_IDENTICAL_IMAGES,
    FLAG_NO_ATTRIBUTES,
    FLAG_TOO_FEW_IMAGES,
    STANDARDIZED_IMAGE_FIELDS,
    ImageRow,
    StandardizeJob,
    StandardizeSettings,
    Status,
    collection_flags,
    contact_sheet,
    output_path,
    settings_fingerprint,
    standardize_image,
    standardize_many,
)

PUNKS = Path(__file__).resolve().parent.parent / "nft_pipeline" / "samples" / "data" / "cryptopunks" / "punks.png"
SETTINGS = StandardizeSettings()
FRAME_COLOURS = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (128, 0, 0),
]  # fmt: skip


# --- input makers -------------------------------------------------------------------------------


def encode(image: Image.Image, format_name: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format_name, **options)
    return buffer.getvalue()


@cache
def punk_sheet() -> Image.Image:
    with Image.open(PUNKS) as sheet:
        return sheet.convert("RGBA")


def punk(index: int) -> Image.Image:
    """Real CryptoPunk `index` (24x24 RGBA) from the bundled sprite sheet."""
    x, y = (index % 100) * 24, (index // 100) * 24
    return punk_sheet().crop((x, y, x + 24, y + 24))


def decoded(png: bytes | None) -> np.ndarray:
    assert png is not None
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGBA"))


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A photographic-like RGB image: gradients plus noise, thousands of colours."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 12, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def animation(format_name: str, count: int, **options: object) -> bytes:
    frames = [Image.new("RGB", (40, 30), colour) for colour in FRAME_COLOURS[:count]]
    return encode(frames[0], format_name, save_all=True, append_images=frames[1:], duration=50, **options)


def video(format_name: str, codec: str, count: int = 24, keyframe_every: int = 5) -> bytes:
    """A video whose frame i is solid FRAME_COLOURS[i % 12], keyframes every few frames."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=format_name) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = keyframe_every
        for index in range(count):
            pixels = np.full((48, 64, 3), FRAME_COLOURS[index % len(FRAME_COLOURS)], dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def audio_only_mp4() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        for index in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height RGBA, with a token IDAT: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def swapped_primaries_profile() -> bytes:
    """sRGB's ICC profile with the red and blue primaries exchanged: a genuine non-sRGB RGB profile."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack(">I", icc[128:132])
    offsets = {bytes(icc[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = offsets[b"rXYZ"], offsets[b"bXYZ"]
    icc[red + 4 : red + 12], icc[blue + 4 : blue + 12] = icc[blue + 4 : blue + 12], icc[red + 4 : red + 12]
    for name in ("sRGB".encode("ascii"), "sRGB".encode("utf-16-be")):  # rename it, or it counts as sRGB
        icc[:] = icc.replace(name, name.replace(b"s", b"x"))
    return bytes(icc)


def block_art(size: int, colours: int, seed: int, alpha: bool = False) -> np.ndarray:
    """size x size pixel art with `colours` random colours, a solid ring as its backdrop."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (colours, 4 if alpha else 3), dtype=np.uint8)
    if alpha:
        palette[:, 3] = 255
        palette[0] = 0
    art = palette[rng.integers(0, colours, (size, size))]
    art[0, :], art[-1, :], art[:, 0], art[:, -1] = palette[0], palette[0], palette[0], palette[0]
    return art


def rect_svg(art: np.ndarray, unit: int) -> bytes:
    """Pixel art as one <rect> per pixel at `unit` user units, as on-chain renderers write it."""
    size = art.shape[0] * unit
    rects = "".join(
        f'<rect x="{x * unit}" y="{y * unit}" width="{unit}" height="{unit}" fill="#{r:02x}{g:02x}{b:02x}"/>'
        for y, row in enumerate(art)
        for x, (r, g, b) in enumerate(row)
    )
    root = f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}">'
    return f"{root}{rects}</svg>".encode()


def assert_exact_blocks(output: np.ndarray, art: np.ndarray, scale: int, pad_x: int, pad_y: int, margin: tuple) -> None:
    """Every art pixel is an exact scale x scale block at its place; everything else is `margin`."""
    art_rgba = np.asarray(Image.fromarray(art).convert("RGBA"))
    expected = np.empty_like(output)
    expected[...] = margin
    blocks = art_rgba.repeat(scale, axis=0).repeat(scale, axis=1)
    expected[pad_y : pad_y + blocks.shape[0], pad_x : pad_x + blocks.shape[1]] = blocks
    np.testing.assert_array_equal(output, expected)


def nearest(colour: np.ndarray) -> int:
    return int(np.argmin([np.abs(colour[:3].astype(int) - c).sum() for c in FRAME_COLOURS]))


# --- pixel art ----------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2, 2890, 9999])
def test_cryptopunk_pixels_become_exact_21px_blocks_centred_on_512(index: int) -> None:
    tile = punk(index)
    result = standardize_image(encode(tile, "PNG"), SETTINGS, f"cryptopunks/{index}")
    row = result.row
    assert (row.status, row.source_type, row.resample, row.mode) == ("ok", sniff.PNG, "nearest", "RGBA")
    assert (row.width, row.height, row.scale, row.pad_x, row.pad_y, row.block) == (512, 512, 21, 4, 4, 1)
    art = np.asarray(tile).copy()
    art[art[..., 3] == 0] = 0
    assert_exact_blocks(decoded(result.png), art, 21, 4, 4, margin=(0, 0, 0, 0))
    with Image.open(io.BytesIO(result.png)) as image:
        assert image.mode == "P"  # few colours: stored as an exact palette


def test_already_upscaled_pixel_art_is_detected_by_its_block_size() -> None:
    art = block_art(32, 40, seed=1)
    upscaled = art.repeat(10, axis=0).repeat(10, axis=1)  # 320 x 320, blocks of 10
    row = (result := standardize_image(encode(Image.fromarray(upscaled), "PNG"), SETTINGS, "c/1")).row
    assert (row.block, row.scale, row.pad_x, row.pad_y, row.resample, row.mode) == (10, 16, 0, 0, "nearest", "RGB")
    assert (row.source_width, row.source_height) == (320, 320)
    assert_exact_blocks(decoded(result.png), art, 16, 0, 0, margin=(0, 0, 0, 255))


def test_opaque_pixel_art_margin_takes_its_backdrop_colour() -> None:
    art = block_art(48, 30, seed=2)
    row = (result := standardize_image(encode(Image.fromarray(art), "PNG"), SETTINGS, "c/2")).row
    assert (row.scale, row.pad_x, row.pad_y, row.mode) == (10, 16, 16, "RGB")
    assert_exact_blocks(decoded(result.png), art, 10, 16, 16, margin=(*art[0, 0], 255))


def test_pixel_art_drawn_as_svg_rects_is_rasterised_on_its_grid_then_upscaled_exactly() -> None:
    art = block_art(24, 12, seed=3)
    row = (result := standardize_image(rect_svg(art, unit=10), SETTINGS, "c/3")).row
    assert (row.status, row.source_type, row.resample) == ("ok", sniff.SVG, "nearest")
    assert (row.block, row.scale, row.pad_x, row.pad_y) == (10, 21, 4, 4)
    assert_exact_blocks(decoded(result.png), art, 21, 4, 4, margin=(*art[0, 0], 255))


def test_photographs_are_resized_with_lanczos_to_width_512_keeping_aspect() -> None:
    row = (result := standardize_image(encode(Image.fromarray(photo(600, 400)), "PNG"), SETTINGS, "c/4")).row
    assert (row.status, row.resample, row.width, row.height, row.mode, row.block) == (
        "ok",
        "lanczos",
        512,
        341,
        "RGB",
        1,
    )
    with Image.open(io.BytesIO(result.png)) as image:
        assert (image.mode, image.size) == ("RGB", (512, 341))


def test_a_small_photograph_is_not_mistaken_for_pixel_art() -> None:
    row = standardize_image(encode(Image.fromarray(photo(64, 64)), "PNG"), SETTINGS, "c/5").row
    assert (row.resample, row.block) == ("lanczos", 1)


# --- formats, orientation, colour ---------------------------------------------------------------


def test_jpeg_exif_orientation_6_is_applied() -> None:
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[:, :100] = (255, 0, 0)  # stored: red left half, blue right half
    pixels[:, 100:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: the left half goes to the top
    row = (result := standardize_image(encode(Image.fromarray(pixels), "JPEG", exif=exif), SETTINGS, "c/6")).row
    assert (row.width, row.height, row.source_width, row.source_height) == (512, 1024, 100, 200)
    output = decoded(result.png)
    assert output[100, 256, 0] > 200 and output[100, 256, 2] < 60
    assert output[900, 256, 2] > 200 and output[900, 256, 0] < 60


def test_large_jpeg_is_draft_decoded_but_reports_its_declared_size() -> None:
    data = encode(Image.fromarray(photo(2048, 1024)), "JPEG", quality=85)
    row = standardize_image(data, SETTINGS, "c/7").row
    assert (row.status, row.width, row.height, row.source_width, row.source_height) == ("ok", 512, 256, 2048, 1024)
    assert row.scale == 0.25


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    row = (result := standardize_image(encode(cmyk, "JPEG"), SETTINGS, "c/8")).row
    assert (row.status, row.mode) == ("ok", "RGB")
    red, green, blue, _ = decoded(result.png)[256, 256]
    assert red > 200 and green < 60 and blue < 60


@pytest.mark.parametrize("format_name", ["PNG", "JPEG"])
def test_embedded_icc_profile_is_converted_to_srgb(format_name: str) -> None:
    red = Image.new("RGB", (300, 300), (255, 0, 0))
    plain = standardize_image(encode(red, format_name), SETTINGS, "c/9")
    profiled = standardize_image(encode(red, format_name, icc_profile=swapped_primaries_profile()), SETTINGS, "c/9")
    assert decoded(plain.png)[256, 256, 0] > 240  # without a profile the pixels are taken as sRGB
    r, _, b, _ = decoded(profiled.png)[256, 256]
    assert b > 200 and r < 60  # the profile says that red channel is blue


@pytest.mark.parametrize("side", [24, 300])  # pixel art and Lanczos paths convert at different points
def test_icc_conversion_keeps_alpha(side: int) -> None:
    pixels = np.zeros((side, side, 4), np.uint8)
    pixels[..., 0], pixels[..., 3] = 255, 128
    data = encode(Image.fromarray(pixels), "PNG", icc_profile=swapped_primaries_profile())
    row = (result := standardize_image(data, SETTINGS, "c/9")).row
    assert row.mode == "RGBA"
    r, _, b, alpha = decoded(result.png)[256, 256]
    assert (b > 200, r < 60, alpha) == (True, True, 128)


def test_sixteen_bit_greyscale_keeps_its_high_byte() -> None:
    grey = Image.fromarray(np.full((64, 80), 0x8000, dtype=np.uint16))
    row = (result := standardize_image(encode(grey, "PNG"), SETTINGS, "c/10")).row
    assert row.status == "ok"
    assert tuple(decoded(result.png)[100, 100]) == (128, 128, 128, 255)


def paletted() -> Image.Image:
    """A palette image, left half colour 1, right half colour 3 (declared transparent when saved)."""
    image = Image.new("P", (300, 300), 1)
    image.putpalette([0, 0, 0, 200, 30, 30, 0, 0, 0, 10, 20, 30])
    image.paste(3, (150, 0, 300, 300))
    return image


@pytest.mark.parametrize(
    ("image", "mode", "centre"),
    [
        (Image.new("LA", (300, 300), (90, 128)), "RGBA", (90, 90, 90, 128)),
        (Image.new("L", (300, 300), 90), "RGB", (90, 90, 90, 255)),
        (Image.new("1", (300, 300), 1), "RGB", (255, 255, 255, 255)),
        (paletted(), "RGBA", (0, 0, 0, 0)),
    ],
)
def test_other_pil_modes_become_rgb_or_rgba(image: Image.Image, mode: str, centre: tuple) -> None:
    options = {"transparency": 3} if image.mode == "P" else {}
    row = (result := standardize_image(encode(image, "PNG", **options), SETTINGS, "c/10")).row
    assert (row.status, row.mode) == ("ok", mode)
    assert tuple(decoded(result.png)[256, 256]) == centre


def test_alpha_kept_only_when_used() -> None:
    opaque_rgba = Image.fromarray(np.dstack([photo(300, 300), np.full((300, 300), 255, np.uint8)]))
    assert standardize_image(encode(opaque_rgba, "PNG"), SETTINGS, "c/11").row.mode == "RGB"
    half_transparent = np.asarray(opaque_rgba).copy()
    half_transparent[:150, :, 3] = 0
    assert standardize_image(encode(Image.fromarray(half_transparent), "PNG"), SETTINGS, "c/11").row.mode == "RGBA"


def test_webp_still_is_standardized() -> None:
    row = standardize_image(encode(Image.fromarray(photo(300, 200)), "WEBP", quality=80), SETTINGS, "c/12").row
    assert (row.status, row.source_type, row.width, row.height, row.n_frames) == ("ok", sniff.WEBP, 512, 341, 1)


@pytest.mark.parametrize(
    ("format_name", "options", "source_type"),
    [("GIF", {"loop": 0}, sniff.GIF), ("WEBP", {"lossless": True}, sniff.WEBP), ("PNG", {}, sniff.PNG)],
)
def test_animation_frame_is_chosen_by_seed_and_is_the_frame_shown(
    format_name: str, options: dict, source_type: str
) -> None:
    data = animation(format_name, 12, **options)
    rows = {}
    for token in range(16):
        result = standardize_image(data, SETTINGS, f"anim/{token}")
        assert (result.row.status, result.row.source_type, result.row.n_frames) == ("ok", source_type, 12)
        assert nearest(decoded(result.png)[256, 256]) == result.row.frame_index
        rows[token] = result.row
    assert len({row.frame_index for row in rows.values()}) > 1  # tokens land on different frames
    again = standardize_image(data, SETTINGS, "anim/3").row
    assert (again.frame_index, again.png_sha256) == (rows[3].frame_index, rows[3].png_sha256)
    reseeded = [standardize_image(data, dataclasses.replace(SETTINGS, seed=7), f"anim/{t}").row for t in range(16)]
    assert [row.frame_index for row in reseeded] != [rows[t].frame_index for t in range(16)]


@pytest.mark.parametrize(
    ("format_name", "codec", "source_type"),
    [
        ("mp4", "libx264", sniff.MP4),
        ("mp4", "mpeg4", sniff.MP4),
        ("mov", "mpeg4", sniff.QUICKTIME),
        ("webm", "libvpx-vp9", sniff.WEBM),
    ],
)
def test_video_frame_is_chosen_by_seed_and_is_the_frame_shown(format_name: str, codec: str, source_type: str) -> None:
    data = video(format_name, codec)
    indices = set()
    for token in range(8):
        row = (result := standardize_image(data, SETTINGS, f"video/{token}")).row
        assert (row.status, row.source_type, row.width, row.height) == ("ok", source_type, 512, 384)
        assert 20 <= row.n_frames <= 25
        assert nearest(decoded(result.png)[192, 256]) == row.frame_index % len(FRAME_COLOURS)
        assert standardize_image(data, SETTINGS, f"video/{token}").row.png_sha256 == row.png_sha256
        indices.add(row.frame_index)
    assert len(indices) > 1


def test_vector_svg_is_drawn_at_the_output_width() -> None:
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 30 20"><circle cx="15" cy="10" r="9" fill="#0a0"/></svg>'
    )
    row = (result := standardize_image(svg, SETTINGS, "c/13")).row
    assert (row.status, row.resample, row.width, row.height, row.mode) == ("ok", "vector", 512, 341, "RGBA")
    output = decoded(result.png)
    assert tuple(output[170, 256]) == (0, 170, 0, 255) and output[2, 2, 3] == 0
    assert 2 < len(np.unique(output[170, :, 1])) < 40  # anti-aliased edge of a smooth circle, not blocks


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "error_part"),
    [
        (b"<!doctype html><html><body>gateway error</body></html>", "unsupported", sniff.HTML),
        (b'{"name": "not an image"}', "unsupported", sniff.JSON),
        (b"", "unsupported", sniff.EMPTY),
        (png_header_only(100_000, 100_000), "too_many_pixels", "100000"),  # PIL's own bomb limit
        (png_header_only(9_000, 9_000), "too_many_pixels", "9000x9000"),  # our cap, under PIL's
    ],
)
def test_refused_inputs_are_rows_with_a_reason(data: bytes, status: str, error_part: str) -> None:
    row = standardize_image(data, SETTINGS, "c/14").row
    assert (row.status, row.png_sha256) == (status, None)
    assert error_part in row.error


def test_truncated_jpeg_and_png_are_decode_errors() -> None:
    for format_name in ("JPEG", "PNG"):
        data = encode(Image.fromarray(photo(400, 300)), format_name)
        row = standardize_image(data[: len(data) // 2], SETTINGS, "c/15").row
        assert row.status == "decode_error", format_name
        assert row.error


def test_extreme_aspect_ratio_is_refused() -> None:
    row = standardize_image(encode(Image.new("RGB", (2000, 100)), "PNG"), SETTINGS, "c/16").row
    assert (row.status, row.png_sha256) == ("bad_aspect", None)


def test_gif_with_thousands_of_frames_is_refused_before_decoding() -> None:
    frames = [Image.new("P", (4, 4), index % 256) for index in range(5000)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10, optimize=False)
    row = standardize_image(data, SETTINGS, "c/17").row
    assert (row.status, row.source_type) == ("too_many_frames", sniff.GIF)
    assert "5000" in row.error


def test_video_container_without_a_video_stream() -> None:
    row = standardize_image(audio_only_mp4(), SETTINGS, "c/18").row
    assert (row.status, row.source_type) == ("no_video_stream", sniff.MP4)
    assert "audio" in row.error


# --- SVG safety ---------------------------------------------------------------------------------


@pytest.fixture()
def red_png(tmp_path: Path) -> Path:
    path = tmp_path / "red.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(path)
    return path


@pytest.fixture()
def listener() -> Iterator[socket.socket]:
    """A TCP port on 127.0.0.1 that records whether anything connected."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        yield server


def image_svg(href: str) -> str:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64">'
        f'<image width="64" height="64" xlink:href="{href}"/></svg>'
    )


def test_svg_external_references_are_never_read_or_fetched(red_png: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    hrefs = [str(red_png), red_png.as_uri(), f"http://127.0.0.1:{port}/x.png", "file:///etc/passwd"]
    control = Image.open(io.BytesIO(resvg_py.svg_to_bytes(svg_string=image_svg(str(red_png)))))
    assert control.convert("RGB").getpixel((32, 32)) == (255, 0, 0)  # unsanitised, resvg reads the file
    for href in hrefs:
        row = (result := standardize_image(image_svg(href).encode(), SETTINGS, "c/19")).row
        assert row.status == "ok", href
        assert decoded(result.png)[..., 3].max() == 0, href  # nothing drawn: the reference was removed
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_svg_nested_in_a_data_url_is_kept_and_sanitised_too(red_png: Path) -> None:
    inner = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="32" height="64" fill="#0f0"/>'
        f'<image x="32" width="32" height="64" href="{red_png}"/></svg>'
    )
    outer = image_svg("data:image/svg+xml;base64," + base64.b64encode(inner.encode()).decode())
    row = (result := standardize_image(outer.encode(), SETTINGS, "c/20")).row
    assert row.status == "ok"
    output = decoded(result.png)
    assert tuple(output[256, 100]) == (0, 255, 0, 255) and output[256, 400, 3] == 0
    bomb = '<!DOCTYPE svg [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;">]><svg xmlns="http://www.w3.org/2000/svg"><text>&b;</text></svg>'
    nested_bomb = image_svg("data:image/svg+xml;base64," + base64.b64encode(bomb.encode()).decode())
    assert standardize_image(nested_bomb.encode(), SETTINGS, "c/20").row.status == "unsafe_svg"


def test_svg_embedded_raster_data_url_is_kept() -> None:
    data_url = (
        "data:image/png;base64," + base64.b64encode(encode(Image.new("RGB", (8, 8), (0, 0, 255)), "PNG")).decode()
    )
    row = (result := standardize_image(image_svg(data_url).encode(), SETTINGS, "c/21")).row
    assert row.status == "ok"
    assert tuple(decoded(result.png)[256, 256]) == (0, 0, 255, 255)


@pytest.mark.parametrize(
    ("doctype", "reference"),
    [
        (
            '<!DOCTYPE svg [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>',
            "&c;",
        ),
        ('<!DOCTYPE svg [<!ENTITY a SYSTEM "file:///etc/passwd">]>', "&a;"),
    ],
)
def test_svg_entities_are_refused_not_expanded(doctype: str, reference: str) -> None:
    svg = f'<?xml version="1.0"?>{doctype}<svg xmlns="http://www.w3.org/2000/svg"><text>{reference}</text></svg>'
    row = standardize_image(svg.encode(), SETTINGS, "c/22").row
    assert (row.status, row.png_sha256) == ("unsafe_svg", None)


def test_svg_script_is_dropped_and_size_is_capped() -> None:
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script>'
        b'<rect width="10" height="10" fill="red"/></svg>'
    )
    assert standardize_image(svg, SETTINGS, "c/23").row.status == "ok"
    small_cap = dataclasses.replace(SETTINGS, max_svg_bytes=len(svg) - 1)
    assert standardize_image(svg, small_cap, "c/23").row.status == "too_large"


# --- pool ---------------------------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_pool_returns_one_row_per_job_and_writes_pngs_atomically(tmp_path: Path) -> None:
    sources = tmp_path / "blobs"
    sources.mkdir()
    jpeg = encode(Image.fromarray(photo(400, 300)), "JPEG")
    frames = [Image.new("P", (2, 2), index % 256) for index in range(1500)]
    gif_bomb = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], optimize=False)
    jobs = [
        StandardizeJob("punks", str(index), write(sources / f"punk{index}", encode(punk(index), "PNG")))
        for index in range(40)
    ] + [
        StandardizeJob("mixed", "svg", write(sources / "svg", rect_svg(block_art(16, 5, seed=4), unit=1))),
        StandardizeJob("mixed", "truncated", write(sources / "truncated", jpeg[:300])),
        StandardizeJob("mixed", "html", b"<html><body>404</body></html>"),
        StandardizeJob("mixed", "missing", sources / "no-such-blob"),
        StandardizeJob("mixed", "gif-bomb", write(sources / "gif", gif_bomb)),
        StandardizeJob("mixed", "jpeg-bytes", jpeg),
        StandardizeJob("../escape", "../../x", jpeg),
    ]
    out_dir = tmp_path / "images"
    outcomes = list(standardize_many(jobs, SETTINGS, out_dir, workers=2, chunk_size=8))
    assert sorted((o.collection, o.token_id) for o in outcomes) == sorted((j.collection, j.token_id) for j in jobs)
    status = {o.token_id: o.row.status for o in outcomes if o.collection != "punks"}
    assert status == {
        "svg": "ok",
        "truncated": "decode_error",
        "html": "unsupported",
        "missing": "read_error",
        "gif-bomb": "too_many_frames",
        "jpeg-bytes": "ok",
        "../../x": "ok",
    }
    for outcome in outcomes:
        if outcome.row.status == "ok":
            png = Path(outcome.row.png_path)
            assert png == output_path(out_dir, outcome.collection, outcome.token_id)
            assert png.resolve().is_relative_to(out_dir.resolve())
            assert hashlib.sha256(png.read_bytes()).hexdigest() == outcome.row.png_sha256
        else:
            assert outcome.row.png_path is None
    assert sum(o.row.status == "ok" for o in outcomes if o.collection == "punks") == 40
    assert [p.name for p in out_dir.rglob("*") if p.is_file() and not p.name.endswith(".png")] == []
    table = pa.Table.from_pylist([o.as_dict() for o in outcomes])
    assert table.select([f.name for f in STANDARDIZED_IMAGE_FIELDS]).cast(
        pa.schema(STANDARDIZED_IMAGE_FIELDS)
    ).num_rows == len(jobs)

    assert output_path(out_dir, "punks", "0").exists()
    rerun = [dataclasses.replace(jobs[0], source=b"<html></html>")]
    (failed,) = standardize_many(rerun, SETTINGS, out_dir, workers=1)
    assert failed.row.status == "unsupported"
    assert not output_path(out_dir, "punks", "0").exists()  # a stale PNG does not outlive its failure


def test_pool_times_out_a_blocking_read(tmp_path: Path) -> None:
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    jobs = [StandardizeJob("c", "fifo", fifo), StandardizeJob("c", "punk", encode(punk(5), "PNG"))]
    settings = dataclasses.replace(SETTINGS, timeout_s=0.5)
    rows = {o.token_id: o.row for o in standardize_many(jobs, settings, tmp_path / "out", workers=2, chunk_size=1)}
    assert rows["fifo"].status == "timeout"
    assert rows["punk"].status == "ok"


def test_pool_survives_a_worker_killed_inside_native_code(tmp_path: Path) -> None:
    """An SVG filter that keeps resvg busy for seconds in one native call: Python cannot raise
    there, so the hard CPU limit kills the worker; the pool finds the culprit and finishes."""
    heavy = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512"><defs><filter id="f">'
        b'<feMorphology operator="dilate" radius="30"/></filter></defs>'
        b'<circle cx="256" cy="256" r="200" fill="#123456" filter="url(#f)"/></svg>'
    )
    jobs = [StandardizeJob("c", f"punk{i}", encode(punk(i), "PNG")) for i in range(6)]
    jobs.insert(3, StandardizeJob("c", "heavy", heavy))
    settings = dataclasses.replace(SETTINGS, timeout_s=0.5)
    rows = {o.token_id: o.row for o in standardize_many(jobs, settings, tmp_path / "out", workers=2, chunk_size=4)}
    assert len(rows) == len(jobs)
    assert rows.pop("heavy").status == "worker_crash"
    assert {row.status for row in rows.values()} == {"ok"}


# --- settings, schema, collection views ---------------------------------------------------------


def test_settings_fingerprint_tracks_what_changes_pixels() -> None:
    base = settings_fingerprint(SETTINGS)
    assert base == settings_fingerprint(StandardizeSettings())
    assert base != settings_fingerprint(dataclasses.replace(SETTINGS, width=256))
    assert base != settings_fingerprint(dataclasses.replace(SETTINGS, seed=1))
    assert base == settings_fingerprint(dataclasses.replace(SETTINGS, timeout_s=5))


def test_schema_fields_are_the_row_fields() -> None:
    assert [field.name for field in STANDARDIZED_IMAGE_FIELDS] == [f.name for f in dataclasses.fields(ImageRow)]
    assert {status.value for status in Status} >= {"ok", "unsupported", "timeout", "worker_crash"}


def test_collection_flags() -> None:
    distinct = [f"{i:064x}" for i in range(600)]
    assert collection_flags(distinct, attribute_count=1200) == []
    assert collection_flags(distinct[:499] + [None] * 10, attribute_count=5) == [FLAG_TOO_FEW_IMAGES]
    assert collection_flags([distinct[0]] * 600, attribute_count=0) == [FLAG_IDENTICAL_IMAGES, FLAG_NO_ATTRIBUTES]


def test_contact_sheet_places_thumbnails_in_a_grid(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    paths = [
        write(tmp_path / f"{i}.png", encode(Image.new("RGB", (512, 256), c), "PNG")) for i, c in enumerate(colours)
    ]
    paths.append(tmp_path / "missing.png")
    with Image.open(io.BytesIO(contact_sheet(paths, columns=2, cell=50))) as sheet:
        assert sheet.size == (100, 100)
        assert [sheet.getpixel(xy) for xy in [(25, 25), (75, 25), (25, 75)]] == colours
        assert sheet.getpixel((25, 5)) != colours[0]  # a 2:1 thumbnail leaves bands above and below
