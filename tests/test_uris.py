"""URI resolution: every way metadata points at bytes, and every way it can be wrong."""

import base64

import pytest

from nft_pipeline.uris import Candidates, DataUri, InvalidUri, is_valid_cid, resolve_uri, substitute_token_id

CID0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
CID1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
IPFS = ("https://gw1.example/ipfs/", "https://gw2.example/ipfs/")
AR = ("https://arweave.example/",)


def resolve(uri):
    return resolve_uri(uri, IPFS, AR, max_data_bytes=1000)


@pytest.mark.parametrize(
    "uri, first",
    [
        (f"ipfs://{CID0}/1.json", f"https://gw1.example/ipfs/{CID0}/1.json"),
        (f"ipfs://ipfs/{CID1}/a b.png", f"https://gw1.example/ipfs/{CID1}/a%20b.png"),
        (f"{CID1}/7", f"https://gw1.example/ipfs/{CID1}/7"),
        (CID0, f"https://gw1.example/ipfs/{CID0}"),
        (f"https://dead.gateway/ipfs/{CID0}/3.png", f"https://gw1.example/ipfs/{CID0}/3.png"),
        ("ar://" + "A" * 43, "https://arweave.example/" + "A" * 43),
        ("https://example.org/img.png", "https://example.org/img.png"),
    ],
)
def test_content_addressed_uris_resolve_to_gateways_in_order(uri, first):
    target = resolve(uri)
    assert isinstance(target, Candidates)
    assert target.urls[0] == first
    if "ipfs" in uri or uri.startswith(("Qm", "baf")):
        assert target.urls[1].startswith("https://gw2.example/ipfs/")


def test_a_pinned_gateway_url_is_tried_last():
    target = resolve(f"https://dead.gateway/ipfs/{CID0}/3.png")
    assert target.urls[-1] == f"https://dead.gateway/ipfs/{CID0}/3.png"
    assert len(target.urls) == 3


def test_data_uris_decode_base64_and_percent_encoding():
    png = resolve("data:image/png;base64," + base64.b64encode(b"\x89PNG1234").decode())
    assert png == DataUri("image/png", b"\x89PNG1234")
    svg = resolve("data:image/svg+xml,%3Csvg%3E%3C/svg%3E")
    assert svg == DataUri("image/svg+xml", b"<svg></svg>")
    assert resolve("data:,hello").media_type == "text/plain"


@pytest.mark.parametrize(
    "uri, reason",
    [
        ("", "empty"),
        ("ipfs://notacid/1.json", "invalid IPFS CID"),
        ("ipfs://Qm123", "invalid IPFS CID"),
        ("ar://short", "invalid Arweave"),
        ("ftp://host/file", "unsupported URI scheme"),
        ("javascript:alert(1)", "unsupported URI scheme"),
        ("data:image/png;base64,@@@@", "invalid base64"),
        ("data:image/png;base64", "without a ','"),
        ("data:text/plain," + "x" * 5000, "larger than"),
        ("https:///nohost", "without a host"),
    ],
)
def test_invalid_uris_say_why(uri, reason):
    with pytest.raises(InvalidUri, match=reason):
        resolve(uri)


def test_cid_validation():
    assert is_valid_cid(CID0) and is_valid_cid(CID1)
    assert not is_valid_cid("bafy" + "1" * 55)  # '1' is not base32
    assert not is_valid_cid("Qm" + "0" * 44)  # '0' is not base58


def test_a_subdomain_gateway_url_resolves_to_our_gateways_first():
    [*ours, last] = resolve(f"https://{CID1}.ipfs.nftstorage.link/art/9.png").urls
    assert ours == [f"https://gw1.example/ipfs/{CID1}/art/9.png", f"https://gw2.example/ipfs/{CID1}/art/9.png"]
    assert last == f"https://{CID1}.ipfs.nftstorage.link/art/9.png"
    # Not a CID in front of `.ipfs.`: an ordinary host.
    assert resolve("https://notacid.ipfs.example.org/9.png").urls == ("https://notacid.ipfs.example.org/9.png",)


def test_erc1155_id_placeholders_become_64_lower_case_hex_digits():
    assert substitute_token_id("https://api.example/{id}.json", "1") == "https://api.example/" + "0" * 63 + "1.json"
    assert substitute_token_id("ipfs://x/{id}", "255").endswith("/" + "0" * 62 + "ff")
    assert substitute_token_id("https://api.example/1.json", "1") == "https://api.example/1.json"
