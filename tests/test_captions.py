"""Captions from messy attributes, tag removal that stays grammatical, and the 77-token limit."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import pyarrow as pa
import pytest

from nft_pipeline import schemas
from nft_pipeline.captions import (
    CAPTION_FIELDS,
    DEFAULT_TEMPLATE,
    MAX_TEXT_TOKENS,
    CaptionTemplate,
    caption_token,
    captions_table,
    count_text_tokens,
    estimate_text_tokens,
    remove_tag,
    template_for,
    token_counter,
)
from nft_pipeline.samples.mixedmedia import MixedMedia
from nft_pipeline.samples.nouns import Nouns
from nft_pipeline.samples.punks import CryptoPunks
from tests.components import require_component

PUNKS = template_for("cryptopunks")


@cache
def punks() -> CryptoPunks:
    """One instance: each reads the 10,000 punks' attributes once."""
    return CryptoPunks()


def punk_caption(token_id: int):
    metadata = punks().metadata(token_id)
    return caption_token("CryptoPunks", metadata["name"], str(token_id), metadata["attributes"])


def test_the_papers_example_for_cryptopunk_0() -> None:
    caption = punk_caption(0)
    assert caption.caption == "CryptoPunk #0: a Female 2 with a Blonde Bob, Green Eye Shadow and an Earring."
    assert [tag["phrase"] for tag in caption.tags] == ["a Female 2", "a Blonde Bob", "Green Eye Shadow", "an Earring"]
    assert (caption.template_id, caption.status, caption.shortened, caption.dropped_tags) == (
        "cryptopunks",
        "ok",
        False,
        0,
    )


def test_every_phrase_is_a_verbatim_substring_of_its_caption() -> None:
    for collection, ids in ((punks(), range(300)), (Nouns(), range(50)), (MixedMedia(), range(200))):
        for token_id in ids:
            metadata = collection.metadata(token_id)
            caption = caption_token(collection.name, metadata.get("name"), str(token_id), metadata.get("attributes"))
            for tag in caption.tags:
                assert tag["phrase"] in caption.caption, (caption.caption, tag)


def test_messy_attributes_each_case() -> None:
    attributes = [
        {"trait_type": "Hat", "value": "Beanie"},
        {"value": "Untyped Thing"},  # no trait type: the value alone
        {"trait_type": "Level", "value": 7},  # a number: said with its trait
        {"trait_type": "Stamina", "value": 42, "display_type": "number"},
        {"trait_type": "Speed", "value": 5, "display_type": "boost_percentage"},
        {"trait_type": "Power", "value": -3, "display_type": "boost_number"},
        {"trait_type": "Birthday", "value": 1609459200, "display_type": "date"},
        {"trait_type": "Shiny", "value": True},  # a true flag: its trait
        {"trait_type": "Cursed", "value": False},  # a false flag says nothing
        {"trait_type": "Cape", "value": "None"},
        {"trait_type": "Scarf", "value": "none"},
        {"trait_type": "Boots", "value": "Nothing"},
        {"trait_type": "Mood", "value": ""},
        {"trait_type": "Rarity", "value": None},
        {"trait_type": "Hat", "value": "Beanie"},  # a duplicate
        {"trait_type": "Weight", "value": 3.5},
    ]
    caption = caption_token("Test Set", "Thing #3", "3", attributes, DEFAULT_TEMPLATE)
    assert caption.caption == (
        "Thing #3: Beanie hat, Untyped Thing, Level 7, Stamina 42, Speed +5%, Power -3, "
        "Birthday 2021-01-01, Shiny and Weight 3.5."
    )
    assert len(caption.tags) == 9 and caption.status == "ok"


def test_millisecond_dates_and_unparseable_dates() -> None:
    milliseconds = int(datetime(2022, 3, 4, tzinfo=UTC).timestamp() * 1000)
    caption = caption_token(
        "X", "X #1", "1", [{"trait_type": "Minted", "value": milliseconds, "display_type": "date"}], DEFAULT_TEMPLATE
    )
    assert caption.caption == "X #1: Minted 2022-03-04."
    nonsense = caption_token(
        "X", "X #1", "1", [{"trait_type": "Minted", "value": "soon", "display_type": "date"}], DEFAULT_TEMPLATE
    )
    assert (nonsense.caption, nonsense.status) == ("X #1.", "no_attributes")


def test_very_long_values_are_capped_with_an_ellipsis() -> None:
    lore = "Critters keep their stories short, but this one kept talking. " * 9
    caption = caption_token("X", "X #1", "1", [{"trait_type": "Lore", "value": lore}], CaptionTemplate(id="plain"))
    phrase = caption.tags[0]["phrase"]
    assert phrase.endswith("…") and len(phrase) <= 60
    assert caption.caption == f"X #1: {phrase}"  # no full stop after the ellipsis


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ("Earring", "an Earring"),
        ("Alien", "an Alien"),
        ("Mohawk", "a Mohawk"),
        ("Unicorn Horn", "a Unicorn Horn"),
        ("Hourglass", "an Hourglass"),
        ("NFT Badge", "an NFT Badge"),
        ("VR", "a VR"),
        ("8-bit Heart", "an 8-bit Heart"),
        ("Wild Hair", "Wild Hair"),
        ("Buck Teeth", "Buck Teeth"),
        ("Big Shades", "Big Shades"),
        ("3D Glasses", "3D Glasses"),
        ("Blue Eye Shadow", "Blue Eye Shadow"),
    ],
)
def test_articles(value: str, phrase: str) -> None:
    caption = caption_token("CryptoPunks", "P", "1", [{"trait_type": "Accessory", "value": value}], PUNKS)
    assert caption.tags[0]["phrase"] == phrase


def test_removing_a_tag_keeps_the_sentence_grammatical() -> None:
    caption = punk_caption(0)
    female, bob, shadow, earring = caption.tags
    assert remove_tag(caption, shadow) == "CryptoPunk #0: a Female 2 with a Blonde Bob and an Earring."
    assert remove_tag(caption, earring) == "CryptoPunk #0: a Female 2 with a Blonde Bob and Green Eye Shadow."
    assert remove_tag(caption, bob) == "CryptoPunk #0: a Female 2 with Green Eye Shadow and an Earring."
    assert remove_tag(caption, [bob, shadow, earring]) == "CryptoPunk #0: a Female 2."  # no dangling "with"
    assert remove_tag(caption, female) == "CryptoPunk #0: a punk with a Blonde Bob, Green Eye Shadow and an Earring."
    assert remove_tag(caption, caption.tags) == "CryptoPunk #0."
    only = punk_caption(2)
    assert only.caption == "CryptoPunk #2: a Female 3 with Wild Hair."
    assert remove_tag(only, only.tags[1]) == "CryptoPunk #2: a Female 3."


def test_removing_from_a_template_without_subject() -> None:
    attributes = [{"trait_type": "Background", "value": "Blue"}, {"trait_type": "Eyes", "value": "Bored"}]
    caption = caption_token("Bored Apes", "Ape #1", "1", attributes)
    assert caption.template_id == "default"
    assert caption.caption == "Ape #1: Blue background and Bored eyes."
    assert remove_tag(caption, caption.tags[0]) == "Ape #1: Bored eyes."
    assert remove_tag(caption, caption.tags) == "Ape #1."
    with pytest.raises(ValueError):
        remove_tag(caption, {"trait_type": "Hat", "value": "Cap", "phrase": "Cap hat"})


def test_nouns_template_orders_by_layer_and_humanizes_slugs() -> None:
    metadata = Nouns().metadata(0)
    caption = caption_token("Nouns", metadata["name"], "0", metadata["attributes"])
    assert caption.caption == (
        "Noun 0: a Noun with a ghost B head, square magenta glasses, a body gray scale 1 accessory, "
        "a foggrey body and a warm background."
    )
    assert [tag["trait_type"] for tag in caption.tags] == ["head", "glasses", "accessory", "body", "background"]


def test_templates_by_slug_or_name() -> None:
    assert template_for("CryptoPunks").id == "cryptopunks"
    assert template_for("nouns").id == "nouns"
    assert template_for("Mixed Media Critters").id == "mixedmedia"
    assert template_for("Some New Collection") is DEFAULT_TEMPLATE


def test_no_attributes_falls_back_to_the_name() -> None:
    for attributes in (None, [], "Background: Sky", [{"trait_type": "Cape", "value": "None"}]):
        caption = caption_token("Critters", "Critter #20", "20", attributes)
        assert (caption.caption, caption.status, caption.tags) == ("Critter #20.", "no_attributes", [])
    nameless = caption_token("Critters", None, "21", [])
    assert nameless.caption == "Critters #21."


def test_a_very_long_attribute_list_is_shortened_to_fit_clip() -> None:
    attributes = [{"trait_type": "Type", "value": "Male 1"}] + [
        {"trait_type": "Accessory", "value": f"Extravagant Ornament Number {i}"} for i in range(40)
    ]
    caption = caption_token("CryptoPunks", "CryptoPunk #9", "9", attributes, PUNKS)
    assert caption.shortened and caption.dropped_tags > 0
    assert len(caption.tags) + caption.dropped_tags == 41
    assert caption.n_text_tokens == count_text_tokens(caption.caption) <= MAX_TEXT_TOKENS
    # The lowest-priority tags (the last ones) go first: the kept tags are the first ones, in order.
    assert [tag["value"] for tag in caption.tags[1:]] == [
        f"Extravagant Ornament Number {i}" for i in range(len(caption.tags) - 1)
    ]
    assert caption.tags[0]["phrase"] == "a Male 1"
    # One more tag would not have fitted.
    longer = caption_token("CryptoPunks", "CryptoPunk #9", "9", attributes[: len(caption.tags) + 1], PUNKS)
    assert longer.shortened and longer.dropped_tags == 1


def test_an_absurdly_long_name_is_cut_to_fit() -> None:
    caption = caption_token("X", "名" * 500, "1", [{"trait_type": "Hat", "value": "Cap"}], DEFAULT_TEMPLATE)
    assert caption.shortened and caption.n_text_tokens <= MAX_TEXT_TOKENS


def test_the_estimate_counts_clip_pieces_conservatively() -> None:
    # 2 markers + "cryptopunk" (10 letters: 3) + "#" + "0" + ":" + "a" + "female" (6: 2) + "2" + "." = 13
    assert estimate_text_tokens("CryptoPunk #0: a Female 2.") == 13
    assert estimate_text_tokens("") == 2
    assert estimate_text_tokens("ÉÉ") == 2 + 1 + 4  # non-ASCII letters: every UTF-8 byte may be a token


def test_exact_counts_match_the_estimate_bound_when_clip_bpe_is_available() -> None:
    require_component(
        "CLIP's BPE vocabulary", token_counter() == "clip-bpe", "bundled in nft_pipeline/data/; or set NFT_PIPELINE_CLIP_BPE"
    )
    assert count_text_tokens("a photo of a cat") == 7
    for token_id in range(200):
        text = punk_caption(token_id).caption
        assert count_text_tokens(text) <= estimate_text_tokens(text)


def test_captions_table_from_a_tokens_table() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for token_id in range(3):
        metadata = punks().metadata(token_id)
        rows.append(
            {
                "collection": "cryptopunks",
                "token_id": str(token_id),
                "name": metadata["name"],
                "attributes": [{**attribute, "display_type": None} for attribute in metadata["attributes"]],
                "attributes_status": "ok",
                "metadata_source": "token_uri",
                "metadata_status": "ok",
                "discovered_at": now,
            }
        )
    rows.append({**rows[0], "token_id": "3", "name": None, "attributes": None, "attributes_status": "missing"})
    tokens = pa.Table.from_pylist(rows, schema=schemas.TOKENS)
    table = captions_table(tokens, "CryptoPunks")
    assert table.schema.remove_metadata() == CAPTION_FIELDS
    assert table.schema.metadata[b"token_counter"] == token_counter().encode()
    assert table.column("caption").to_pylist() == [
        "CryptoPunk #0: a Female 2 with a Blonde Bob, Green Eye Shadow and an Earring.",
        "CryptoPunk #1: a Male 1 with a Smile and a Mohawk.",
        "CryptoPunk #2: a Female 3 with Wild Hair.",
        "CryptoPunks #3.",
    ]
    assert table.column("status").to_pylist() == ["ok", "ok", "ok", "no_attributes"]
    assert table.column("tags").to_pylist()[2] == [
        {"trait_type": "Type", "value": "Female 3", "phrase": "a Female 3"},
        {"trait_type": "Accessory", "value": "Wild Hair", "phrase": "Wild Hair"},
    ]


def test_a_caption_row_rebuilds_the_caption_and_its_tag_removal():
    import pyarrow as pa

    from nft_pipeline.captions import caption_from_row, captions_table, remove_tag
    from nft_pipeline.schemas import TOKENS

    token = {
        "collection": "cryptopunks", "token_id": "0", "name": "CryptoPunk #0", "attributes": [
            {"trait_type": "Type", "value": "Female 2", "display_type": None},
            {"trait_type": "Accessory", "value": "Blonde Bob", "display_type": None},
            {"trait_type": "Accessory", "value": "Earring", "display_type": None},
        ],
    }
    tokens = pa.Table.from_pylist([token], schema=pa.schema([TOKENS.field(n) for n in token]))
    row = captions_table(tokens, "CryptoPunks").to_pylist()[0]
    caption = caption_from_row(row)
    assert caption.caption == row["caption"] == "CryptoPunk #0: a Female 2 with a Blonde Bob and an Earring."
    assert remove_tag(caption, caption.tags[1]) == "CryptoPunk #0: a Female 2 with an Earring."
