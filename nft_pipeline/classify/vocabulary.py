"""What search needs from classification: per-token colour classes and predicted traits, and the
colour words of a text query.

`token_terms` reads the `token_colours` and `trait_predictions` partitions into one mapping per
token; `colour_query` splits "blue background punk" into a background filter (`blue`), figure
filters and the rest of the text, so the search can filter with the classes and embed the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nft_pipeline.classify.colours import COLOUR_WORDS, TOKEN_COLOURS
from nft_pipeline.classify.traits import TRAIT_PREDICTIONS
from nft_pipeline.storage import DataLayout, read_table

_ALIASES = {"gray": "grey"}


@dataclass(frozen=True)
class TokenTerms:
    colour_classes: list[str]
    background_classes: list[str]
    # (trait_type, value, confidence) for a token without declared metadata: shown marked "predicted"
    predicted_traits: list[tuple[str, str, float]] = field(default_factory=list)


def token_terms(layout: DataLayout, collection: str, min_confidence: float = 0.5) -> dict[str, TokenTerms]:
    """token id -> its colour classes and, where it declares no traits, its confident predictions."""
    colours = read_table(layout.partition_path("token_colours", collection), TOKEN_COLOURS)
    predictions = read_table(layout.partition_path("trait_predictions", collection), TRAIT_PREDICTIONS)
    predicted: dict[str, list[tuple[str, str, float]]] = {}
    for row in predictions.to_pylist():
        if row["source"] == "missing_metadata" and row["confidence"] >= min_confidence and row["value"] != "none":
            predicted.setdefault(row["token_id"], []).append((row["trait_type"], row["value"], float(row["confidence"])))
    terms = {}
    for row in colours.select(["token_id", "status", "colour_classes", "background_classes"]).to_pylist():
        if row["status"] == "ok":
            terms[row["token_id"]] = TokenTerms(row["colour_classes"], row["background_classes"], predicted.get(row["token_id"], []))
    for token, traits in predicted.items():
        terms.setdefault(token, TokenTerms([], [], traits))
    return terms


@dataclass(frozen=True)
class ColourQuery:
    colours: list[str]  # classes the figure must have
    backgrounds: list[str]  # classes the background must have
    text: str  # the query without its colour words


def colour_query(text: str) -> ColourQuery:
    """Colour words in `text`: a colour followed by "background" filters the background, other
    colour words the figure ("blue background with red hair" -> background blue, figure red)."""
    words = text.split()
    colours, backgrounds, rest = [], [], []
    i = 0
    while i < len(words):
        word = words[i].casefold().strip(",.")
        name = _ALIASES.get(word, word)
        if name in COLOUR_WORDS:
            if i + 1 < len(words) and words[i + 1].casefold().strip(",.") == "background":
                backgrounds.append(name)
                i += 2
                continue
            colours.append(name)
        else:
            rest.append(words[i])
        i += 1
    return ColourQuery(colours, backgrounds, " ".join(rest))
