"""NFT1000's extra training pairs: a trait's component cut out on the background, with its tag's words.

The paper's fork trains on these beside the token pairs: the model sees "Green Eye Shadow" with
nothing but green eye shadow, which ties a phrase to its pixels more directly than a whole token
does. Each pair is one (collection, trait, value) that has a component and appears among the
training tokens' tags: the component's RGBA at the standardized size (transparent elsewhere, so
the run's matte becomes its background), and the tag's phrase as a sentence ("Green Eye Shadow.").
They join the training part only (never validation or test), are not masked (their one tag is the
whole picture), and make up `share` of the training pairs at most: no component is repeated,
because two copies of a pair in one batch would be each other's false negatives.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from nft_pipeline.captions import Caption, count_text_tokens
from nft_pipeline.train.data import TrainingExample
from nft_pipeline.train.prepared import ComponentLookup

COMPONENT_TOKEN_PREFIX = "component:"


def component_pair_count(train_pairs: int, share: float) -> int:
    """How many component pairs make them `share` of the training pairs (0 when share is 0)."""
    return math.floor(share / (1.0 - share) * train_pairs + 0.5)


def component_examples(
    train: Sequence[TrainingExample], components: ComponentLookup, share: float, directory: Path
) -> list[TrainingExample]:
    """Up to `component_pair_count` component pairs from the tags of `train`, written as PNGs under `directory`.

    Deterministic: candidates in sorted (collection, trait type, value) order, each taken once.
    A file already there (a resumed run) is reused.
    """
    wanted = component_pair_count(len(train), share)
    if wanted == 0:
        return []
    candidates: dict[tuple[str, str, str], tuple[dict, Caption]] = {}
    for example in train:
        lookup = components.get(example.collection, {})
        for tag in example.caption.tags:
            trait = (tag["trait_type"] or "", tag["value"])
            if trait in lookup and lookup[trait] is not None:
                candidates.setdefault((example.collection, *trait), (tag, example.caption))
    pairs = []
    for number, key in enumerate(sorted(candidates)[:wanted]):
        collection, trait_type, value = key
        tag, token_caption = candidates[key]
        path = directory / collection / f"{number}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(components[collection][(trait_type, value)][1]).save(path)
        text = tag["phrase"].rstrip(".") + "."
        caption = dataclasses.replace(
            token_caption,
            caption=text,
            tags=[],  # nothing to mask: the tag is the whole picture
            shortened=False,
            dropped_tags=0,
            n_text_tokens=count_text_tokens(text),
            title=text,
        )
        token_id = f"{COMPONENT_TOKEN_PREFIX}{trait_type}={value}"
        pairs.append(TrainingExample(collection, token_id, path, caption))
    return pairs
