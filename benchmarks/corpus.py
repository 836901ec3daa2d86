"""The fixed mixed corpus that `bench_standardize.py` runs on, generated deterministically.

Categories and what they stand for:
  cryptopunks  all 10,000 real CryptoPunks, 24x24 RGBA PNG tiles cut from the bundled sheet
  photo_png    50 photographic-like 2000x2000 RGB PNGs (gradients, soft shapes, sensor noise)
  photo_jpeg   50 of the same kind as JPEG, quality 90
  gif          50 animated 320x320 GIFs, 16 frames of shapes moving over a gradient
  svg_nouns    50 Nouns as their on-chain renderer draws them (one <rect> per run of pixels)
  svg_vector   50 vector SVGs of gradients, circles and curves

The corpus is written once per CORPUS_VERSION under a cache directory and reused. The photo
PNGs are written with zlib level 1 to keep generation quick; decoding cost barely depends on it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from nft_pipeline.samples.nouns import noun_seed, noun_svg

CORPUS_VERSION = 2
PUNKS_SHEET = Path(__file__).resolve().parent.parent / "nft_pipeline" / "samples" / "data" / "cryptopunks" / "punks.png"
PER_CATEGORY = 50
PHOTO_SIDE = 2000


@dataclass(frozen=True)
class CorpusItem:
    category: str
    token_id: str
    path: Path


def load_corpus(root: Path) -> list[CorpusItem]:
    """The corpus under `root`, generating it first if it is missing or from another version."""
    manifest = root / f"manifest-v{CORPUS_VERSION}.json"
    if not manifest.exists():
        root.mkdir(parents=True, exist_ok=True)
        items = _generate(root)
        manifest.write_text(json.dumps([[i.category, i.token_id, i.path.name] for i in items]))
    entries = json.loads(manifest.read_text())
    return [CorpusItem(category, token_id, root / category / name) for category, token_id, name in entries]


def _generate(root: Path) -> list[CorpusItem]:
    items: list[CorpusItem] = []

    def put(category: str, token_id: str, suffix: str, data: bytes) -> None:
        path = root / category / f"{token_id}.{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        items.append(CorpusItem(category, token_id, path))

    with Image.open(PUNKS_SHEET) as sheet:
        punks = sheet.convert("RGBA")
    for index in range(10_000):
        x, y = (index % 100) * 24, (index // 100) * 24
        put("cryptopunks", str(index), "png", _encode(punks.crop((x, y, x + 24, y + 24)), "PNG"))
    for index in range(PER_CATEGORY):
        put("photo_png", str(index), "png", _encode(photograph(PHOTO_SIDE, seed=index), "PNG", compress_level=1))
        put("photo_jpeg", str(index), "jpg", _encode(photograph(PHOTO_SIDE, seed=1000 + index), "JPEG", quality=90))
        put("gif", str(index), "gif", animated_gif(seed=index))
        put("svg_nouns", str(index), "svg", noun_svg(noun_seed(index)).encode())
        put("svg_vector", str(index), "svg", vector_svg(seed=index).encode())
    return items


def _encode(image: Image.Image, format_name: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format_name, **options)
    return buffer.getvalue()


def photograph(side: int, seed: int) -> Image.Image:
    """Smooth light, soft shapes and per-pixel noise: thousands of colours, like a photo.

    The light and shapes are drawn at a quarter of the size and enlarged (they are smooth
    anyway), which keeps generating 2000 px images quick.
    """
    rng = np.random.default_rng(seed)
    small = side // 4
    y, x = np.mgrid[0:small, 0:small].astype(np.float32) / small
    tint = rng.uniform(40, 215, 3).astype(np.float32)
    base = tint * (0.6 + 0.5 * x[..., None]) * (1.1 - 0.4 * y[..., None])
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        cx, cy = rng.uniform(0, small, 2).tolist()
        r = float(rng.uniform(small / 20, small / 4))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(rng.integers(0, 256, 3).tolist()))
    image = image.filter(ImageFilter.GaussianBlur(small / 200)).resize((side, side), Image.Resampling.BICUBIC)
    noise = rng.integers(-10, 11, (side, side, 3), dtype=np.int16)
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8))


def animated_gif(seed: int, side: int = 320, frames: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    backdrop = photograph(side, seed=5000 + seed).filter(ImageFilter.GaussianBlur(4))
    colour = tuple(rng.integers(0, 256, 3).tolist())
    palette = backdrop.quantize(255)  # one palette for all frames, as animation tools do
    images = []
    for index in range(frames):
        frame = backdrop.copy()
        offset = index * side // frames
        ImageDraw.Draw(frame).ellipse((offset, side // 3, offset + side // 4, side // 3 + side // 4), fill=colour)
        images.append(frame.quantize(palette=palette, dither=Image.Dither.NONE))
    return _encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=80, loop=0)


def vector_svg(seed: int, side: int = 1000) -> str:
    rng = np.random.default_rng(seed)

    def colour() -> str:
        return "#{:02x}{:02x}{:02x}".format(*rng.integers(0, 256, 3).tolist())

    shapes = [
        f'<circle cx="{rng.uniform(0, side):.1f}" cy="{rng.uniform(0, side):.1f}" r="{rng.uniform(20, side / 4):.1f}" '
        f'fill="{colour()}" fill-opacity="{rng.uniform(0.4, 1):.2f}"/>'
        for _ in range(20)
    ]
    curves = [
        f'<path d="M{rng.uniform(0, side):.0f},{rng.uniform(0, side):.0f} Q{rng.uniform(0, side):.0f},'
        f'{rng.uniform(0, side):.0f} {rng.uniform(0, side):.0f},{rng.uniform(0, side):.0f}" '
        f'stroke="{colour()}" stroke-width="{rng.uniform(2, 30):.1f}" fill="none"/>'
        for _ in range(10)
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {side}" width="{side}" height="{side}">'
        f'<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="{colour()}"/>'
        f'<stop offset="1" stop-color="{colour()}"/></linearGradient></defs>'
        f'<rect width="{side}" height="{side}" fill="url(#g)"/>{"".join(shapes)}{"".join(curves)}</svg>'
    )
