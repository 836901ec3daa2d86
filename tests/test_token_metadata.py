"""Messy metadata becomes recorded states, never exceptions."""

import json

import pytest

from nft_pipeline.token_metadata import normalize_attributes, parse_metadata_bytes, token_id_text


def test_valid_metadata_parses_ok():
    parsed = parse_metadata_bytes(b'{"name": "x", "attributes": []}')
    assert parsed.status == "ok" and parsed.metadata == {"name": "x", "attributes": []}


def test_non_utf8_bytes_are_recovered_and_recorded():
    parsed = parse_metadata_bytes('{"name": "Café"}'.encode("latin-1"))
    assert parsed.status == "recovered"
    assert parsed.metadata["name"] == "Caf\ufffd"
    assert "non-UTF-8" in parsed.error


@pytest.mark.parametrize(
    "data, status",
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
        (json.dumps({"a": "x" * 3_000_000}).encode(), "too_large"),
    ],
)
def test_broken_metadata_gets_a_status(data, status):
    parsed = parse_metadata_bytes(data)
    assert parsed.metadata is None and parsed.status == status and parsed.error


def test_attribute_shapes():
    assert normalize_attributes(None) == ([], "missing")
    assert normalize_attributes("Blue") == ([], "not_a_list")
    ok, status = normalize_attributes([{"trait_type": "Hat", "value": "Cap"}])
    assert status == "ok" and ok == [{"trait_type": "Hat", "value": "Cap", "display_type": None}]
    attrs, status = normalize_attributes(
        [
            {"trait_type": "Level", "value": 7, "display_type": "number"},
            {"trait_type": "Speed", "value": 2.5},
            {"trait_type": "Shiny", "value": True},
            {"trait_type": "Empty", "value": ""},
            {"trait_type": "Null", "value": None},
            {"value": "No type"},
            "bare",
            {"trait_type": "Long", "value": "y" * 5000},
        ]
    )
    assert status == "repaired"
    assert [a["value"] for a in attrs] == ["7", "2.5", "true", None, None, "No type", "bare", "y" * 2000]
    assert attrs[0]["display_type"] == "number"
    assert attrs[5]["trait_type"] is None
    as_object, status = normalize_attributes({"Hat": "Cap", "Eyes": "Blue"})
    assert status == "repaired" and [a["trait_type"] for a in as_object] == ["Hat", "Eyes"]


@pytest.mark.parametrize("raw, text", [("42", "42"), (42, "42"), ("0x2a", "42"), ("abc", None), (None, None), (True, None)])
def test_token_ids_are_decimal_text(raw, text):
    assert token_id_text(raw) == text
