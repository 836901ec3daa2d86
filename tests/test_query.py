"""The query parser on the real trait vocabularies of the bundled CryptoPunks (10,000) and Nouns (1,000).

The vocabulary is built the way search builds it, from every token's caption tags, so these tests
exercise the groups and words the data gives (Female 1..4, the four Shades, the Nouns glasses
colours), not a fixture written to fit the parser.
"""

from __future__ import annotations

import pytest

from nft_pipeline.captions import caption_token, template_for
from nft_pipeline.query import QueryParser, TraitVocabulary, edit_distance, singular, words
from nft_pipeline.samples.nouns import Nouns
from nft_pipeline.samples.punks import CryptoPunks


@pytest.fixture(scope="module")
def parser() -> QueryParser:
    collections, tags, names = [], [], []
    for collection, supply in ((CryptoPunks(), 10_000), (Nouns(), 1_000)):
        for token_id in range(supply):
            metadata = collection.metadata(token_id)
            caption = caption_token(collection.name, metadata["name"], str(token_id), metadata["attributes"], None)
            collections.append(collection.slug)
            tags.append(caption.tags)
            names.append(metadata["name"])
    subject_nouns = {slug: template_for(slug).subject_noun for slug in set(collections)}
    return QueryParser(TraitVocabulary.from_rows(collections, tags, names, subject_nouns))


def understood(parser: QueryParser, query: str) -> list[tuple[str, bool, set[str]]]:
    """(kind, negated, {"Type=Female 1", ...} or {collection}) per chip, in query order."""
    interpretation = parser.parse(query)
    vocabulary = parser.vocabulary
    return [
        (
            chip.kind,
            chip.negated,
            {vocabulary.traits[t].filter_key for t in chip.traits} if chip.kind == "trait" else {chip.collection},
        )
        for chip in interpretation.chips
    ]


FEMALE = {f"Type=Female {n}" for n in range(1, 5)}
MALE = {f"Type=Male {n}" for n in range(1, 5)}
SHADES = {f"Accessory={kind} Shades" for kind in ("Big", "Classic", "Regular", "Small")}


def test_groups_come_from_numbered_variants_and_shared_words(parser):
    assert understood(parser, "female") == [("trait", False, FEMALE)]
    assert understood(parser, "male") == [("trait", False, MALE)]  # not the Female types "male" is inside
    assert understood(parser, "female 2") == [("trait", False, {"Type=Female 2"})]
    assert understood(parser, "shades") == [("trait", False, SHADES)]
    assert understood(parser, "noun in blue glasses") == [
        ("collection", False, {"nouns"}),
        ("trait", False, {"glasses=square-blue", "glasses=square-blue-med-saturated", "glasses=square-green-blue-multi"}),
    ]
    # A value that exists is meant exactly: "cap" is Cap, not every cap.
    assert understood(parser, "alien with a cap") == [
        ("trait", False, {"Type=Alien"}),
        ("trait", False, {"Accessory=Cap"}),
    ]


def test_everyday_words_plurals_case_hyphens_and_order(parser):
    assert understood(parser, "punk girl with a blonde bob") == [
        ("collection", False, {"cryptopunks"}),
        ("trait", False, FEMALE),
        ("trait", False, {"Accessory=Blonde Bob"}),
    ]
    assert understood(parser, "guy in sunglasses") == [("trait", False, MALE), ("trait", False, SHADES)]
    assert understood(parser, "3d glasses") == [("trait", False, {"Accessory=3D Glasses"})]
    # Without a collection word each collection reads the words its own way: a punk Zombie, a
    # Noun's stains-zombie accessory; the other trait decides which tokens answer.
    assert understood(parser, "ZOMBIES with EARRINGS") == [
        ("trait", False, {"Type=Zombie", "accessory=stains-zombie"}),
        ("trait", False, {"Accessory=Earring"}),
    ]
    assert understood(parser, "punk zombies") == [("collection", False, {"cryptopunks"}), ("trait", False, {"Type=Zombie"})]
    assert understood(parser, "eye shadow blue") == [("trait", False, {"Accessory=Blue Eye Shadow"})]
    assert understood(parser, "do rag") == understood(parser, "Do-Rag") == [("trait", False, {"Accessory=Do-rag"})]
    assert understood(parser, "blue eyeshadow") == [("trait", False, {"Accessory=Blue Eye Shadow"})]
    assert understood(parser, "hard hat noun") == [("trait", False, {"head=hardhat"}), ("collection", False, {"nouns"})]
    # "smoking" names Cigarette, Pipe or Vape; beside "pipe" it adds nothing and is dropped.
    assert understood(parser, "punk zombie smoking a pipe") == [
        ("collection", False, {"cryptopunks"}),
        ("trait", False, {"Type=Zombie"}),
        ("trait", False, {"Accessory=Pipe"}),
    ]
    assert understood(parser, "girl with wild blonde hair") == [
        ("trait", False, FEMALE),
        ("trait", False, {"Accessory=Wild Blonde"}),
    ]


def test_small_typos_are_read_as_the_word_meant(parser):
    assert understood(parser, "blond bob") == [("trait", False, {"Accessory=Blonde Bob"})]
    assert understood(parser, "punk in a hoddie") == [
        ("collection", False, {"cryptopunks"}),
        ("trait", False, {"Accessory=Hoodie"}),
    ]
    assert understood(parser, "female with a bandanna") == [
        ("trait", False, FEMALE),
        ("trait", False, {"Accessory=Bandana"}),
    ]
    crypto = parser.parse("crytopunk with a tiara")
    assert [chip.collection for chip in crypto.chips if chip.kind == "collection"] == ["cryptopunks"]
    assert crypto.chips[0].corrected == ("crytopunk -> cryptopunk",)
    # Short words must be spelled right: "cat" and "car" are both Nouns heads.
    assert understood(parser, "cat") == [("trait", False, {"head=cat"})]
    assert understood(parser, "car") == [("trait", False, {"head=car"})]


def test_negation_applies_to_the_next_trait_and_runs_on_over_or(parser):
    assert understood(parser, "punk without earring") == [
        ("collection", False, {"cryptopunks"}),
        ("trait", True, {"Accessory=Earring"}),
    ]
    assert understood(parser, "alien, no earring or mole, with a cap") == [
        ("trait", False, {"Type=Alien"}),
        ("trait", True, {"Accessory=Earring"}),
        ("trait", True, {"Accessory=Mole"}),
        ("trait", False, {"Accessory=Cap"}),
    ]
    assert understood(parser, "not a noun") == [("collection", True, {"nouns"})]


def test_unknown_words_fall_through_to_the_embeddings(parser):
    interpretation = parser.parse("ape driving a lambo")
    assert understood(parser, "ape driving a lambo") == [("trait", False, {"Type=Ape", "head=ape"})]
    assert interpretation.residual == ("driving", "lambo")
    nothing = parser.parse("driving fast through the night")
    assert nothing.chips == () and nothing.residual == ("driving", "fast", "through", "night")
    assert parser.parse("🐸 ünïcödé ñ").chips == ()


def test_chip_spans_point_at_the_words_in_the_query(parser):
    query = "A Female  with a Blode-Bob!"
    chips = parser.parse(query).chips
    assert [query[slice(*chip.span)] for chip in chips] == ["Female", "Blode-Bob"]
    assert chips[1].corrected == ("Blode -> blonde",)


def test_a_collection_added_later_is_understood_from_its_tags():
    vocabulary = TraitVocabulary.from_rows(
        ["moonbirds"] * 3,
        [
            [{"trait_type": "Headwear", "value": "Crown:Gold"}, {"trait_type": "Eyes", "value": "Adorable"}],
            [{"trait_type": "Headwear", "value": "Crown:Silver"}, {"trait_type": "Eyes", "value": "Discerning"}],
            [{"trait_type": "Headwear", "value": "Beanie"}, {"trait_type": "Eyes", "value": "Adorable"}],
        ],
        ["Moonbird #1", "Moonbird #2", "Moonbird #3"],
    )
    chips = QueryParser(vocabulary).parse("moonbirds with a crown and adorible eyes").chips
    assert [chip.collection for chip in chips if chip.kind == "collection"] == ["moonbirds"]
    assert [sorted(vocabulary.traits[t].value for t in chip.traits) for chip in chips if chip.kind == "trait"] == [
        ["Crown:Gold", "Crown:Silver"],
        ["Adorable"],
    ]


def test_word_folding_helpers():
    assert [singular(w) for w in ["glasses", "pigtails", "zombies", "chinstraps", "dress", "cactus"]] == [
        "glass", "pigtail", "zombie", "chinstrap", "dress", "cactus",
    ]
    assert words("Clown-Eyes_Blue, Ünïcode") == ["clown", "eye", "blue", "unicode"]
    assert edit_distance("blond", "blonde") == 1 and edit_distance("hoddie", "hoodie") == 1
    assert edit_distance("earign", "earing") == 1  # an adjacent swap is one edit


def test_kind_words_and_inflections(parser):
    blonde = {f"Accessory={v}" for v in ("Blonde Bob", "Blonde Short", "Straight Hair Blonde", "Wild Blonde")}
    assert understood(parser, "punk with blonde hair") == [("collection", False, {"cryptopunks"}), ("trait", False, blonde)]
    assert understood(parser, "black lipstick straight hair dark") == [
        ("trait", False, {"Accessory=Black Lipstick"}),
        ("trait", False, {"Accessory=Straight Hair Dark"}),
    ]
    # "and" separates: the hat is a trait of its own, not the chain's kind.
    assert understood(parser, "punk with gold chain and hat") == [
        ("collection", False, {"cryptopunks"}),
        ("trait", False, {"Accessory=Gold Chain"}),
        ("trait", False, {f"Accessory={v}" for v in ("Cowboy Hat", "Pink With Hat", "Tassle Hat", "Top Hat")}),
    ]
    beards = understood(parser, "bearded punk")[0]
    assert beards[0] == "trait" and "Accessory=Big Beard" in beards[2] and all("Beard" in f for f in beards[2])
    assert understood(parser, "punk with spotted skin")[1] == ("trait", False, {"Accessory=Spots"})


def test_split_letters_and_misspelt_everyday_words(parser):
    assert understood(parser, "3-d glasses") == [("trait", False, {"Accessory=3D Glasses"})]
    assert understood(parser, "sunglases girl") == [("trait", False, SHADES), ("trait", False, FEMALE)]
