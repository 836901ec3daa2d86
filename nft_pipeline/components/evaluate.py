"""Measuring components against ground truth: Nouns are stacked from known parts.

The true mask of a part is its own pixels restricted to those visible (not covered by a higher
layer) in at least one token that carries it: a pixel hidden in every such token cannot be
recovered by any method. The background is treated as a trait like the others (two values, the
whole canvas): its truth is the background pixels visible in at least one token with that colour.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nft_pipeline.components.separate import ComponentSet
from nft_pipeline.samples.nouns import noun_seed, noun_trait_names, render_noun_layers

NOUN_LAYERS = ("background", "body", "accessory", "head", "glasses")  # bottom to top


@dataclass(frozen=True)
class NounsSample:
    images: np.ndarray  # N x 32 x 32 x 4, composed
    traits: list[list[tuple[str, str]]]  # per token: (layer, part name)
    truth: dict[tuple[str, str], np.ndarray]  # (layer, part name) -> 32 x 32 bool, see the module doc


def nouns_sample(token_ids: Sequence[int]) -> NounsSample:
    """Composed Nouns, their traits, and every part's true (visible) mask."""
    images = np.empty((len(token_ids), 32, 32, 4), dtype=np.uint8)
    traits = []
    visible_union: dict[tuple[str, str], np.ndarray] = {}
    for i, token_id in enumerate(token_ids):
        seed = noun_seed(token_id)
        layers = render_noun_layers(seed)
        names = noun_trait_names(seed)
        covered = np.zeros((32, 32), dtype=bool)
        for layer in reversed(NOUN_LAYERS):
            painted = layers[layer][..., 3] > 0
            key = (layer, names[layer])
            visible_union[key] = visible_union.get(key, np.zeros((32, 32), dtype=bool)) | (painted & ~covered)
            covered |= painted
        image = layers["background"].copy()
        for layer in NOUN_LAYERS[1:]:
            painted = layers[layer][..., 3] > 0
            image[painted] = layers[layer][painted]
        images[i] = image
        traits.append([(layer, names[layer]) for layer in NOUN_LAYERS])
    return NounsSample(images, traits, visible_union)


def mask_iou(predicted: np.ndarray | None, truth: np.ndarray) -> float:
    """Intersection over union; a missing prediction counts as empty; two empty masks agree (1.0)."""
    predicted = np.zeros_like(truth) if predicted is None else predicted
    union = int((predicted | truth).sum())
    return 1.0 if union == 0 else float((predicted & truth).sum()) / union


def iou_by_layer(result: ComponentSet, sample: NounsSample, min_tokens: int = 4) -> dict[str, list[float]]:
    """IoU of each part with at least `min_tokens` tokens and a non-empty truth, grouped by layer.

    Both masks are compared at the native 32 x 32: the standardized images are exact 16 x 16
    blocks of it, so the IoU at the standardized size is the same number.
    """
    by_layer: dict[str, list[float]] = defaultdict(list)
    for component in result.components:
        truth = sample.truth[(component.trait_type, component.value)]
        if component.n_tokens >= min_tokens and truth.any():
            by_layer[component.trait_type].append(mask_iou(component.mask, truth))
    return by_layer
