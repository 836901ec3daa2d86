"""Natural-language queries generated from tokens' traits, and which tokens answer them.

How people describe tokens, not the captions' template: generated from the tokens' own traits with
varied phrasings (group words such as "girl" for Female 1..4, colours within a type such as "blue
glasses", typos, plurals, word order, collection words or none), plus hand-written ones. A token
is relevant to a query when it carries every trait the query names (each named trait is a set of
acceptable values: "female" accepts Female 1..4).

One generator for the two measurements that use it: `bench_search_quality.py` (the search API over
an index, issue #15) and `experiment_masking.py` (a training run's embedding ranking over its test
tokens, issue #19).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

Trait = tuple[str, str]  # (trait_type, value)


@dataclass(frozen=True)
class Query:
    text: str
    collection: str
    needs: tuple[frozenset[Trait], ...]  # every set must be met by one of the token's traits
    source: str  # generated | hand


@dataclass
class Token:
    collection: str
    token_id: str
    traits: frozenset[Trait]


def relevant(token: Token, query: Query) -> bool:
    return token.collection == query.collection and all(token.traits & need for need in query.needs)


# ------------------------------------------------------------------ phrasings people use


FEMALE_WORDS = ["female", "woman", "girl", "lady", "women", "females", "girls"]
MALE_WORDS = ["male", "man", "guy", "dude", "men", "males", "boy"]
PUNK_WORDS = ["punk", "cryptopunk", "punks", "crypto punk", ""]
NOUN_WORDS = ["noun", "nouns", ""]
CONNECTORS = ["with", "wearing", "in", "that has", "having", "with a", "sporting", "w/", "and"]


def typo(word: str, rng: random.Random) -> str:
    """One small slip in a word of 5+ letters (not the first letter): a swap, a drop or a double."""
    if len(word) < 5 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(["swap", "drop", "double"])
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def casual(phrase: str, rng: random.Random) -> str:
    """A value as someone might type it: lower case, hyphens as spaces, sometimes a typo or a plural."""
    words = phrase.replace("-", " ").lower().split()
    if rng.random() < 0.2:
        longest = max(range(len(words)), key=lambda i: len(words[i]))
        words[longest] = typo(words[longest], rng)
    if rng.random() < 0.1 and words[-1].isalpha() and not words[-1].endswith("s"):
        words[-1] += "s"
    if rng.random() < 0.15:
        return " ".join(words).upper() if rng.random() < 0.3 else " ".join(words).title()
    return " ".join(words)


def punk_type_phrase(value: str, rng: random.Random, values: Sequence[str]) -> tuple[str, frozenset[Trait]]:
    number = re.fullmatch(r"(Female|Male) (\d)", value)
    if number and rng.random() < 0.8:
        group = frozenset(("Type", v) for v in values if v.startswith(number.group(1) + " "))
        words = FEMALE_WORDS if number.group(1) == "Female" else MALE_WORDS
        return rng.choice(words), group
    return casual(value, rng), frozenset({("Type", value)})


def punk_query(token: Token, rng: random.Random, type_values: Sequence[str]) -> Query:
    kind = next(v for t, v in token.traits if t == "Type")
    accessories = sorted(v for t, v in token.traits if t != "Type")
    chosen = rng.sample(accessories, k=min(len(accessories), rng.choice([1, 1, 2])))
    needs = [frozenset({("Accessory", v)}) for v in chosen]
    parts = [casual(v, rng) for v in chosen]
    collection_word = rng.choice(PUNK_WORDS)
    with_type = rng.random() < 0.75 or not parts
    if with_type:
        type_text, type_need = punk_type_phrase(kind, rng, type_values)
        needs.append(type_need)
    else:
        type_text = collection_word or "punk"
    things = f" {rng.choice(['and', 'and a', ','])} ".join(parts).replace(" , ", ", ")
    template = rng.choice(
        [
            "{type} {conn} {things}",
            "{collection} {type} {conn} {things}",
            "{things} {type}",
            "{type} {collection} {conn} {things}",
            "a {type} {conn} {things}",
            "{things} on a {type}",
        ]
    )
    text = template.format(type=type_text, conn=rng.choice(CONNECTORS), things=things, collection=collection_word)
    return Query(" ".join(text.split()), token.collection, tuple(needs), "generated")


NOUN_TYPE_WORDS = {"head": "head", "glasses": "glasses", "body": "body", "accessory": "", "background": "background"}


def noun_part(
    trait_type: str, value: str, values_of_type: Sequence[str], rng: random.Random, values_by_any_type
) -> tuple[str, frozenset[Trait]]:
    """A Noun trait in words; glasses often by colour alone ("blue glasses" = every blue pair)."""
    words = value.replace("-", " ").lower().split()
    if trait_type == "glasses" and words[0] == "square" and len(words) > 1 and rng.random() < 0.7:
        colour = words[1]  # "black glasses": every pair with black in its name ("square-fullblack" too)
        group = frozenset(("glasses", v) for v in values_of_type if colour in v.lower())
        return f"{colour} glasses", group
    noun = NOUN_TYPE_WORDS[trait_type]
    text = casual(value, rng)
    if not noun:  # said without its type ("a noun with rgb"): the value under any type counts
        return text, frozenset((other_type, value) for other_type in values_by_any_type(value))
    return (f"{text} {noun}".strip(), frozenset({(trait_type, value)}))


def noun_query(token: Token, rng: random.Random, values_by_type: dict[str, list[str]]) -> Query:
    traits = sorted(token.traits)
    chosen = rng.sample(traits, k=rng.choice([1, 1, 2]))
    parts, needs = [], []
    for trait_type, value in chosen:
        text, need = noun_part(
            trait_type, value, values_by_type[trait_type], rng,
            lambda v: [t for t, values in values_by_type.items() if v in values],
        )
        parts.append(text)
        needs.append(need)
    collection_word = rng.choice(NOUN_WORDS) or "noun"
    template = rng.choice(["{c} {conn} {things}", "{things} {c}", "a {c} {conn} {things}", "{things}"])
    things = f" {rng.choice(['and', 'and a', ','])} ".join(parts).replace(" , ", ", ")
    text = template.format(c=collection_word, conn=rng.choice(CONNECTORS), things=things)
    return Query(" ".join(text.split()), token.collection, tuple(needs), "generated")


def generated_queries(tokens: list[Token], count: int, seed: int) -> list[Query]:
    rng = random.Random(seed)
    by_collection: dict[str, list[Token]] = defaultdict(list)
    values_by_type: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for token in tokens:
        by_collection[token.collection].append(token)
        for trait_type, value in token.traits:
            values_by_type[token.collection][trait_type].add(value)
    makers = []
    if "cryptopunks" in by_collection:
        type_values = sorted(values_by_type["cryptopunks"]["Type"])
        makers.append(("cryptopunks", lambda t: punk_query(t, rng, type_values), 0.6))
    if "nouns" in by_collection:
        nouns_values = {k: sorted(v) for k, v in values_by_type["nouns"].items()}
        makers.append(("nouns", lambda t: noun_query(t, rng, nouns_values), 0.4))
    queries, seen = [], set()
    while len(queries) < count and makers:
        collection, make, _ = rng.choices(makers, weights=[w for *_, w in makers])[0]
        query = make(rng.choice(by_collection[collection]))
        if query.text.lower() not in seen:
            seen.add(query.text.lower())
            queries.append(query)
    return queries


def _punk(*needs: Sequence[str] | str) -> tuple[frozenset[Trait], ...]:
    """Needs of a hand-written punk query: a string is one Accessory; a list, alternatives (Type given as 'Type:X')."""
    out = []
    for need in needs:
        options = [need] if isinstance(need, str) else list(need)
        out.append(frozenset(("Type", o[5:]) if o.startswith("Type:") else ("Accessory", o) for o in options))
    return tuple(out)


FEMALE = [f"Type:Female {i}" for i in range(1, 5)]
MALE = [f"Type:Male {i}" for i in range(1, 5)]
SHADES = ["Big Shades", "Classic Shades", "Regular Shades", "Small Shades"]
HAND_PUNKS = [
    ("punk girl with a blonde bob", _punk(FEMALE, "Blonde Bob")),
    ("zombie smoking a pipe", _punk(["Type:Zombie"], "Pipe")),
    ("alien with a cap", _punk(["Type:Alien"], "Cap")),
    ("ape in a hoodie", _punk(["Type:Ape"], "Hoodie")),
    ("guy with sunglasses and a cigarette", _punk(MALE, SHADES, "Cigarette")),
    ("lady with hot lipstick", _punk(FEMALE, "Hot Lipstick")),
    ("3d glasses punk", _punk("3D Glasses")),
    ("male punk with a mohawk", _punk(MALE, "Mohawk")),
    ("woman with pigtails", _punk(FEMALE, "Pigtails")),
    ("girl with a tiara", _punk(FEMALE, "Tiara")),
    ("Punks wearing VR headsets", _punk("VR")),
    ("zombie with an earring", _punk(["Type:Zombie"], "Earring")),
    ("blond bob", _punk("Blonde Bob")),
    ("man with a big beard", _punk(MALE, "Big Beard")),
    ("dude in a cowboy hat", _punk(MALE, "Cowboy Hat")),
    ("female with purple eye shadow", _punk(FEMALE, "Purple Eye Shadow")),
    ("welding goggles", _punk("Welding Goggles")),
    ("cryptopunk with a medical mask", _punk("Medical Mask")),
    ("punk with a pilot helmet", _punk("Pilot Helmet")),
    ("ape with a bandana", _punk(["Type:Ape"], "Bandana")),
    ("zombies", _punk(["Type:Zombie"])),
    ("aliens", _punk(["Type:Alien"])),
    ("guy smoking a vape", _punk(MALE, "Vape")),
    ("girl with wild blonde hair", _punk(FEMALE, "Wild Blonde")),
    ("male with a police cap", _punk(MALE, "Police Cap")),
    ("punk with a gold chain", _punk("Gold Chain")),
    ("nerd glasses and a mole", _punk("Nerd Glasses", "Mole")),
    ("female in a knitted cap", _punk(FEMALE, "Knitted Cap")),
    ("man with an eye patch", _punk(MALE, "Eye Patch")),
    ("clown nose", _punk("Clown Nose")),
    ("woman wearing a choker", _punk(FEMALE, "Choker")),
    ("dude with a do-rag", _punk(MALE, "Do-rag")),
    ("punk with a top hat", _punk("Top Hat")),
    ("lady with green eyeshadow", _punk(FEMALE, "Green Eye Shadow")),
    ("male with a frown", _punk(MALE, "Frown")),
    ("hoodie guy", _punk(MALE, "Hoodie")),
    ("girl with an earing", _punk(FEMALE, "Earring")),
    ("mustache man", _punk(MALE, "Mustache")),
]
HAND_NOUNS = [
    ("noun in blue glasses", "glasses", ["square-blue", "square-blue-med-saturated", "square-green-blue-multi"]),
    ("noun with red glasses", "glasses", ["square-red", "square-black-eyes-red"]),
    ("nouns with a warm background", "background", ["warm"]),
    ("noun on a cool background", "background", ["cool"]),
    ("noun with a gold body", "body", ["gold"]),
    ("a noun with a teal body", "body", ["teal"]),
    ("noun in pink glasses", "glasses", ["square-pink-purple-multi"]),
    ("orange glasses noun", "glasses", ["square-orange", "square-yellow-orange-multi"]),
    ("yellow body noun", "body", ["yellow"]),
    ("noun with black glasses", "glasses", ["square-black", "square-black-eyes-red", "square-black-rgb", "square-fullblack"]),
]


def hand_queries(tokens: list[Token]) -> list[Query]:
    queries = [Query(text, "cryptopunks", needs, "hand") for text, needs in HAND_PUNKS]
    for text, trait_type, values in HAND_NOUNS:
        queries.append(Query(text, "nouns", (frozenset((trait_type, v) for v in values),), "hand"))
    present = {token.collection for token in tokens}
    return [query for query in queries if query.collection in present]


# ------------------------------------------------------------------ scoring an embedding ranking


def precision_at(ranked: Sequence[Token], query: Query, n_relevant: int, k: int = 10) -> float:
    """Relevant tokens among the first k, out of min(k, relevant tokens): 1.0 is the best any ranking can do."""
    return sum(relevant(token, query) for token in ranked[:k]) / min(k, n_relevant)


def chance_precision(n_relevant: int, n_tokens: int, k: int = 10) -> float:
    """`precision_at` expected of a random ordering of `n_tokens` tokens, `n_relevant` of them relevant."""
    return min(k, n_tokens) * n_relevant / n_tokens / min(k, n_relevant)
