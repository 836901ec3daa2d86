"""What search needs from classification: per-token colour classes and predicted traits, and the
colour words of a text query.

`token_terms` reads the `token_colours` and `trait_predictions` partitions into one mapping per
token; `colour_query` splits "blue background punk" into a background filter (`blue`), figure
filters and the rest of the text, so the search can filter with the classes and embed the rest.
`RowTerms` aligns the terms with the rows of a search index version (bit masks, so a colour filter
is vectorised), and `interpret` reads a query's traits and colours together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from nft_pipeline.classify.colours import COLOUR_WORDS, HUE_NAMES, MOODS, TOKEN_COLOURS
from nft_pipeline.classify.traits import TRAIT_PREDICTIONS
from nft_pipeline.hits import SearchError
from nft_pipeline.query import Chip, Interpretation, QueryParser
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


COLOUR_CLASSES = (*HUE_NAMES, "transparent", *MOODS)  # one bit each in `RowTerms`
_BIT = {name: 1 << bit for bit, name in enumerate(COLOUR_CLASSES)}


def _bits(classes: list[str]) -> int:
    return sum(_BIT.get(name, 0) for name in set(classes))


class RowTerms:
    """`token_terms` aligned with the rows of one search index version: colour classes as bit masks
    per row, so a colour filter is one vectorised test over every row, and predicted traits per row."""

    def __init__(self, figure: np.ndarray, background: np.ndarray, predicted: list[list[tuple[str, str, float]]]):
        self.figure = figure
        self.background = background
        self.predicted = predicted

    @classmethod
    def load(cls, layout: DataLayout, collections: Sequence[str], token_ids: Sequence[str]) -> RowTerms | None:
        """The terms of each (collection, token id) row; None where no collection has classification
        tables (the search then understands no colour words)."""
        by_collection = {collection: token_terms(layout, collection) for collection in set(collections)}
        if not any(by_collection.values()):
            return None
        empty = TokenTerms([], [])
        rows = [by_collection[c].get(t, empty) for c, t in zip(collections, token_ids, strict=True)]
        figure = np.fromiter((_bits(row.colour_classes) for row in rows), np.uint32, len(rows))
        background = np.fromiter((_bits(row.background_classes) for row in rows), np.uint32, len(rows))
        return cls(figure, background, [row.predicted_traits for row in rows])

    def predicted_of(self, row: int) -> list[dict]:
        """The row's predicted traits (empty where it declares its own)."""
        return [{"trait_type": t, "value": v, "confidence": round(c, 3)} for t, v, c in self.predicted[row]]

    def with_predicted(self, tags: Sequence[Sequence[Mapping]]) -> list[Sequence[Mapping]]:
        """Each row's declared tags, or its predicted traits where it declares none."""
        return [
            row_tags or [{"trait_type": t, "value": v} for t, v, _ in predicted]
            for row_tags, predicted in zip(tags, self.predicted, strict=True)
        ]

    def mask(self, wanted: ColourQuery) -> np.ndarray:
        """Rows whose figure has every class of `wanted.colours` and background every one of `wanted.backgrounds`."""
        figure, background = _bits(wanted.colours), _bits(wanted.backgrounds)
        return ((self.figure & figure) == figure) & ((self.background & background) == background)


def interpret(
    parser: QueryParser, query: str, filters: Sequence[str], terms: RowTerms | None
) -> tuple[Interpretation, list[tuple[Chip, ColourQuery]]]:
    """The query's traits and colours, with what each colour chip requires; `colour=` filters as chips.

    "<colour> background" is read first (the trait parser would read "background" as the trait
    type and "blue" as every value containing it); other colour words only where they name no
    trait ("pastel"; "blue" stays the blue traits). Without classification tables colour words stay
    text, and a colour filter is refused (it could not be honoured).
    """
    if terms is None:
        if filters:
            raise SearchError("colour filters need the `token_colours` asset: materialize it, then re-index")
        return (parser.parse(query) if query else Interpretation("", (), ())), []
    chips = []
    for text in filters:
        wanted = colour_query(text)
        if wanted.text or not (wanted.colours or wanted.backgrounds):
            raise SearchError(f"colour filter {text!r} must be colour words, e.g. blue, pastel or \"blue background\"")
        chips.append((Chip("colour", text, (0, 0), _colour_label(wanted), source="filter"), wanted))
    words = "|".join(_word_pattern(name) for name in COLOUR_WORDS)
    unread = query
    for found in re.finditer(rf"\b({words})\W+background\b", query, re.IGNORECASE):
        wanted = colour_query(found.group(0))
        chips.append((Chip("colour", found.group(0), found.span(), _colour_label(wanted)), wanted))
        unread = unread[: found.start()] + " " * (found.end() - found.start()) + unread[found.end() :]  # offsets kept
    parsed = parser.parse(unread) if unread.strip() else Interpretation("", (), ())
    read = colour_query(" ".join(parsed.residual))
    for colour in read.colours:
        chips.append((Chip("colour", colour, _span(query, _word_pattern(colour)), colour), ColourQuery([colour], [], "")))
    residual = tuple(read.text.split()) if read.colours else parsed.residual
    return Interpretation(query, parsed.chips, residual), chips


def _colour_label(wanted: ColourQuery) -> str:
    return ", ".join([*wanted.colours, *(f"{name} background" for name in wanted.backgrounds)])


def _word_pattern(colour: str) -> str:
    return "gr[ae]y" if colour in ("grey", "gray") else colour


def _span(query: str, pattern: str) -> tuple[int, int]:
    """Where `pattern` first matches `query` as whole words (case aside), so the page can remove them."""
    found = re.search(rf"\b{pattern}\b", query, re.IGNORECASE)
    return found.span() if found else (0, 0)
