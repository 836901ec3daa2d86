"""Query understanding: what a typed query says about traits and collections, read against the index's own vocabulary.

People describe tokens in their own words ("punk girl with a blond bob", "zombie smoking a pipe",
"noun in blue glasses"), not in the captions' template. The parser finds the trait values a query
names, so that ranking can require them (ranking.py) and the page can show them as chips.

The vocabulary is built from what is indexed (every token's caption tags and its collection), so a
collection added later is understood without code changes:

- a trait value is known by its words ("Blonde Bob" -> blonde, bob; "square-blue" -> square, blue)
  plus the words of its trait type ("glasses"), so "blue glasses" names the Nouns glasses values
  with "blue" in them;
- words are compared folded: case, accents, hyphens and plurals aside ("Do-rag" = "do rags"), and
  a word of 4+ letters (same first letter) one edit away from a vocabulary word is read as it
  ("blond" -> blonde, "hoddie" -> hoodie; 2 edits from 8 letters on);
- groups come from the data: a span that is a value exactly names that value ("cap" is `Cap`, not
  every cap); otherwise it names every value whose words contain it, which is how numbered
  variants ("female" = Female 1..4), shared heads ("shades" = Big/Classic/Regular/Small Shades)
  and colours within a type ("blue glasses") become groups without a hand list per collection;
- a few everyday words map onto vocabulary words (`SYNONYMS`: "girl" -> female, "sunglasses" ->
  shades); a synonym whose target a collection lacks simply matches nothing there;
- collection words are the collection slug, its token names' first word and its caption template's
  subject noun ("cryptopunks", "cryptopunk", "punk"; "nouns", "noun");
- "no", "not", "without" negate the trait named next ("punk without earring").

Words that name nothing stay in `residual`: ranking uses the whole query's text embedding, so a
query with no known trait ("ape driving a lambo" minus "ape") still works through the embeddings.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

MAX_SPAN_WORDS = 6  # the longest trait value phrase tried ("tie purple on white accessory")
FUZZY_MIN_LETTERS = 4  # shorter words must be spelled right: "cap"/"cat"/"car" are all real values
FUZZY_TWO_EDITS_LETTERS = 8
CATEGORY_MIN_VALUES = 3  # a word in this many values of a collection names a kind of thing ("hair")
COMPOUND_PART_LETTERS = 4  # "grey" in "foggrey"; shorter parts ("cap" in "capybara") mislead

# Words that carry no trait: articles, connectors, verbs of wearing and having. Trait values that
# contain them ("Pink With Hat") are matched on their other words.
STOPWORDS = frozenset(
    """a an the and or with in on of at to by for from who that which is are its it their his her has have
    having wearing wears wear worn weared sporting sports dressed dress showing shows show holding holds
    plus also some any one ones look looking looks like kind sort type style nft nfts token tokens
    image picture pic photo me find search show give want i am please all them this these those w""".split()
)
NEGATIONS = frozenset({"no", "not", "without", "non", "minus", "except", "excluding", "never", "w/o", "nor"})

# Everyday words for vocabulary words. Keys and targets are folded words (see `words`); a target is
# one vocabulary phrase (several words match as a phrase) and several targets are alternatives.
SYNONYMS: Mapping[str, tuple[str, ...]] = {
    "girl": ("female",), "woman": ("female",), "women": ("female",), "lady": ("female",), "ladie": ("female",),
    "gal": ("female",), "feminine": ("female",), "she": ("female",),
    "boy": ("male",), "man": ("male",), "men": ("male",), "guy": ("male",), "dude": ("male",),
    "gentleman": ("male",), "masculine": ("male",), "he": ("male",), "bloke": ("male",),
    "sunglass": ("shade",), "sunnie": ("shade",), "spectacle": ("glass",), "spec": ("glass",), "eyeglass": ("glass",),
    "monkey": ("ape",), "gorilla": ("ape",), "chimp": ("ape",),
    "undead": ("zombie",), "extraterrestrial": ("alien",), "martian": ("alien",),
    "smoking": ("cigarette", "pipe", "vape"), "smoker": ("cigarette", "pipe", "vape"),
    "smoke": ("cigarette", "pipe", "vape"), "cig": ("cigarette",), "ciggy": ("cigarette",),
    "cigaret": ("cigarette",), "vaping": ("vape",), "bald": ("shaved head",),
    "grey": ("grey", "gray"), "gray": ("gray", "grey"), "colour": (), "color": (),
    "earing": ("earring",), "moustache": ("mustache",), "tash": ("mustache",), "stache": ("mustache",),
    "hoody": ("hoodie",), "hood": ("hoodie",), "blond": ("blonde",), "bg": ("background",),
}


def fold(text: str) -> str:
    """Lower case without accents: how every word is compared."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()


_WORD = re.compile(r"[a-z0-9]+(?:/o)?|[^\x00-\x7f]+", re.IGNORECASE)


@lru_cache(maxsize=65536)
def singular(word: str) -> str:
    """A plural folded to its singular by English suffix rules (no dictionary): glasses -> glass,
    pigtails -> pigtail, zombies -> zombie; "ss"/"us"/"is" endings are kept. "-ies" loses only its
    "s" (zombies, hoodies): "bodies" -> "bodie" is then one typo from "body"."""
    if len(word) <= 3 or word[-1] != "s" or word.isdigit():
        return word
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is")):
        return word
    return word[:-1]


def words(text: str) -> list[str]:
    """Folded, singular words of `text` (hyphens, underscores and punctuation separate words)."""
    return [singular(match.group(0)) for match in _WORD.finditer(fold(text))]


def _word_spans(text: str) -> list[tuple[str, int, int]]:
    """(folded singular word, start, end) for each word of `text`, offsets into `text` itself."""
    spans = []
    for match in _WORD.finditer(text):
        folded = fold(match.group(0))
        if folded:
            spans.append((singular(folded), match.start(), match.end()))
    return spans


@dataclass(frozen=True)
class TraitRef:
    """One trait value of one collection, as its tags say it."""

    collection: str
    trait_type: str
    value: str

    @property
    def filter_key(self) -> str:
        """How the `trait=` filter names it: TYPE=VALUE."""
        return f"{self.trait_type}={self.value}"


@dataclass(frozen=True)
class Chip:
    """One thing the parser understood: a collection or a set of alternative trait values.

    `span` is where its words are in the query (start, end offsets), so the page can remove them;
    `traits` are ids into `TraitVocabulary.traits`; `corrected` lists typo corrections made.
    """

    kind: str  # collection | trait
    text: str
    span: tuple[int, int]
    label: str
    negated: bool = False
    collection: str | None = None
    traits: tuple[int, ...] = ()
    corrected: tuple[str, ...] = ()
    source: str = "query"  # query | filter

    def to_json(self, vocabulary: TraitVocabulary) -> dict[str, Any]:
        refs = [vocabulary.traits[trait] for trait in self.traits]
        return {
            "kind": self.kind,
            "text": self.text,
            "span": list(self.span),
            "label": self.label,
            "negated": self.negated,
            "collection": self.collection,
            "filter": self.collection if self.kind == "collection" else "|".join(
                dict.fromkeys(ref.filter_key for ref in refs)
            ),
            "values": [{"collection": r.collection, "trait_type": r.trait_type, "value": r.value} for r in refs],
            "corrected": list(self.corrected),
            "source": self.source,
        }


@dataclass(frozen=True)
class Interpretation:
    """What a query was understood as: chips (in query order) and the words that named nothing."""

    query: str
    chips: tuple[Chip, ...]
    residual: tuple[str, ...]

    @property
    def collections(self) -> tuple[str, ...]:
        return tuple(chip.collection for chip in self.chips if chip.kind == "collection" and not chip.negated)

    @property
    def trait_chips(self) -> tuple[Chip, ...]:
        return tuple(chip for chip in self.chips if chip.kind == "trait")

    def to_json(self, vocabulary: TraitVocabulary) -> dict[str, Any]:
        return {
            "query": self.query,
            "chips": [chip.to_json(vocabulary) for chip in self.chips],
            "residual": list(self.residual),
        }


def _edits_allowed(word: str) -> int:
    if len(word) < FUZZY_MIN_LETTERS or word.isdigit():
        return 0
    return 2 if len(word) >= FUZZY_TWO_EDITS_LETTERS else 1


def _deletions(word: str, depth: int) -> set[str]:
    found, frontier = set(), {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        found |= frontier
    return found


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (insertions, deletions, substitutions, adjacent swaps)."""
    previous2, previous = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if previous2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


class TraitVocabulary:
    """Every indexed trait value and collection, and the word postings the parser matches against.

    Built once per index version from the rows' collections, tags and names (`from_rows`).
    """

    def __init__(self, traits: Sequence[TraitRef], collection_words: Mapping[str, Iterable[str]], counts: Sequence[int]):
        self.traits = list(traits)
        self.counts = list(counts)  # tokens carrying each trait
        self.trait_id = {ref: i for i, ref in enumerate(self.traits)}
        self.value_words: list[frozenset[str]] = []
        self.full_words: list[frozenset[str]] = []
        self.postings: dict[str, set[int]] = defaultdict(set)
        for i, ref in enumerate(self.traits):
            value = frozenset(w for w in words(ref.value) if w not in STOPWORDS)
            full = value | {w for w in words(ref.trait_type) if w not in STOPWORDS}
            self.value_words.append(value)
            self.full_words.append(full)
            for word in full:
                self.postings[word].add(i)
        self._add_compound_parts()
        # Words naming a kind of thing several values of one trait type end with ("hair", "hat", "shade"),
        # and are not a value themselves ("cap" is one): word -> {(collection, trait type)}.
        per_type: Counter[tuple[str, str, str]] = Counter(
            (ref.collection, ref.trait_type, ordered[-1])
            for ref in self.traits
            if (ordered := [w for w in words(ref.value) if w not in STOPWORDS])
        )
        values = {(self.traits[i].collection, word) for i, value in enumerate(self.value_words) if len(value) == 1 for word in value}
        self.category_words: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for (collection, trait_type, word), n in per_type.items():
            if n >= CATEGORY_MIN_VALUES and (collection, word) not in values:
                self.category_words[word].add((collection, trait_type))
        for ref in self.traits:
            for word in words(ref.trait_type):
                self.category_words[word].add((ref.collection, ref.trait_type))
        self.collection_of_word: dict[str, str] = {}
        for collection, names in collection_words.items():
            for name in names:
                name_words = [w for w in words(name) if w not in STOPWORDS]
                for word in [*name_words, "".join(name_words)]:
                    if word not in STOPWORDS and not word.isdigit() and len(word) > 2:
                        self.collection_of_word.setdefault(word, collection)
        self.collections = sorted(collection_words)
        known = set(self.postings) | set(self.collection_of_word)
        self._by_deletion: dict[str, set[str]] = defaultdict(set)
        for word in known:
            for deleted in _deletions(word, _edits_allowed(word)) | {word}:
                self._by_deletion[deleted].add(word)
        self.known_words = known

    def _add_compound_parts(self) -> None:
        """Post a run-together value word under the vocabulary words it starts or ends with
        ("foggrey" under grey, "slimegreen" under green), so "grey body" finds it."""
        standalone = [word for word in self.postings if len(word) >= COMPOUND_PART_LETTERS and not word.isdigit()]
        for word in list(self.postings):
            for part in standalone:
                rest = len(word) - len(part)
                if rest >= COMPOUND_PART_LETTERS - 1 and (word.startswith(part) or word.endswith(part)):
                    for trait in self.postings[word]:
                        self.postings[part].add(trait)
                        self.full_words[trait] = self.full_words[trait] | {part}

    @classmethod
    def from_rows(
        cls,
        collections: Sequence[str],
        tags: Sequence[Sequence[Mapping[str, Any]]],
        names: Sequence[str | None],
        subject_nouns: Mapping[str, str | None] | None = None,
    ) -> TraitVocabulary:
        """The vocabulary of indexed rows: one collection, tag list and token name per row.
        `subject_nouns` are the captions' words for a collection's token ("a punk"), if known."""
        counts: Counter[TraitRef] = Counter()
        first_words: dict[str, Counter[str]] = defaultdict(Counter)
        for collection, row_tags, name in zip(collections, tags, names, strict=True):
            for tag in row_tags:
                counts[TraitRef(collection, tag["trait_type"] or "", tag["value"])] += 1
            if name:
                head = re.split(r"[\s#:]+", name.strip(), maxsplit=1)[0]
                if head:
                    first_words[collection][head] += 1
        collection_words: dict[str, list[str]] = {}
        for collection in dict.fromkeys(collections):
            names_of = [collection]
            if first_words[collection]:
                names_of.append(first_words[collection].most_common(1)[0][0])
            noun = (subject_nouns or {}).get(collection)
            if noun:
                names_of.append(noun)
            collection_words[collection] = names_of
        traits = sorted(counts, key=lambda ref: (ref.collection, ref.trait_type, ref.value))
        return cls(traits, collection_words, [counts[ref] for ref in traits])

    def correct(self, word: str) -> str | None:
        """The vocabulary word `word` is a small typo of (same first letter), or None."""
        allowed = _edits_allowed(word)
        if not allowed:
            return None
        candidates = set()
        for deleted in _deletions(word, allowed) | {word}:
            candidates |= self._by_deletion.get(deleted, set())
        best = None
        for candidate in candidates:
            if candidate[0] != word[0]:
                continue
            distance = edit_distance(word, candidate)
            if distance <= min(allowed, _edits_allowed(candidate) or 0):
                key = (distance, -len(self.postings.get(candidate, ())), candidate)
                best = min(best, key) if best else key
        return best[2] if best else None

    def split(self, word: str) -> tuple[str, str] | None:
        """`word` as two vocabulary words run together ("eyeshadow" -> eye, shadow), or None."""
        for cut in range(2, len(word) - 1):
            head, tail = word[:cut], singular(word[cut:])
            if head in self.postings and tail in self.postings and head not in STOPWORDS and tail not in STOPWORDS:
                return head, tail
        return None

    def matching(
        self, span_words: frozenset[str], collections: Sequence[str] = (), exact_only: bool = False
    ) -> tuple[int, ...]:
        """The trait ids a bag of words names, in `collections` (all if empty): per collection, the
        values it is exactly, if any, else every value containing all its words."""
        ids: set[int] | None = None
        for word in span_words:
            posting = self.postings.get(word)
            if not posting:
                return ()
            ids = set(posting) if ids is None else ids & posting
            if not ids:
                return ()
        if not ids:
            return ()
        by_collection: dict[str, list[int]] = defaultdict(list)
        for i in ids:
            if not collections or self.traits[i].collection in collections:
                by_collection[self.traits[i].collection].append(i)
        found = []
        for members in by_collection.values():
            exact = [i for i in members if span_words in (self.value_words[i], self.full_words[i])]
            found.extend(exact or ([] if exact_only else members))
        return tuple(sorted(found))


@dataclass
class _Word:
    text: str  # folded singular word as matched (after typo correction and synonyms)
    start: int
    end: int
    original: str
    corrected: bool = False
    negated: bool = False
    alternatives: tuple[tuple[str, ...], ...] = ()  # synonym targets, each a phrase of words
    adjacent: bool = False  # follows the previous content word directly (no connector or comma between)


@dataclass
class QueryParser:
    """Reads queries against one `TraitVocabulary` (see the module docstring)."""

    vocabulary: TraitVocabulary
    synonyms: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: SYNONYMS)

    def parse(self, query: str) -> Interpretation:
        chips, content = self._read_words(query)
        residual: list[str] = []
        collections = tuple(chip.collection for chip in chips if not chip.negated)
        position = 0
        while position < len(content):
            chip, used = self._longest_trait_span(query, content, position, collections)
            if chip is None:
                residual.append(content[position].original)
                position += 1
            else:
                chips.append(chip)
                position += used
        chips.sort(key=lambda chip: chip.span)
        return Interpretation(query, tuple(_drop_subsumed(chips)), tuple(residual))

    def _read_words(self, query: str) -> tuple[list[Chip], list[_Word]]:
        """Collection chips, and the other words ready for span matching: stopwords dropped,
        negations attached to the next word, synonyms expanded, typos corrected, compounds split."""
        vocabulary = self.vocabulary
        chips: list[Chip] = []
        content: list[_Word] = []
        negate = False
        previous_end = None  # end of the last content word, None after a connector
        for word, start, end in _word_spans(query):
            original = query[start:end]
            if word in NEGATIONS or (word == "or" and content and content[-1].negated):
                negate = True  # "no earring or mole": the negation runs on over "or"
                previous_end = None
                continue
            if word in STOPWORDS:
                previous_end = None
                continue
            adjacent = previous_end is not None and query[previous_end:start].strip() in ("", "-")
            previous_end = end
            corrected = None
            if content and adjacent and len(content[-1].original) <= 2 and (joined := content[-1].text + word) in vocabulary.known_words:
                content[-1] = _Word(joined, content[-1].start, end, query[content[-1].start : end], False, content[-1].negated, (), content[-1].adjacent)
                continue  # "3-d" -> 3d
            if word not in vocabulary.known_words and word not in self.synonyms:
                stem = self._stem(word)
                if stem is not None:
                    word = stem  # "bearded" -> beard, "bodies" (folded to "bodie") -> body
                else:
                    corrected = vocabulary.correct(word) or self._everyday_typo(word)
            collection = vocabulary.collection_of_word.get(corrected or word)
            if collection is not None:
                typo = (f"{original} -> {corrected}",) if corrected else ()
                chips.append(Chip("collection", original, (start, end), collection, negate, collection, (), typo))
            elif corrected is not None:
                content.append(_Word(corrected, start, end, original, True, negate, (), adjacent))
            elif word in self.synonyms:
                targets = tuple(tuple(target.split()) for target in self.synonyms[word])
                if word in vocabulary.postings:  # "smoke" is also a Nouns glasses colour
                    targets = ((word,), *targets)
                content.append(_Word(word, start, end, original, False, negate, targets, adjacent))
            elif word not in vocabulary.known_words and (parts := vocabulary.split(word)) is not None:
                content.extend(_Word(part, start, end, original, False, negate, (), True) for part in parts)
                content[-2].adjacent = adjacent
            else:
                content.append(_Word(word, start, end, original, False, negate, (), adjacent))
            negate = False
        return chips, content

    def _everyday_typo(self, word: str) -> str | None:
        """A synonym key `word` is one small typo of ("sunglases" -> sunglass), corrected to its target
        word when that is a single vocabulary word; None otherwise."""
        allowed = _edits_allowed(word)
        for key, targets in self.synonyms.items():
            if (
                allowed and key[0] == word[0] and abs(len(key) - len(word)) <= allowed
                and len(targets) == 1 and targets[0] in self.vocabulary.known_words
                and edit_distance(word, key) <= min(allowed, _edits_allowed(key))
            ):
                return targets[0]
        return None

    def _stem(self, word: str) -> str | None:
        """A vocabulary word `word` is an inflection of: -ed/-ing/-y endings, doubled consonants,
        "-ies" plurals ("bearded" -> beard, "spotted" -> spot, "smiling" -> smile, "bodie" -> body)."""
        known = self.vocabulary.known_words
        candidates = []
        if word.endswith("s") and word[:-1] in known:  # short plurals singular() leaves alone ("ccs")
            return word[:-1]
        for suffix in ("ed", "ing", "y", "d"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                base = word[: -len(suffix)]
                candidates += [base, base + "e", base[:-1] if len(base) > 3 and base[-1] == base[-2] else base]
        if word.endswith("ie"):
            candidates.append(word[:-2] + "y")
        return next((candidate for candidate in candidates if candidate in known), None)

    def _longest_trait_span(
        self, query: str, content: list[_Word], position: int, collections: Sequence[str]
    ) -> tuple[Chip | None, int]:
        for length in range(min(MAX_SPAN_WORDS, len(content) - position), 0, -1):
            span = content[position : position + length]
            if length > 1 and any(w.negated for w in span[1:]):
                continue  # "bob no earring": a negation starts a new span
            ids = self._span_traits(span, collections)
            if length > 1 and self._kind_word_ends(span, content, position + length, collections):
                # "wild blonde hair": a value (Wild Blonde) and the kind of thing it is; "blonde hair":
                # every blonde value that is hair, not only the one whose words hold both
                ids = self._with_kind(span, ids, collections)
            if ids:
                start, end = span[0].start, span[-1].end
                corrected = tuple(f"{w.original} -> {w.text}" for w in span if w.corrected)
                label = _label(self.vocabulary, ids)
                chip = Chip("trait", query[start:end], (start, end), label, span[0].negated, None, ids, corrected)
                return chip, length
        return None, 0

    def _with_kind(self, span: list[_Word], ids: tuple[int, ...], collections: Sequence[str]) -> tuple[int, ...]:
        """`ids` for a span ending in a kind word, widened to the values the words before it name that
        are of that kind: "wild blonde hair" (no value holds all three words) is Wild Blonde, "blonde
        hair" is every blonde value where a value holding both words shows blonde things are hair.
        A span that is a value exactly ("wild white hair") stays that value."""
        vocabulary = self.vocabulary
        kind = span[-1].text
        if ids and self._span_traits(span, collections, exact_only=True):
            return ids
        shown_kind = {vocabulary.traits[i].collection for i in ids if kind in vocabulary.value_words[i]}
        named = self._span_traits(span[:-1], collections, exact_only=not ids)
        kinds = vocabulary.category_words[kind]
        extra = {
            i for i in named
            if (vocabulary.traits[i].collection, vocabulary.traits[i].trait_type) in kinds
            and (not ids or vocabulary.traits[i].collection in shown_kind)
        }
        return tuple(sorted({*ids, *extra}))

    def _kind_word_ends(self, span: list[_Word], content: list[_Word], after: int, collections: Sequence[str]) -> bool:
        """Whether the span's last word is a kind word ("hair", "hat") said right after the words
        before it, and not the start of the next value ("lipstick straight hair dark")."""
        last = span[-1]
        if not last.adjacent or not self.vocabulary.category_words.get(last.text):
            return False
        return after >= len(content) or not content[after].adjacent or not self._span_traits([last, content[after]], collections)

    def _span_traits(self, span: list[_Word], collections: Sequence[str], exact_only: bool = False) -> tuple[int, ...]:
        """Trait ids named by a span of words: each synonym's alternatives tried, joined words tried
        ("hard hat" = hardhat), and a span only of numbers or of one letter refused."""
        if all(w.text.isdigit() or len(w.text) < 2 for w in span):
            return ()
        vocabulary = self.vocabulary
        choices: list[list[tuple[str, ...]]] = [list(w.alternatives) or [(w.text,)] for w in span]
        found: set[int] = set()
        for combination in _product(choices):
            bag = frozenset(word for phrase in combination for word in phrase)
            if not bag:
                continue
            found.update(vocabulary.matching(bag, collections, exact_only))
        if not found and len(span) > 1:
            joined = "".join(w.text for w in span)
            for word in (joined, singular(joined)):
                found.update(vocabulary.matching(frozenset({word}), collections))
        return tuple(sorted(found))


def _product(choices: list[list[tuple[str, ...]]]) -> Iterable[tuple[tuple[str, ...], ...]]:
    if not choices:
        yield ()
        return
    for first in choices[0]:
        for rest in _product(choices[1:]):
            yield (first, *rest)


def _drop_subsumed(chips: list[Chip]) -> list[Chip]:
    """Chips minus any positive trait chip another positive chip narrows ("smoking" beside "pipe")."""
    kept = []
    for chip in chips:
        narrower = any(
            other is not chip
            and other.kind == chip.kind == "trait"
            and not other.negated
            and not chip.negated
            and set(other.traits) < set(chip.traits)
            for other in chips
        )
        if not narrower:
            kept.append(chip)
    return kept


def _label(vocabulary: TraitVocabulary, ids: Sequence[int]) -> str:
    """How a chip reads: "Type: Female 1, Female 2, ..." or, across types, "Big Shades / glasses: ..."."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for trait in ids:
        ref = vocabulary.traits[trait]
        by_type[ref.trait_type].append(ref.value)
    parts = []
    for trait_type, values in by_type.items():
        unique = list(dict.fromkeys(values))
        shown = ", ".join(unique[:4]) + (f" +{len(unique) - 4}" if len(unique) > 4 else "")
        parts.append(f"{trait_type}: {shown}" if trait_type else shown)
    return " | ".join(parts)
