"""Mixed Media Critters art: generated, layered pixel art with known traits and layers.

A critter is 48x48 pixel art stacked from layers (background, body, eyes, mouth, optional hat,
optional accessory), each trait drawn per token from an RNG keyed by the token id. Besides the
pixel art, there are renderings for the other media kinds the collection serves: a larger
"photographic" image (smooth upscale, lighting, grain: JPEG's natural habitat), animation frames
for GIF and MP4, and a rect-per-run SVG.
"""

import random
from collections.abc import Sequence
from functools import cache

import numpy as np
from PIL import Image

from nft_pipeline.samples.svg import pixel_art_svg

SIZE = 48
SVG_SCALE = 10
RGB = tuple[int, int, int]

BACKGROUNDS: dict[str, RGB | None] = {
    "Sky": (150, 200, 240),
    "Mint": (170, 230, 200),
    "Peach": (250, 210, 180),
    "Lavender": (210, 200, 240),
    "Sand": (235, 220, 170),
    "Slate": (90, 100, 120),
    "Transparent": None,
}
FURS: dict[str, RGB] = {
    "Crème": (240, 228, 205),
    "Moss": (110, 145, 70),
    "Coral": (240, 125, 105),
    "Cobalt": (60, 90, 200),
    "Plum": (135, 65, 135),
    "Charcoal": (75, 75, 85),
    "Gold": (222, 180, 60),
    "Teal": (40, 150, 150),
}
_CENTRE_Y, _CENTRE_X = 30, 24
_DY, _DX = np.mgrid[0:SIZE, 0:SIZE] - np.array([_CENTRE_Y, _CENTRE_X])[:, None, None]
BODY_SHAPES: dict[str, np.ndarray] = {
    "Round": _DX**2 + _DY**2 <= 14.5**2,
    "Tall": (_DX / 10) ** 2 + (_DY / 17) ** 2 <= 1,
    "Wide": (_DX / 19) ** 2 + (_DY / 11) ** 2 <= 1,
    "Square": (abs(_DX) <= 13) & (abs(_DY) <= 13),
    "Pear": (_DX / (9 + 0.4 * (_DY + 15))) ** 2 + (_DY / 15) ** 2 <= 1,
    "Diamond": abs(_DX) + abs(_DY) <= 18,
}

# Sprites are rows of palette characters; "." is transparent.
_INK: dict[str, RGB] = {
    "k": (25, 25, 35),
    "w": (250, 250, 250),
    "r": (215, 40, 50),
    "y": (245, 200, 40),
    "p": (240, 130, 170),
    "b": (50, 80, 190),
    "g": (60, 160, 90),
}
EYES: dict[str, list[str]] = {
    "Dots": ["kk", "kk"],
    "Wide": ["www", "wkw", "www"],
    "Sleepy": ["kkk"],
    "Hearts": ["r.r", "rrr", ".r."],
    "Stars": [".y.", "yyy", ".y."],
    "Crosses": ["k.k", ".k.", "k.k"],
}
MOUTHS: dict[str, list[str]] = {
    "Smile": ["k...k", ".kkk."],
    "Frown": [".kkk.", "k...k"],
    "Open": [".kk.", "krrk", ".kk."],
    "Teeth": ["kkkkk", "kwkwk", "kkkkk"],
    "Flat": ["kkkk"],
    "Tongue": ["kkkk", ".pp."],
}
HATS: dict[str, list[str]] = {
    "Cap": ["..bbbb..", ".bbbbbb.", "bbbbbbbbbbb"],
    "Top Hat": ["..kkkkkk..", "..kkkkkk..", "..kkkkkk..", "..rrrrrr..", "kkkkkkkkkk"],
    "Crown": ["y.y.y", "yyyyy", "yryby"],
    "Beanie": ["..rrrr..", ".rrrrrr.", "rrrrrrrr", "wwwwwwww"],
    "Antenna": ["r", "k", "k", "k"],
    "Party Hat": ["...y...", "..ppp..", ".pypyp.", "ppppppp"],
}
# Accessory -> (sprite, top row, centre column)
ACCESSORIES: dict[str, tuple[list[str], int, int]] = {
    "Bow Tie": (["rr.rr", "rrrrr", "rr.rr"], 39, _CENTRE_X),
    "Necklace": (["y.......y", ".y.....y.", "..yyyyy.."], 37, _CENTRE_X),
    "Monocle": (["yyyy", "y..y", "y..y", "yyyy"], 25, 30),
    "Badge": (["bbb", "byb", "bbb"], 37, 16),
    "Scarf": (["ggggggggggggg", "ggggggggggggg", ".........gg..", ".........gg.."], 38, _CENTRE_X),
}
EYE_TOP, EYE_COLUMNS, MOUTH_TOP = 26, (18, 30), 34
OPTIONAL_TRAITS = {"Hat": 0.35, "Accessory": 0.5}  # chance the token has none


def critter_traits(token_id: int, namespace: str = "mixedmedia") -> dict[str, str]:
    """Trait type -> value; an optional trait the token lacks is absent (never "None"). Each
    `namespace` (a collection) draws its own critters."""
    rng = random.Random(f"{namespace}-{token_id}")
    traits = {
        "Background": rng.choice(list(BACKGROUNDS)),
        "Body": rng.choice(list(BODY_SHAPES)),
        "Fur": rng.choice(list(FURS)),
        "Eyes": rng.choice(list(EYES)),
        "Mouth": rng.choice(list(MOUTHS)),
    }
    for trait, values in (("Hat", HATS), ("Accessory", ACCESSORIES)):
        if rng.random() >= OPTIONAL_TRAITS[trait]:
            traits[trait] = rng.choice(list(values))
    return traits


def _blank() -> np.ndarray:
    return np.zeros((SIZE, SIZE, 4), dtype=np.uint8)


def _stamp(layer: np.ndarray, sprite: list[str], top: int, centre_x: int) -> None:
    left = centre_x - len(sprite[0]) // 2
    for y, row in enumerate(sprite, start=top):
        for x, ink in enumerate(row, start=left):
            if ink != "." and 0 <= y < SIZE and 0 <= x < SIZE:
                layer[y, x] = (*_INK[ink], 255)


def _sprite_layer(*placements: tuple[list[str], int, int]) -> np.ndarray:
    """A layer with each (sprite, top row, centre column) stamped on it."""
    layer = _blank()
    for sprite, top, centre_x in placements:
        _stamp(layer, sprite, top, centre_x)
    return layer


def _body_layer(shape: np.ndarray, fur: RGB) -> np.ndarray:
    inner = shape.copy()
    inner[1:-1, 1:-1] &= shape[:-2, 1:-1] & shape[2:, 1:-1] & shape[1:-1, :-2] & shape[1:-1, 2:]
    layer = _blank()
    layer[shape] = (*(int(c * 0.55) for c in fur), 255)  # outline
    layer[inner] = (*fur, 255)
    return layer


def render_critter_layers(traits: dict[str, str]) -> dict[str, np.ndarray]:
    """Ground-truth layers, bottom first (48x48x4 RGBA); layers that paint nothing are left out."""
    shape = BODY_SHAPES[traits["Body"]]
    layers: dict[str, np.ndarray] = {}
    background = BACKGROUNDS[traits["Background"]]
    if background is not None:
        layers["background"] = np.full((SIZE, SIZE, 4), (*background, 255), dtype=np.uint8)
    layers["body"] = _body_layer(shape, FURS[traits["Fur"]])
    eyes = EYES[traits["Eyes"]]
    layers["eyes"] = _sprite_layer(*((eyes, EYE_TOP, x) for x in EYE_COLUMNS))
    layers["mouth"] = _sprite_layer((MOUTHS[traits["Mouth"]], MOUTH_TOP, _CENTRE_X))
    if "Hat" in traits:
        hat = HATS[traits["Hat"]]
        body_top = int(np.flatnonzero(shape.any(axis=1))[0])
        layers["hat"] = _sprite_layer((hat, body_top + 1 - len(hat), _CENTRE_X))
    if "Accessory" in traits:
        layers["accessory"] = _sprite_layer(ACCESSORIES[traits["Accessory"]])
    return layers


def _compose(layers: Sequence[np.ndarray]) -> np.ndarray:
    image = _blank()
    for layer in layers:
        painted = layer[..., 3] > 0
        image[painted] = layer[painted]
    return image


def render_critter(traits: dict[str, str]) -> np.ndarray:
    """The composed 48x48x4 RGBA pixel art (transparent where the background is "Transparent")."""
    return _compose(list(render_critter_layers(traits).values()))


def critter_svg(traits: dict[str, str]) -> str:
    layers = render_critter_layers(traits)
    background = BACKGROUNDS[traits["Background"]]
    fill = None if background is None else "#{:02x}{:02x}{:02x}".format(*background)
    parts = [layer for name, layer in layers.items() if name != "background"]
    return pixel_art_svg(parts, SIZE, SVG_SCALE, background=fill)


def _backdrop(traits: dict[str, str]) -> RGB:
    """The colour behind the critter where a format has no transparency."""
    return BACKGROUNDS[traits["Background"]] or (255, 255, 255)


@cache
def _photo_light(size: int) -> np.ndarray:
    """Light falloff from the upper left, size x size x 1."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return (1.12 - 0.45 * np.hypot(x - 0.3, y - 0.25))[..., None]


@cache
def _photo_backdrop(colour: RGB, size: int) -> Image.Image:
    """An RGBA backdrop of `colour`, darkening towards the bottom."""
    shade = (1.1 - 0.3 * np.arange(size, dtype=np.float32) / size)[:, None, None]
    backdrop = np.clip(np.array(colour, dtype=np.float32) * shade, 0, 255).astype(np.uint8)
    opaque = np.full((size, size, 1), 255, dtype=np.uint8)
    return Image.fromarray(np.concatenate([np.broadcast_to(backdrop, (size, size, 3)), opaque], axis=2))


def render_photo(traits: dict[str, str], size: int, seed: int) -> np.ndarray:
    """A size x size RGB "photograph" of the critter: smooth upscale, gradient, light, grain."""
    critter = Image.fromarray(render_critter(traits)).resize((size, size), Image.Resampling.BICUBIC)
    scene = Image.alpha_composite(_photo_backdrop(_backdrop(traits), size), critter).convert("RGB")
    photo = np.asarray(scene, dtype=np.float32) * _photo_light(size)
    photo += np.random.default_rng(seed).standard_normal((size, size, 1), dtype=np.float32) * 5
    return np.clip(photo, 0, 255).astype(np.uint8)


def render_frames(
    traits: dict[str, str], canvas: int, scale: int, offsets: Sequence[tuple[int, int]]
) -> list[np.ndarray]:
    """RGB animation frames: the critter (without its background) at each (x, y) offset on a
    canvas x canvas backdrop of the background colour, drawn at `scale` pixels per art pixel."""
    foreground = _compose([layer for name, layer in render_critter_layers(traits).items() if name != "background"])
    sprite = Image.fromarray(foreground.repeat(scale, axis=0).repeat(scale, axis=1))
    frames = []
    for offset in offsets:
        frame = Image.new("RGB", (canvas, canvas), _backdrop(traits))
        frame.paste(sprite, offset, sprite)
        frames.append(np.asarray(frame))
    return frames
