"""The sample collections on their own: CIDs, art decoding, seeds, traits and declared faults."""

import base64
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nft_pipeline.samples import SAMPLE_COLLECTIONS, sample_catalog_rows
from nft_pipeline.samples.cids import PUNKS_IMAGE_CID, PUNKS_METADATA_CID, cid_for
from nft_pipeline.samples.collection import parse_token_path
from nft_pipeline.samples.generated import (
    ACCESSORIES,
    BACKGROUNDS,
    HATS,
    critter_traits,
    render_critter,
    render_critter_layers,
)
from nft_pipeline.samples.mixedmedia import (
    FAULT_PERIOD,
    INDEX_ERRORS,
    MEDIA_FORMATS,
    Fault,
    MixedMedia,
    fault_of,
    media_format,
    mixedmedia_faults,
)
from nft_pipeline.samples.nouns import (
    PART_LAYERS,
    decode_part,
    noun_seed,
    noun_trait_names,
    part_count,
    render_noun,
    render_noun_layers,
)
from nft_pipeline.samples.punks import CryptoPunks

DATA = Path(__file__).parents[1] / "nft_pipeline" / "samples" / "data"


def test_cids_are_cidv1_dag_pb_sha256_base32() -> None:
    cid = cid_for("cryptopunks-images")
    assert cid == PUNKS_IMAGE_CID and cid.startswith("bafybei") and len(cid) == 59
    binary = base64.b32decode(cid[1:].upper() + "=" * (-len(cid[1:]) % 8))
    assert binary == bytes([0x01, 0x70, 0x12, 0x20]) + hashlib.sha256(b"cryptopunks-images").digest()
    assert cid_for("cryptopunks-metadata") == PUNKS_METADATA_CID != cid


@pytest.mark.parametrize(
    ("path", "parsed"),
    [
        ("12.png", (12, "png")),
        ("0", (0, "")),
        ("7.json", (7, "json")),
        ("007", None),
        ("-1", None),
        ("x.png", None),
        ("١", None),  # a digit, but not ASCII
    ],
)
def test_token_paths_must_be_canonical(path: str, parsed: tuple[int, str] | None) -> None:
    assert parse_token_path(path) == parsed


def test_catalog_rows_name_every_collection() -> None:
    rows = sample_catalog_rows()
    assert [row.slug for row in rows] == ["cryptopunks", "nouns", "mixedmedia"]
    for row in rows:
        assert row.chain == "ethereum"
        assert row.contract == row.contract.lower() and len(row.contract) == 42 and int(row.contract, 16) > 0
    assert rows[0].contract == "0xb47e3cd837ddf8e4c57f05d70ab865de6e193bbb"
    assert rows[2].name == "Mixed Media Critters"


def test_punks_are_the_sprite_sheet_tiles_with_real_attributes() -> None:
    punks = CryptoPunks()
    sheet = np.asarray(Image.open(DATA / "cryptopunks" / "punks.png").convert("RGBA"))
    lines = (DATA / "cryptopunks" / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    for token_id in (0, 1, 99, 100, 5432, 9999):
        x, y = (token_id % 100) * 24, (token_id // 100) * 24
        assert np.array_equal(punks.tile(token_id), sheet[y : y + 24, x : x + 24])
        assert punks.metadata(token_id)["attributes"] == json.loads(lines[token_id])["attributes"]
    assert punks.default_supply == 10_000
    # Past the real collection, art and attributes repeat under the new token's name.
    assert np.array_equal(punks.tile(10_007), punks.tile(7))
    assert punks.metadata(10_007)["name"] == "CryptoPunk #10007"
    assert punks.metadata(10_007)["attributes"] == punks.metadata(7)["attributes"]


def test_decode_part_follows_the_run_length_format() -> None:
    images = json.loads((DATA / "nouns" / "image-data.json").read_text(encoding="utf-8"))["images"]
    head = images["heads"][0]
    part = decode_part(head["data"])
    assert head["filename"] == "head-aardvark"
    assert sum(length for length, _ in part.runs) == (part.right - part.left) * (part.bottom - part.top + 1)
    painted = part.colour_indices > 0
    assert painted.sum() == sum(length for length, colour in part.runs if colour)
    rows, columns = np.nonzero(painted)
    assert part.top <= rows.min() and rows.max() <= part.bottom
    assert part.left <= columns.min() and columns.max() < part.right
    assert np.array_equal(part.rgba[..., 3] == 255, painted) and not part.rgba[~painted].any()
    assert part.colour_indices[part.top, part.left] == part.runs[0][1]  # painting starts at (left, top)
    nothing = next(item for item in images["accessories"] if item["filename"] == "accessory-none")
    assert decode_part(nothing["data"]).runs == () and not decode_part(nothing["data"]).rgba.any()


def test_noun_seeds_are_stable_and_in_range() -> None:
    seeds = [noun_seed(token_id) for token_id in range(300)]
    assert seeds == [noun_seed(token_id) for token_id in range(300)]
    assert len(set(seeds)) == 300
    for seed in seeds:
        assert seed.background in (0, 1)
        for layer in PART_LAYERS:
            assert 0 <= getattr(seed, layer) < part_count(layer)
    heads = Counter(seed.head for seed in seeds)
    assert len(heads) > 100  # the RNG spreads over the 254 heads


def test_noun_layers_compose_to_the_rendered_noun() -> None:
    seed = noun_seed(42)
    layers = render_noun_layers(seed)
    assert list(layers) == ["background", *PART_LAYERS]
    composed = render_noun(seed)
    assert composed.shape == (32, 32, 4) and (composed[..., 3] == 255).all()
    order = list(layers)
    for position, name in enumerate(order):
        visible = layers[name][..., 3] > 0
        covered = np.zeros_like(visible)
        for upper in order[position + 1 :]:
            covered |= layers[upper][..., 3] > 0
        assert np.array_equal(composed[visible & ~covered], layers[name][visible & ~covered])
    names = noun_trait_names(seed)
    assert names["background"] in ("cool", "warm") and not names["head"].startswith("head-")


def test_critter_traits_layers_and_optional_traits() -> None:
    traits = [critter_traits(token_id) for token_id in range(400)]
    assert traits == [critter_traits(token_id) for token_id in range(400)]
    for token_traits in traits:
        assert "None" not in token_traits.values()
        assert list(token_traits)[:5] == ["Background", "Body", "Fur", "Eyes", "Mouth"]
    hats = Counter(t.get("Hat", "none") for t in traits)
    accessories = Counter(t.get("Accessory", "none") for t in traits)
    assert set(hats) == {*HATS, "none"} and set(accessories) == {*ACCESSORIES, "none"}
    backgrounds = Counter(t["Background"] for t in traits)
    assert set(backgrounds) == set(BACKGROUNDS)

    token = next(t for t in traits if "Hat" in t and "Accessory" in t and t["Background"] != "Transparent")
    layers = render_critter_layers(token)
    assert list(layers) == ["background", "body", "eyes", "mouth", "hat", "accessory"]
    for layer in layers.values():
        assert layer.shape == (48, 48, 4) and (layer[..., 3] > 0).any()
    composed = render_critter(token)
    top = layers["accessory"][..., 3] > 0
    assert np.array_equal(composed[top], layers["accessory"][top])
    transparent = next(t for t in traits if t["Background"] == "Transparent")
    assert "background" not in render_critter_layers(transparent)
    assert (render_critter(transparent)[..., 3] == 0).any()


def test_mixedmedia_faults_are_declared_and_rare() -> None:
    faults = mixedmedia_faults(600)
    assert set(faults.values()) == set(Fault)
    assert mixedmedia_faults(FAULT_PERIOD).keys() <= set(range(FAULT_PERIOD))
    assert set(mixedmedia_faults(FAULT_PERIOD).values()) == set(Fault)
    broken = [token_id for token_id, fault in faults.items() if fault is not Fault.RAW_METADATA_EMPTY]
    assert len(broken) <= 0.08 * 600
    assert {token_id for token_id, fault in faults.items() if fault in INDEX_ERRORS} == {
        token_id for token_id in range(600) if token_id % 10 == 3
    }
    # Image faults sit on tokens whose format they break.
    formats = {fault: media_format(token_id) for token_id, fault in faults.items()}
    assert formats[Fault.IMAGE_TRUNCATED_PNG] == "png"
    assert formats[Fault.IMAGE_CONTENT_TYPE_LIES] == "jpeg"
    assert not formats[Fault.IMAGE_404].startswith("data-") and not formats[Fault.IMAGE_HTML_200].startswith("data-")
    assert fault_of(1) is None and fault_of(3) is Fault.RAW_METADATA_EMPTY


def test_mixedmedia_metadata_follows_its_faults() -> None:
    collection = MixedMedia()
    formats = Counter(media_format(token_id) for token_id in range(600))
    assert set(formats) == set(MEDIA_FORMATS)
    clean = collection.metadata(1)
    assert clean["name"] == "Critter #1" and isinstance(clean["attributes"], list)
    assert clean["attributes"] == [{"trait_type": k, "value": v} for k, v in critter_traits(1).items()]
    assert collection.indexed_metadata(1) == clean and collection.index_error(1) is None
    assert collection.indexed_metadata(3) == {} and collection.index_error(3)
    assert collection.metadata(3)["name"] == "Critter #3"
    mp4_token = MEDIA_FORMATS.index("mp4")
    assert collection.metadata(mp4_token)["animation_url"] == collection.metadata(mp4_token)["image"]
    assert collection.metadata(MEDIA_FORMATS.index("data-png"))["image"].startswith("data:image/png;base64,")
    assert collection.metadata(MEDIA_FORMATS.index("data-svg"))["image"].startswith("data:image/svg+xml,%3Csvg")


def test_every_collection_is_registered_with_its_identity() -> None:
    assert set(SAMPLE_COLLECTIONS) == {"cryptopunks", "nouns", "mixedmedia"}
    for slug, collection in SAMPLE_COLLECTIONS.items():
        assert collection.slug == slug and collection.token_type == "ERC721"
        assert collection.default_supply > 0 and collection.symbol and collection.name
    assert SAMPLE_COLLECTIONS["nouns"].default_supply == 1_000
    assert SAMPLE_COLLECTIONS["mixedmedia"].default_supply == 600
