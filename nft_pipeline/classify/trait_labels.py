"""Trait labels: each exclusive trait type of a collection as a value index per token.

A trait type is predicted when it is exclusive (no token declares two values of it), like
CryptoPunks' `Type` or each Nouns layer; a type some tokens lack gets the value `none` for them. A
multi-valued type (CryptoPunks' `Accessory`) is left out and said so (`skipped_types`).
`prompt_texts` words each value as the training captions do, for zero-shot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

NONE_VALUE = "none"


@dataclass(frozen=True)
class TraitLabels:
    """One exclusive trait type over a collection's tokens: value index per token, -1 where unlabelled."""

    trait_type: str
    vocabulary: list[str]
    labels: np.ndarray  # N ints, aligned with the token order the caller gave

    @property
    def labelled(self) -> np.ndarray:
        return np.flatnonzero(self.labels >= 0)


@dataclass(frozen=True)
class CollectionLabels:
    token_ids: list[str]
    declared: np.ndarray  # N bool: the token declares traits (its metadata loaded and has attributes)
    types: list[TraitLabels]
    skipped_types: dict[str, str] = field(default_factory=dict)  # trait type -> why it is not predicted
    phrases: dict[tuple[str, str], str] = field(default_factory=dict)  # (type, value) -> caption words


def collection_labels(token_ids: Sequence[str], tags: Mapping[str, Sequence[Mapping]], min_tokens: int = 2) -> CollectionLabels:
    """Labels per exclusive trait type from caption tags (token id -> tags; absent or empty: undeclared)."""
    declared = np.array([bool(tags.get(t)) for t in token_ids])
    values: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    phrases: dict[tuple[str, str], str] = {}
    for i, token in enumerate(token_ids):
        for tag in tags.get(token) or ():
            trait_type = tag["trait_type"] or ""
            values[trait_type][i].add(tag["value"])
            phrases.setdefault((trait_type, tag["value"]), tag.get("phrase") or tag["value"])
    types, skipped = [], {}
    n_declared = int(declared.sum())
    for trait_type, per_token in values.items():
        if not trait_type:
            skipped[trait_type] = "untyped values"
            continue
        if any(len(v) > 1 for v in per_token.values()):
            skipped[trait_type] = "multi-valued (a token declares several values)"
            continue
        vocabulary = sorted({v for vs in per_token.values() for v in vs})
        if len(per_token) < n_declared:
            vocabulary.append(NONE_VALUE)
        index = {v: j for j, v in enumerate(vocabulary)}
        labels = np.full(len(token_ids), -1, dtype=np.int64)
        for i in np.flatnonzero(declared):
            labels[i] = index[next(iter(per_token[i]))] if i in per_token else index[NONE_VALUE]
        if len(vocabulary) < 2 or n_declared < min_tokens:
            skipped[trait_type] = "fewer than two values or too few labelled tokens"
            continue
        types.append(TraitLabels(trait_type, vocabulary, labels))
    return CollectionLabels(list(token_ids), declared, types, skipped, phrases)


def prompt_texts(collection_title: str, labels: CollectionLabels, template) -> dict[tuple[str, str], str]:
    """(type, value) -> the caption that names only that value, as training captions word it."""
    from nft_pipeline.captions import render_caption

    texts = {}
    for trait in labels.types:
        for value in trait.vocabulary:
            if value == NONE_VALUE:
                texts[(trait.trait_type, value)] = render_caption(collection_title, [], template)
            else:
                phrase = labels.phrases.get((trait.trait_type, value), value)
                tag = {"trait_type": trait.trait_type, "value": value, "phrase": phrase}
                texts[(trait.trait_type, value)] = render_caption(collection_title, [tag], template)
    return texts
