"""Captions from token attributes (NFT1000): one sentence per token, every tag's phrase recorded.

The paper captions a token from its attributes with a sentence template ("CryptoPunk #0: a
Female 2 with a Blonde Bob, Green Eye Shadow and an Earring."). Training later hides a trait's
image component together with its words, so each tag keeps the exact phrase the caption uses for
it, and `remove_tag` re-renders the sentence without it: re-rendering keeps the list grammatical
("A, B and C" minus B is "A and C"), which cutting a substring out would not.

Real attributes are messy. Placeholders ("None", "Nothing", "") describe nothing and are skipped,
duplicates are said once, `display_type` numbers are said with their trait ("Level 7",
"Speed +5%", a date), and very long values are capped. A caption must fit a CLIP text encoder
(77 tokens with the start and end markers): when it does not, the lowest-priority tags (the last
in the template's order) are dropped and the row says so (`shortened`, `dropped_tags`).

Token counting: CLIP's own byte-pair vocabulary (`bpe_simple_vocab_16e6.txt.gz`, MIT, OpenAI) is
bundled in `nft_pipeline/data/` (no hub needed), so the count is exact, with the very tokenizer
the models use (`clip_tokenizer.py`; `$NFT_PIPELINE_CLIP_BPE` points at another copy). If the file is
missing a conservative estimate is used (see `estimate_text_tokens`), calibrated to never
undercount the exact count on the sample collections' captions. `TOKEN_COUNTER` says which one
is in use, and `captions_table` records it in the table's schema metadata.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict

import pyarrow as pa

from nft_pipeline import schemas
from nft_pipeline.clip_tokenizer import clip_bpe_path, clip_tokenizer
from nft_pipeline.token_metadata import normalize_attributes

MAX_TEXT_TOKENS = 77  # CLIP's context length, start and end markers included
MAX_VALUE_CHARS = 60
ELLIPSIS = "…"
PLACEHOLDER_VALUES = frozenset({"", "none", "nothing", "null", "n/a", "-"})

# Words that take no article: plural or uncountable heads ("Green Eye Shadow", "Wild Hair", "Buck Teeth").
_MASS_WORDS = frozenset({"hair", "shadow", "lipstick", "makeup", "paint", "fur", "skin", "smoke", "teeth", "feet"})
_NOT_PLURAL_ENDINGS = ("ss", "us", "is", "ous")
# Letters that start with a vowel sound when an acronym is spelled out ("an MRI", "an X-ray", "a VR").
_VOWEL_SOUND_LETTERS = frozenset("AEFHILMNORSX")
_CONSONANT_SOUND_PREFIXES = ("uni", "use", "usu", "uti", "eu", "one", "once", "ewe")
_VOWEL_SOUND_PREFIXES = ("hour", "honest", "honor", "honour", "heir")


class CaptionTag(TypedDict):
    """A trait the caption mentions, and the exact words it uses for it."""

    trait_type: str | None
    value: str
    phrase: str


@dataclass(frozen=True)
class CaptionTemplate:
    """How one collection's captions are worded.

    `subject_trait` names the trait said as the subject ("a Female 2" for CryptoPunks' `Type`);
    without one (or when a token lacks it) `subject_noun` stands in ("a Noun"), and with neither
    the caption is the title followed by the list. `phrases` words a trait type's value
    ("{value} head"); other typed values use `default_phrase` (`{trait}` is the trait type in
    lower case) and untyped ones are said alone. `order` lists trait types first (the rest follow
    in the token's order), which is also the priority kept when a caption must be shortened.
    `articles` puts "a"/"an" before countable phrases; `humanize` turns slug values
    ("square-black") into words ("square black").
    """

    id: str
    subject_trait: str | None = None
    subject_noun: str | None = None
    phrases: Mapping[str, str] = field(default_factory=dict)
    default_phrase: str = "{value}"
    articles: bool = True
    order: tuple[str, ...] = ()
    humanize: bool = False
    with_word: str = " with "
    separator: str = ", "
    last_separator: str = " and "


# Any collection: "Blue background, Bored eyes" reads well for the usual colour/adjective values.
DEFAULT_TEMPLATE = CaptionTemplate(id="default", default_phrase="{value} {trait}", articles=False)
TEMPLATES: dict[str, CaptionTemplate] = {
    "cryptopunks": CaptionTemplate(id="cryptopunks", subject_trait="Type", subject_noun="a punk"),
    "nouns": CaptionTemplate(
        id="nouns",
        subject_noun="a Noun",
        phrases={
            "head": "{value} head",
            "glasses": "{value} glasses",
            "accessory": "{value} accessory",
            "body": "{value} body",
            "background": "{value} background",
        },
        order=("head", "glasses", "accessory", "body", "background"),
        humanize=True,
    ),
    "mixedmedia": CaptionTemplate(
        id="mixedmedia",
        subject_noun="a critter",
        phrases={
            "Body": "{value} body",
            "Fur": "{value} fur",
            "Eyes": "{value} eyes",
            "Mouth": "{value} mouth",
            "Hat": "{value} hat",
            "Background": "{value} background",
        },
        order=("Body", "Fur", "Eyes", "Mouth", "Hat", "Accessory", "Background"),
    ),
}
_TEMPLATE_ALIASES = {
    "cryptopunks": "cryptopunks",
    "nouns": "nouns",
    "mixedmedia": "mixedmedia",
    "mixedmediacritters": "mixedmedia",
}


@dataclass(frozen=True)
class Caption:
    """A token's caption and how it was made; `title` and `template` let tags be removed later."""

    caption: str
    tags: list[CaptionTag]
    template_id: str
    shortened: bool
    dropped_tags: int
    n_text_tokens: int
    status: str  # ok | no_attributes (the caption is the title alone)
    title: str
    template: CaptionTemplate


def template_for(collection: str) -> CaptionTemplate:
    """The registered template for a collection slug or name ("CryptoPunks", "cryptopunks"), else DEFAULT."""
    key = re.sub(r"[^a-z0-9]", "", collection.lower())
    return TEMPLATES[_TEMPLATE_ALIASES[key]] if key in _TEMPLATE_ALIASES else DEFAULT_TEMPLATE


# ---------------------------------------------------------------- wording one attribute


def cap_text(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """`text` cut to at most `limit` characters at a word boundary when one is near, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + ELLIPSIS


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _iso_date(text: str) -> str | None:
    """A Unix timestamp (seconds, or milliseconds when too large for seconds) as an ISO date."""
    if not _is_number(text):
        return None
    seconds = float(text)
    if abs(seconds) > 1e11:
        seconds /= 1000
    try:
        return datetime.fromtimestamp(seconds, tz=UTC).date().isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def _signed(text: str) -> str:
    return text if text.startswith(("+", "-")) else f"+{text}"


def _article(phrase: str) -> str:
    """ "a" or "an" for `phrase`, or "" when it is plural or uncountable."""
    words = re.findall(r"[A-Za-z0-9]+", phrase)
    if not words:
        return ""
    for word in words:
        lower = word.lower()
        if lower in _MASS_WORDS or (
            len(lower) > 3 and lower.endswith("s") and not lower.endswith(_NOT_PLURAL_ENDINGS) and lower.isalpha()
        ):
            return ""
    first = words[0]
    if first.isdigit():
        vowel = first.startswith("8") or first in {"11", "18"}
    elif first.isupper() and len(first) > 1:
        vowel = first[0] in _VOWEL_SOUND_LETTERS
    else:
        lower = first.lower()
        vowel = lower.startswith(_VOWEL_SOUND_PREFIXES) or (
            lower[0] in "aeiou" and not lower.startswith(_CONSONANT_SOUND_PREFIXES)
        )
    return "an" if vowel else "a"


def with_article(phrase: str) -> str:
    article = _article(phrase)
    return f"{article} {phrase}" if article else phrase


def _clean_text(text: str | None) -> str:
    return " ".join(str(text).split()) if text is not None else ""


def _apply_wording(wording: str, value: str, trait: str) -> str:
    """`wording` with `{value}` and `{trait}` filled in; its noun is not repeated ("Top Hat", not "Top Hat hat")."""
    prefix, _, suffix = wording.partition("{value}")
    suffix = suffix.format(trait=trait)
    after = suffix.split(maxsplit=1)
    if after and value.split()[-1].lower() == after[0].lower():
        suffix = f" {after[1]}" if len(after) > 1 else ""
    return prefix.format(trait=trait) + value + suffix


def word_attribute(
    trait_type: str | None, value: str, display_type: str | None, template: CaptionTemplate
) -> str | None:
    """The phrase for one attribute, or None when it says nothing (a placeholder, a false flag).

    Numbers need their trait type to mean anything, so numeric and `display_type` values are said
    with it ("Level 7", "Speed +5%", "Birthday 2021-01-01"); other values are said alone, with an
    article, or through the template's wording for their trait type.
    """
    kind = (display_type or "").strip().lower()
    trait = cap_text(_clean_text(trait_type))
    text = _clean_text(value)
    if text.lower() in PLACEHOLDER_VALUES or text.lower() == "false":
        return None
    if text.lower() == "true":
        return trait or None
    if kind == "date":
        date = _iso_date(text)
        return f"{trait} {date}".strip() if date else None
    if kind in ("boost_number", "boost_percentage") and _is_number(text):
        suffix = "%" if kind == "boost_percentage" else ""
        return f"{trait} {_signed(text)}{suffix}".strip()
    if kind == "number" or _is_number(text):
        return f"{trait} {text}".strip()
    if template.humanize:
        text = " ".join(re.sub(r"[-_]+", " ", text).split())
    text = cap_text(text)
    wording = template.phrases.get(trait_type or "") or (template.default_phrase if trait else "{value}")
    phrase = _apply_wording(wording, text, trait.lower())
    return with_article(phrase) if template.articles else phrase


# ---------------------------------------------------------------- the sentence


def _join(phrases: Sequence[str], template: CaptionTemplate) -> str:
    if len(phrases) <= 1:
        return "".join(phrases)
    return template.separator.join(phrases[:-1]) + template.last_separator + phrases[-1]


def _is_subject(tag: CaptionTag, template: CaptionTemplate) -> bool:
    return template.subject_trait is not None and (tag["trait_type"] or "").lower() == template.subject_trait.lower()


def render_caption(title: str, tags: Sequence[CaptionTag], template: CaptionTemplate) -> str:
    """The sentence for `tags` (subject first when the template has one) under `title`."""
    has_subject = bool(tags) and _is_subject(tags[0], template)
    subject = tags[0]["phrase"] if has_subject else template.subject_noun
    listed = [tag["phrase"] for tag in (tags[1:] if has_subject else tags)]
    if not tags:
        return _sentence(title)
    if listed and subject:
        return _sentence(f"{title}: {subject}{template.with_word}{_join(listed, template)}")
    return _sentence(f"{title}: {_join(listed, template) if listed else subject}")


def _sentence(text: str) -> str:
    """`text` ended with a full stop, unless it already ends like a sentence (or an ellipsis)."""
    return text if text.endswith((".", "!", "?", ELLIPSIS)) else f"{text}."


def _ordered_tags(attributes: Iterable[Mapping[str, Any]], template: CaptionTemplate) -> list[CaptionTag]:
    """Worded, deduplicated tags: the subject first, then the template's order, then the token's."""
    tags: list[CaptionTag] = []
    seen: set[str] = set()
    for attribute in attributes:
        value = attribute.get("value")
        if value is None:
            continue
        trait_type = _clean_text(attribute.get("trait_type")) or None
        phrase = word_attribute(trait_type, str(value), attribute.get("display_type"), template)
        if phrase is None or phrase.lower() in seen:
            continue
        seen.add(phrase.lower())
        tags.append(CaptionTag(trait_type=trait_type, value=_clean_text(value), phrase=phrase))
    if template.subject_trait is not None:
        subjects = [tag for tag in tags if _is_subject(tag, template)]
        if subjects:  # a token with two subject values: the first is the subject, the others are listed
            first = subjects[0]
            first["phrase"] = with_article(cap_text(first["value"])) if template.articles else cap_text(first["value"])
            tags.remove(first)
            tags.insert(0, first)
    rank = {trait.lower(): index for index, trait in enumerate(template.order)}
    head = tags[:1] if tags and _is_subject(tags[0], template) else []
    rest = sorted(tags[len(head) :], key=lambda tag: rank.get((tag["trait_type"] or "").lower(), len(rank)))
    return head + rest


def caption_token(
    collection_name: str,
    token_name: str | None,
    token_id: str,
    attributes: Any,
    template: CaptionTemplate | None = None,
) -> Caption:
    """The token's caption; `attributes` as stored in `tokens` or as raw metadata (any shape).

    `template=None` uses the collection's registered template, else DEFAULT_TEMPLATE. A token
    without usable attributes gets its title alone (status `no_attributes`); the title is the
    token's name, or "<collection> #<id>" when it has none.
    """
    template = template or template_for(collection_name)
    normalized, _ = normalize_attributes(attributes)
    tags = _ordered_tags(normalized, template)
    full_title = cap_text(_clean_text(token_name) or f"{_clean_text(collection_name)} #{token_id}")
    title = full_title
    keep = len(tags)
    minimum = 1 if tags and _is_subject(tags[0], template) else 0
    text = render_caption(title, tags, template)
    while count_text_tokens(text) > MAX_TEXT_TOKENS and keep > minimum:
        keep -= 1
        text = render_caption(title, tags[:keep], template)
    while count_text_tokens(text) > MAX_TEXT_TOKENS and len(title) > 1:  # a name too long on its own
        title = cap_text(title, len(title) - 8)
        text = render_caption(title, tags[:keep], template)
    return Caption(
        caption=text,
        tags=tags[:keep],
        template_id=template.id,
        shortened=keep < len(tags) or title != full_title,
        dropped_tags=len(tags) - keep,
        n_text_tokens=count_text_tokens(text),
        status="ok" if tags else "no_attributes",
        title=title,
        template=template,
    )


def remove_tag(caption: Caption, tag: CaptionTag | Sequence[CaptionTag]) -> str:
    """The caption re-rendered without `tag` (or each of several tags), still grammatical."""
    removing = [tag] if isinstance(tag, Mapping) else list(tag)
    remaining = list(caption.tags)
    for item in removing:
        if item not in remaining:
            raise ValueError(f"tag {item!r} is not one of the caption's tags")
        remaining.remove(item)
    return render_caption(caption.title, remaining, caption.template)


# ---------------------------------------------------------------- counting CLIP tokens


def _clip_tokenizer() -> Any:
    """The model's tokenizer (clip_tokenizer.py), or None when CLIP's BPE file is absent."""
    if clip_bpe_path() is None:
        return None
    return clip_tokenizer()


_PIECES = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)


def estimate_text_tokens(text: str) -> int:
    """A conservative CLIP token count, start and end markers included, without the vocabulary.

    CLIP splits text into letter runs, single digits and punctuation runs, then byte-pair encodes
    each. Digits and punctuation are counted one token per character (as CLIP does for digits;
    punctuation runs are usually one token, so this overcounts). A letter run counts one token
    per 4 ASCII letters, at least one (frequent English words are one CLIP token whatever their
    length, rare names of 8-12 letters two or three), plus one per UTF-8 byte of each other
    letter, the worst case of byte-level BPE.
    """
    count = 2
    for piece in _PIECES.findall(unicodedata.normalize("NFC", text)):
        if piece[0].isalpha() or piece[0] == "'":
            ascii_letters = sum(1 for char in piece if char.isascii())
            count += max(1, math.ceil(ascii_letters / 4)) + len(piece.encode("utf-8")) - ascii_letters
        else:
            count += len(piece)
    return count


def count_text_tokens(text: str) -> int:
    """CLIP text tokens in `text`, start and end markers included (exact when CLIP's BPE is available)."""
    tokenizer = _clip_tokenizer()
    if tokenizer is None:
        return estimate_text_tokens(text)
    return len(tokenizer(text)["input_ids"])


def token_counter() -> str:
    """Which counter `count_text_tokens` uses here: `clip-bpe` (exact) or `estimate`."""
    # Whether the BPE file is there, not the tokenizer itself: building it imports transformers,
    # which a step that only compares fingerprints (nothing to caption) need not pay.
    return "clip-bpe" if clip_bpe_path() is not None else "estimate"


# ---------------------------------------------------------------- the captions table

CAPTION_TAG, CAPTION_FIELDS = schemas.CAPTION_TAG, schemas.CAPTIONS


def caption_from_row(row: Mapping[str, Any]) -> Caption:
    """Rebuild a `Caption` from a `captions` table row, so later stages can still remove tags."""
    template = TEMPLATES.get(row["template_id"], DEFAULT_TEMPLATE)
    fields = {name: row[name] for name in ("caption", "template_id", "shortened", "dropped_tags", "n_text_tokens", "status", "title")}
    return Caption(tags=[dict(tag) for tag in row["tags"]], template=template, **fields)


def captions_table(tokens: pa.Table, collection_name: str, template: CaptionTemplate | None = None) -> pa.Table:
    """One caption row per row of a `tokens` table (see `schemas.TOKENS`).

    The schema metadata records which token counter measured `n_text_tokens`, so counts made with
    and without CLIP's vocabulary are never mixed up unknowingly.
    """
    template = template or template_for(collection_name)
    rows = []
    for token in tokens.select(["collection", "token_id", "name", "attributes"]).to_pylist():
        caption = caption_token(collection_name, token["name"], token["token_id"], token["attributes"] or [], template)
        rows.append(
            {
                "collection": token["collection"],
                "token_id": token["token_id"],
                "caption": caption.caption,
                "tags": caption.tags,
                "template_id": caption.template_id,
                "shortened": caption.shortened,
                "dropped_tags": caption.dropped_tags,
                "n_text_tokens": caption.n_text_tokens,
                "status": caption.status,
                "title": caption.title,
            }
        )
    schema = CAPTION_FIELDS.with_metadata({"token_counter": token_counter()})
    return pa.Table.from_pylist(rows, schema=schema)


__all__ = [
    "CAPTION_FIELDS",
    "DEFAULT_TEMPLATE",
    "MAX_TEXT_TOKENS",
    "TEMPLATES",
    "Caption",
    "CaptionTag",
    "CaptionTemplate",
    "caption_token",
    "captions_table",
    "count_text_tokens",
    "estimate_text_tokens",
    "remove_tag",
    "render_caption",
    "template_for",
    "token_counter",
    "word_attribute",
]
