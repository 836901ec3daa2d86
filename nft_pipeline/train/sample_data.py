"""Training inputs made from the bundled sample collections, for demos, tests and benchmarks.

Nouns are stacked from known parts, so each (trait, value) has a ground-truth component: the
part's own pixels at the standardized size. CryptoPunks come without components (their lookup
maps every trait to None), like a collection the components stage could not decompose. Images
are written as the standardize stage writes pixel art: integer nearest-neighbour upscale to at
most 512 px, centred on a transparent 512 px canvas.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from nft_pipeline.captions import caption_token
from nft_pipeline.samples.nouns import Nouns, noun_seed, noun_trait_names, render_noun, render_noun_layers
from nft_pipeline.samples.punks import CryptoPunks
from nft_pipeline.train.data import TrainingExample
from nft_pipeline.train.prepared import Component, ComponentLookup

STANDARD_WIDTH = 512


def standardize_pixel_art(art: np.ndarray) -> np.ndarray:
    """Square RGBA pixel art upscaled by the largest integer factor that fits, centred, padded transparent."""
    factor = STANDARD_WIDTH // art.shape[1]
    upscaled = art.repeat(factor, axis=0).repeat(factor, axis=1)
    canvas = np.zeros((STANDARD_WIDTH, STANDARD_WIDTH, 4), dtype=np.uint8)
    top = (STANDARD_WIDTH - upscaled.shape[0]) // 2
    left = (STANDARD_WIDTH - upscaled.shape[1]) // 2
    canvas[top : top + upscaled.shape[0], left : left + upscaled.shape[1]] = upscaled
    return canvas


def _write_png(pixels: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def nouns_inputs(token_ids: range, directory: Path) -> tuple[list[TrainingExample], ComponentLookup]:
    """Nouns examples and their ground-truth components (one per trait value seen)."""
    collection = Nouns()
    components: dict[tuple[str, str], Component] = {}
    examples = []
    for token_id in token_ids:
        seed = noun_seed(token_id)
        names = noun_trait_names(seed)
        for layer, pixels in render_noun_layers(seed).items():
            standardized = standardize_pixel_art(pixels)
            components.setdefault((layer, names[layer]), (standardized[..., 3] > 0, standardized))
        metadata = collection.metadata(token_id)
        caption = caption_token(collection.name, metadata["name"], str(token_id), metadata["attributes"], None)
        path = _write_png(standardize_pixel_art(render_noun(seed)), directory / collection.slug / f"{token_id}.png")
        examples.append(TrainingExample(collection.slug, str(token_id), path, caption))
    return examples, {collection.slug: components}


def punks_inputs(token_ids: range, directory: Path) -> tuple[list[TrainingExample], ComponentLookup]:
    """CryptoPunks examples; no trait has a component."""
    collection = CryptoPunks()
    examples = []
    for token_id in token_ids:
        metadata = collection.metadata(token_id)
        caption = caption_token(collection.name, metadata["name"], str(token_id), metadata["attributes"], None)
        path = _write_png(
            standardize_pixel_art(collection.tile(token_id)), directory / collection.slug / f"{token_id}.png"
        )
        examples.append(TrainingExample(collection.slug, str(token_id), path, caption))
    return examples, {collection.slug: {}}
