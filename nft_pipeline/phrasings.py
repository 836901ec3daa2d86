"""Several ways to say one token's caption, so the model learns how people write, not one template.

The `captions` table keeps one canonical sentence per token ("CryptoPunk #0: a Female 2 with a
Blonde Bob, Green Eye Shadow and an Earring."), which the paper's retrieval protocol scores. People
type "girl with a blonde bob and earring" or "earring, blonde bob, female punk". `phrase_caption`
re-says the same tags with a drawn word order (subject first or last, traits shuffled), connector
("with", "wearing", "that has", a comma), collection word or none, articles or none, lower case or
not, and everyday words for vocabulary words ("woman" for Female, "sunglasses" for Shades: the
reverse of the query parser's synonyms, query.py). Numbered variants may lose their number
("Female 2" -> "female"), as people do.

Training draws one phrasing per (token, epoch) from a generator seeded by the run's seed, the epoch
and the index (`phrasing_rng`), so a resumed or distributed run draws the same ones; tags that
masking hid are left out of the phrasing as they are of the canonical text.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Collection

from nft_pipeline.captions import Caption, CaptionTag, render_caption
from nft_pipeline.query import SYNONYMS

CONNECTORS = (" with ", " wearing ", " that has ", " in ", ", ", " having ", " with a ")
JOINERS = (", ", " and ", " & ", ", ")
TRAITS_FIRST = (" on a ", " on ", ", ")
PLAIN_PROBABILITY = 0.15  # the canonical sentence itself is one of the phrasings
DOUBLED_ARTICLE = re.compile(r"\ban? (an?)\b", re.IGNORECASE)  # the phrase's own article is the right one

# Everyday words for a vocabulary word: the parser's synonyms read backwards (woman -> female).
# Typos and pronouns the parser forgives are not taught.
NOT_TAUGHT = frozenset({"ladie", "she", "he", "feminine", "masculine", "earing", "cigaret", "hood", "women", "men"})
EVERYDAY: dict[str, list[str]] = defaultdict(list)
for _word, _targets in SYNONYMS.items():
    if len(_targets) == 1 and " " not in _targets[0] and _word != _targets[0] and _word not in NOT_TAUGHT:
        EVERYDAY[_targets[0]].append(_word)


def _plural_like(option: str, original: str) -> str:
    """`option` made plural when the word it replaces was ("Shades" -> "sunglasses")."""
    if not original.lower().endswith("s") or option.endswith("s") and not option.endswith("ss"):
        return option
    return option + ("es" if option.endswith("s") else "s")


def phrasing_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The generator of one (token, epoch)'s phrasing."""
    return random.Random(f"phrasing:{seed}:{epoch}:{index}")


def _everyday(phrase: str, rng: random.Random) -> str:
    """A tag's phrase in everyday words: maybe without its number, a word swapped for a synonym."""
    words = phrase.split()
    if words and words[0].lower() in ("a", "an") and rng.random() < 0.5:
        words = words[1:]
    if len(words) >= 2 and re.fullmatch(r"\d+", words[-1]) and rng.random() < 0.6:
        words = words[:-1]
    swapped = []
    for word in words:
        options = EVERYDAY.get(word.lower()) or EVERYDAY.get(word.lower().removesuffix("es")) or EVERYDAY.get(
            word.lower().removesuffix("s")
        )
        swapped.append(_plural_like(rng.choice(options), word) if options and rng.random() < 0.4 else word)
    return " ".join(swapped)


def phrase_caption(caption: Caption, rng: random.Random, hidden: Collection[int] = ()) -> str:
    """One phrasing of `caption` without the tags at indices `hidden` (see the module docstring)."""
    tags: list[CaptionTag] = [tag for i, tag in enumerate(caption.tags) if i not in hidden]
    if not tags:
        return caption.title
    if rng.random() < PLAIN_PROBABILITY:
        return render_caption(caption.title, tags, caption.template)
    template = caption.template
    has_subject = template.subject_trait is not None and (tags[0]["trait_type"] or "").lower() == template.subject_trait.lower()
    subject = _everyday(tags[0]["phrase"], rng) if has_subject else None
    listed = [_everyday(tag["phrase"], rng) for tag in (tags[1:] if has_subject else tags)]
    rng.shuffle(listed)
    title_word = re.split(r"[\s#:]+", caption.title.strip(), maxsplit=1)[0]
    collection_word = rng.choice(["", "", title_word, (template.subject_noun or "").removeprefix("a ").strip()])
    subject = " ".join(part for part in (collection_word if rng.random() < 0.5 else "", subject or "") if part) or collection_word
    joined = ""
    for position, phrase in enumerate(listed):
        joined += phrase if position == 0 else rng.choice(JOINERS) + phrase
    if not subject:
        text = joined
    elif not joined:
        text = subject
    elif rng.random() < 0.25:
        text = joined + rng.choice(TRAITS_FIRST) + subject
    else:
        text = subject + rng.choice(CONNECTORS) + joined
    text = DOUBLED_ARTICLE.sub(r"\1", " ".join(text.split()))  # " with a " + "a warm background"
    return text.lower() if rng.random() < 0.5 else text
