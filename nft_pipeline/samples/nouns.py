"""Nouns: real CC0 art stacked from known parts, so every token comes with ground-truth layers.

Seeds are drawn per token from an RNG keyed by the token id (growing the supply never changes
earlier tokens). The token URI is what the real contract returns: a base64 `data:` JSON whose
image is a base64 `data:` SVG of one rect per run of pixels. Unlike the real contract, the JSON
also carries OpenSea-style `attributes` (the part names), so traits can be checked. The README in
data/nouns/ documents the part encoding.
"""

import base64
import json
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from nft_pipeline.samples.collection import SampleCollection
from nft_pipeline.samples.svg import pixel_art_svg

DATA_DIR = Path(__file__).parent / "data" / "nouns"
SIZE = 32
SVG_SCALE = 10
PART_LAYERS = ("body", "accessory", "head", "glasses")  # painted bottom to top, over the background
_IMAGE_KEYS = {"body": "bodies", "accessory": "accessories", "head": "heads", "glasses": "glasses"}
BACKGROUND_NAMES = ("cool", "warm")


@cache
def _image_data() -> dict[str, Any]:
    return json.loads((DATA_DIR / "image-data.json").read_text(encoding="utf-8"))


@cache
def _palette_rgba() -> np.ndarray:
    """Palette index -> RGBA; index 0 (the empty entry) is transparent."""
    palette = _image_data()["palette"]
    rgba = np.zeros((len(palette), 4), dtype=np.uint8)
    for index, colour in enumerate(palette[1:], start=1):
        rgba[index] = (*bytes.fromhex(colour), 255)
    return rgba


def part_count(layer: str) -> int:
    return len(_image_data()["images"][_IMAGE_KEYS[layer]])


@dataclass(frozen=True)
class NounSeed:
    background: int
    body: int
    accessory: int
    head: int
    glasses: int


@dataclass(frozen=True)
class NounPart:
    """A decoded part: its header, its runs, and the 32x32 pixels they paint."""

    palette_index: int
    top: int
    right: int  # exclusive
    bottom: int  # inclusive
    left: int
    runs: tuple[tuple[int, int], ...]  # (length, colour index)
    colour_indices: np.ndarray  # 32x32 uint8, 0 = transparent
    rgba: np.ndarray  # 32x32x4 uint8


@cache
def decode_part(hex_data: str) -> NounPart:
    """Decode one run-length-encoded part (`0x` + palette, top, right, bottom, left, runs)."""
    data = bytes.fromhex(hex_data.removeprefix("0x"))
    palette_index, top, right, bottom, left = data[:5]
    runs = tuple(zip(data[5::2], data[6::2]))
    indices = np.zeros((SIZE, SIZE), dtype=np.uint8)
    x, y = left, top
    for length, colour in runs:
        for _ in range(length):
            indices[y, x] = colour
            x += 1
            if x == right:
                x, y = left, y + 1
    rgba = _palette_rgba()[indices]
    indices.setflags(write=False)
    rgba.setflags(write=False)
    return NounPart(palette_index, top, right, bottom, left, runs, indices, rgba)


def _part_item(layer: str, index: int) -> dict[str, str]:
    return _image_data()["images"][_IMAGE_KEYS[layer]][index]


def noun_seed(token_id: int) -> NounSeed:
    rng = random.Random(f"nouns-{token_id}")
    return NounSeed(
        rng.randrange(len(BACKGROUND_NAMES)), *(rng.randrange(part_count(layer)) for layer in PART_LAYERS)
    )


def noun_trait_names(seed: NounSeed) -> dict[str, str]:
    """Layer -> trait name: the part's filename without its layer prefix (`head-aardvark` -> `aardvark`).

    Four accessories are filed under another prefix (`body-bege`); they keep their full name.
    """
    names = {"background": BACKGROUND_NAMES[seed.background]}
    for layer in PART_LAYERS:
        filename = _part_item(layer, getattr(seed, layer))["filename"]
        names[layer] = filename.removeprefix(f"{layer}-")
    return names


def _background_hex(seed: NounSeed) -> str:
    return _image_data()["bgcolors"][seed.background]


def render_noun_layers(seed: NounSeed) -> dict[str, np.ndarray]:
    """Ground-truth layers, bottom first: a full background plus each part (32x32x4 RGBA)."""
    background = np.empty((SIZE, SIZE, 4), dtype=np.uint8)
    background[...] = (*bytes.fromhex(_background_hex(seed)), 255)
    layers = {"background": background}
    for layer in PART_LAYERS:
        layers[layer] = decode_part(_part_item(layer, getattr(seed, layer))["data"]).rgba
    return layers


def render_noun(seed: NounSeed) -> np.ndarray:
    """The composed 32x32x4 image (parts are opaque or transparent, so upper pixels win)."""
    layers = iter(render_noun_layers(seed).values())
    image = next(layers).copy()
    for layer in layers:
        painted = layer[..., 3] > 0
        image[painted] = layer[painted]
    return image


def noun_svg(seed: NounSeed) -> str:
    parts = [render_noun_layers(seed)[layer] for layer in PART_LAYERS]
    return pixel_art_svg(parts, SIZE, SVG_SCALE, background=f"#{_background_hex(seed)}")


def _base64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class Nouns(SampleCollection):
    """Nouns with generated seeds over the real parts; supply 1,000 unless the gateway says otherwise."""

    slug = "nouns"
    symbol = "NOUN"
    description = "One Noun, every day, forever (offline sample: real CC0 parts, generated seeds)."
    default_supply = 1_000
    deployed_block = 12985438

    def __init__(self) -> None:
        super().__init__()
        identity = json.loads((DATA_DIR / "collection.json").read_text(encoding="utf-8"))
        self.name = identity["name"]
        self.contract = identity["contract"].lower()

    def metadata(self, token_id: int) -> dict[str, Any]:
        return self._memo(("metadata", token_id), lambda: self._build_metadata(token_id))

    def _build_metadata(self, token_id: int) -> dict[str, Any]:
        seed = noun_seed(token_id)
        return {
            "name": f"Noun {token_id}",
            "description": f"Noun {token_id} is a member of the Nouns DAO",
            "image": "data:image/svg+xml;base64," + _base64(noun_svg(seed)),
            "attributes": [{"trait_type": layer, "value": name} for layer, name in noun_trait_names(seed).items()],
        }

    def token_uri(self, token_id: int) -> str:
        return self._memo(
            ("token_uri", token_id),
            lambda: "data:application/json;base64," + _base64(json.dumps(self.metadata(token_id))),
        )
