"""The sample gateway over real HTTP: Alchemy v3 shapes, IPFS files, media formats, faults, state."""

import base64
import io
import json
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from typing import Any

import av
import numpy as np
import pytest
import requests
from PIL import Image

from nft_pipeline.gateway import GatewayFaults, RunningGateway, SampleGateway, running_gateway
from nft_pipeline.samples import SAMPLE_COLLECTIONS, sample_collections
from nft_pipeline.samples.cids import MIXED_IMAGE_CID, PUNKS_IMAGE_CID, PUNKS_METADATA_CID
from nft_pipeline.samples.generated import critter_traits, render_critter
from nft_pipeline.samples.mixedmedia import MEDIA_FORMATS, Fault, media_format, mixedmedia_faults
from nft_pipeline.samples.nouns import noun_seed, noun_trait_names, render_noun
from nft_pipeline.samples.punks import DATA_DIR as PUNKS_DATA

PUNKS = SAMPLE_COLLECTIONS["cryptopunks"].contract
NOUNS = SAMPLE_COLLECTIONS["nouns"].contract
MIXED = SAMPLE_COLLECTIONS["mixedmedia"].contract
SVG_RECT = "{http://www.w3.org/2000/svg}rect"
MAGIC = {
    "png": lambda body: body.startswith(b"\x89PNG\r\n\x1a\n"),
    "jpeg": lambda body: body.startswith(b"\xff\xd8\xff"),
    "webp": lambda body: body[:4] == b"RIFF" and body[8:12] == b"WEBP",
    "gif": lambda body: body.startswith(b"GIF89a"),
    "svg": lambda body: body.startswith(b"<svg"),
    "mp4": lambda body: body[4:8] == b"ftyp",
}


@pytest.fixture(scope="module")
def served() -> Iterator[RunningGateway]:
    """A gateway with default supplies, for tests that only read."""
    with running_gateway() as running:
        yield running


def api(running: RunningGateway, method: str, **params: Any) -> requests.Response:
    return requests.get(f"{running.base_url}/nft/v3/test-key/{method}", params=params, timeout=30)


def all_nfts(running: RunningGateway, contract: str, limit: int = 100) -> list[dict[str, Any]]:
    nfts, page_key = [], None
    while True:
        params = {"contractAddress": contract, "withMetadata": "true", "limit": limit}
        page = api(running, "getNFTsForContract", **params, **({"pageKey": page_key} if page_key else {})).json()
        nfts.extend(page["nfts"])
        page_key = page["pageKey"]
        if page_key is None:
            return nfts


def fetch(running: RunningGateway, uri: str) -> requests.Response:
    return requests.get(uri.replace("ipfs://", f"{running.base_url}/ipfs/"), timeout=30)


def data_uri_bytes(uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    return base64.b64decode(payload) if header.endswith(";base64") else urllib.parse.unquote_to_bytes(payload)


def svg_pixels(svg: str, size: int, scale: int) -> np.ndarray:
    """Rasterise a rect-per-run pixel-art SVG: RGBA, alpha 0 where nothing was painted."""
    pixels = np.zeros((size, size, 4), dtype=np.uint8)
    for rect in ET.fromstring(svg).iter(SVG_RECT):
        colour = (*bytes.fromhex(rect.attrib["fill"].removeprefix("#")), 255)
        if rect.attrib["width"] == "100%":
            pixels[...] = colour
            continue
        x, y, width, height = (int(rect.attrib[key]) for key in ("x", "y", "width", "height"))
        assert x % scale == y % scale == width % scale == 0 and height == scale
        pixels[y // scale, x // scale : (x + width) // scale] = colour
    return pixels


def test_contract_metadata_has_the_alchemy_shape(served: RunningGateway) -> None:
    response = api(served, "getContractMetadata", contractAddress=PUNKS.upper().replace("0X", "0x"))
    assert response.status_code == 200
    contract = response.json()
    assert contract["address"] == PUNKS and contract["name"] == "CryptoPunks"
    assert contract["totalSupply"] == "10000" and contract["tokenType"] == "ERC721"
    assert contract["contractDeployer"].startswith("0x") and contract["deployedBlockNumber"] == 3914495
    assert contract["openSeaMetadata"]["collectionSlug"] == "cryptopunks"
    assert api(served, "getContractMetadata", contractAddress=NOUNS).json()["totalSupply"] == "1000"
    assert api(served, "getContractMetadata", contractAddress=MIXED).json()["name"] == "Mixed Media Critters"


def test_unknown_contracts_and_files_are_errors(served: RunningGateway) -> None:
    unknown = "0x" + "12" * 20
    for method in ("getContractMetadata", "getNFTsForContract"):
        response = api(served, method, contractAddress=unknown)
        assert response.status_code == 400 and "message" in response.json()["error"]
    assert api(served, "getNFTsForContract", contractAddress=NOUNS, limit="many").status_code == 400
    base = served.base_url
    for path in (
        f"/ipfs/{MIXED_IMAGE_CID[:-1]}a/1.png",  # unknown CID
        f"/ipfs/{PUNKS_IMAGE_CID}/007.png",  # not a canonical id
        f"/ipfs/{PUNKS_IMAGE_CID}/7.jpg",  # no such file
        f"/ipfs/{PUNKS_IMAGE_CID}/10000.png",  # not minted
        f"/ipfs/{PUNKS_METADATA_CID}/7.json",
    ):
        assert requests.get(base + path, timeout=30).status_code == 404, path


def test_pages_cover_every_token_once(served: RunningGateway) -> None:
    pages, page_key = [], None
    while True:
        params = {"contractAddress": NOUNS, "limit": 100, **({"pageKey": page_key} if page_key else {})}
        page = api(served, "getNFTsForContract", **params).json()
        pages.append([int(nft["tokenId"]) for nft in page["nfts"]])
        page_key = page["pageKey"]
        if page_key is None:
            break
        assert isinstance(page_key, str)
    assert len(pages) == 10 and all(len(page) == 100 for page in pages)
    assert sorted(token for page in pages for token in page) == list(range(1000))


def test_limit_is_clamped_and_metadata_can_be_left_out(served: RunningGateway) -> None:
    page = api(served, "getNFTsForContract", contractAddress=PUNKS, limit=500).json()
    assert len(page["nfts"]) == 100 and page["pageKey"]
    bare = api(served, "getNFTsForContract", contractAddress=PUNKS, withMetadata="false", limit=3).json()
    assert bare["nfts"] == [{"contract": {"address": PUNKS}, "tokenId": str(i)} for i in range(3)]


def test_punk_files_are_the_real_tiles_and_attributes(served: RunningGateway) -> None:
    sheet = np.asarray(Image.open(PUNKS_DATA / "punks.png").convert("RGBA"))
    page = api(served, "getNFTsForContract", contractAddress=PUNKS, limit=100, pageKey=f"0x{9900:x}").json()
    assert page["pageKey"] is None
    for nft in page["nfts"][::11]:
        token_id = int(nft["tokenId"])
        assert nft["raw"]["metadata"]["name"] == nft["name"] == f"CryptoPunk #{token_id}"
        document = fetch(served, nft["raw"]["tokenUri"])
        assert document.headers["Content-Type"] == "application/json"
        assert int(document.headers["Content-Length"]) == len(document.content)
        assert document.json() == nft["raw"]["metadata"]
        image = fetch(served, nft["image"]["originalUrl"])
        assert image.headers["Content-Type"] == "image/png"
        assert int(image.headers["Content-Length"]) == len(image.content)
        x, y = (token_id % 100) * 24, (token_id // 100) * 24
        tile = np.asarray(Image.open(io.BytesIO(image.content)))
        assert tile.shape == (24, 24, 4) and np.array_equal(tile, sheet[y : y + 24, x : x + 24])


def test_nouns_token_uris_decode_to_the_rendered_nouns(served: RunningGateway) -> None:
    for nft in api(served, "getNFTsForContract", contractAddress=NOUNS, limit=60).json()["nfts"]:
        token_id = int(nft["tokenId"])
        assert nft["tokenUri"].startswith("data:application/json;base64,")
        document = json.loads(data_uri_bytes(nft["tokenUri"]))
        assert document == nft["raw"]["metadata"] and document["name"] == f"Noun {token_id}"
        assert document["image"].startswith("data:image/svg+xml;base64,")
        svg = data_uri_bytes(document["image"]).decode("utf-8")
        assert ET.fromstring(svg).attrib["width"] == "320"
        seed = noun_seed(token_id)
        assert np.array_equal(svg_pixels(svg, 32, 10), render_noun(seed))
        attributes = {item["trait_type"]: item["value"] for item in document["attributes"]}
        assert attributes == noun_trait_names(seed)


def media_bytes(running: RunningGateway, image_uri: str) -> tuple[bytes, str]:
    if image_uri.startswith("data:"):
        return data_uri_bytes(image_uri), image_uri[5:].split(",")[0].split(";")[0]
    response = fetch(running, image_uri)
    assert response.status_code == 200 and int(response.headers["Content-Length"]) == len(response.content)
    return response.content, response.headers["Content-Type"]


def test_mixedmedia_serves_every_format_for_real(served: RunningGateway) -> None:
    nfts = all_nfts(served, MIXED)
    faults = mixedmedia_faults(600)
    assert [int(nft["tokenId"]) for nft in nfts] == list(range(600))
    seen: Counter[str] = Counter()
    for nft in nfts:
        token_id = int(nft["tokenId"])
        if token_id in faults:
            continue
        file_format = media_format(token_id).removeprefix("data-")
        body, content_type = media_bytes(served, nft["image"]["originalUrl"])
        assert MAGIC[file_format](body), (token_id, file_format)
        assert content_type == {"jpeg": "image/jpeg", "svg": "image/svg+xml", "mp4": "video/mp4"}.get(
            file_format, f"image/{file_format}"
        )
        seen[media_format(token_id)] += 1
        if file_format in ("png", "jpeg", "webp", "gif"):
            with Image.open(io.BytesIO(body)) as image:
                image.load()
                assert image.format == file_format.upper()
                if file_format == "gif":
                    assert image.n_frames > 1
                if file_format == "png":
                    assert np.array_equal(np.asarray(image), render_critter(critter_traits(token_id)))
        elif file_format == "svg":
            expected = render_critter(critter_traits(token_id))
            assert np.array_equal(svg_pixels(body.decode("utf-8"), 48, 10), expected)
        else:
            with av.open(io.BytesIO(body)) as container:
                stream = container.streams.video[0]
                frames = list(container.decode(stream))
                assert len(frames) > 1 and (stream.width, stream.height) == (128, 128)
                assert stream.codec_context.name == "h264" and frames[0].format.name == "yuv420p"
            assert nft["animation"]["originalUrl"] == nft["image"]["originalUrl"]
    assert set(seen) == set(MEDIA_FORMATS) and min(seen.values()) > 50


def token(running: RunningGateway, token_id: int) -> dict[str, Any]:
    page = api(running, "getNFTsForContract", contractAddress=MIXED, limit=1, pageKey=f"0x{token_id:x}").json()
    return page["nfts"][0]


def test_mixedmedia_faults_behave_as_declared(served: RunningGateway) -> None:
    by_fault = {fault: token_id for token_id, fault in mixedmedia_faults(200).items()}
    nfts = {fault: token(served, token_id) for fault, token_id in by_fault.items()}

    for fault in (Fault.RAW_METADATA_EMPTY, Fault.NAME_NOT_UTF8, Fault.TOKEN_URI_404, Fault.TOKEN_URI_INVALID_JSON):
        nft = nfts[fault]
        assert nft["raw"]["metadata"] == {} and nft["raw"]["error"] and nft["name"] is None
        assert nft["image"]["originalUrl"] is None and nft["raw"]["tokenUri"].startswith("ipfs://")
    good = fetch(served, nfts[Fault.RAW_METADATA_EMPTY]["raw"]["tokenUri"])
    assert good.json()["name"] == f"Critter #{by_fault[Fault.RAW_METADATA_EMPTY]}"
    latin1 = fetch(served, nfts[Fault.NAME_NOT_UTF8]["raw"]["tokenUri"]).content
    with pytest.raises(UnicodeDecodeError):
        latin1.decode("utf-8")
    assert json.loads(latin1.decode("latin-1"))["name"].startswith("Crème Brûlée Critter #")
    assert fetch(served, nfts[Fault.TOKEN_URI_404]["raw"]["tokenUri"]).status_code == 404
    invalid = fetch(served, nfts[Fault.TOKEN_URI_INVALID_JSON]["raw"]["tokenUri"])
    assert invalid.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(invalid.content)

    def image(fault: Fault) -> requests.Response:
        return fetch(served, nfts[fault]["image"]["originalUrl"])

    assert image(Fault.IMAGE_404).status_code == 404
    html = image(Fault.IMAGE_HTML_200)
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert html.content.startswith(b"<!DOCTYPE html>")
    liar = image(Fault.IMAGE_CONTENT_TYPE_LIES)
    assert nfts[Fault.IMAGE_CONTENT_TYPE_LIES]["image"]["originalUrl"].endswith(".png")
    assert liar.headers["Content-Type"] == "image/png" and MAGIC["jpeg"](liar.content)
    truncated = image(Fault.IMAGE_TRUNCATED_PNG)
    assert MAGIC["png"](truncated.content) and int(truncated.headers["Content-Length"]) == len(truncated.content)
    with pytest.raises(OSError), Image.open(io.BytesIO(truncated.content)) as broken:
        broken.load()

    def attributes(fault: Fault) -> Any:
        metadata = nfts[fault]["raw"]["metadata"]
        assert metadata == fetch(served, nfts[fault]["raw"]["tokenUri"]).json()
        return metadata.get("attributes", "missing")

    assert attributes(Fault.ATTRIBUTES_MISSING) == "missing"
    assert isinstance(attributes(Fault.ATTRIBUTES_DICT), dict)
    assert isinstance(attributes(Fault.ATTRIBUTES_STRING), str)
    numeric = attributes(Fault.ATTRIBUTES_NUMERIC)
    assert {item.get("display_type") for item in numeric if isinstance(item["value"], int | float)} == {
        None,
        "number",
        "boost_percentage",
    }
    odd_values = [item["value"] for item in attributes(Fault.ATTRIBUTES_ODD_VALUES)]
    assert True in odd_values and None in odd_values and "" in odd_values and "None" in odd_values
    duplicated = attributes(Fault.ATTRIBUTES_DUPLICATED)
    assert len({json.dumps(item) for item in duplicated}) < len(duplicated)
    assert max(len(str(item["value"])) for item in attributes(Fault.ATTRIBUTE_LONG_VALUE)) == 500


def test_two_gateways_serve_identical_bytes() -> None:
    bodies: list[list[bytes]] = []
    for _ in range(2):
        with running_gateway(SampleGateway(collections=sample_collections())) as running:
            nfts = api(running, "getNFTsForContract", contractAddress=MIXED, limit=16).json()["nfts"]
            files = [fetch(running, nft["raw"]["tokenUri"]).content for nft in nfts]
            images = [nft["image"]["originalUrl"] for nft in nfts if nft["image"]["originalUrl"]]
            files += [media_bytes(running, image)[0] for image in images]
            files.append(api(running, "getNFTsForContract", contractAddress=NOUNS, limit=5).content)
            bodies.append(files)
    assert len(bodies[0]) > 20 and bodies[0] == bodies[1]


def test_supply_grows_at_run_time() -> None:
    with running_gateway(SampleGateway(supplies={"nouns": 120})) as running:
        gateway = running.gateway
        assert len(all_nfts(running, NOUNS)) == 120
        gateway.set_supply("nouns", 170)
        nfts = all_nfts(running, NOUNS)
        assert [int(nft["tokenId"]) for nft in nfts] == list(range(170))
        assert api(running, "getContractMetadata", contractAddress=NOUNS).json()["totalSupply"] == "170"

        new_punk = f"{running.base_url}/ipfs/{PUNKS_IMAGE_CID}/10049.png"
        assert requests.get(new_punk, timeout=30).status_code == 404
        admin = f"{running.base_url}/admin/supply"
        grown = requests.post(admin, params={"slug": "cryptopunks", "n": 10050}, timeout=30)
        assert grown.json() == {"slug": "cryptopunks", "supply": 10050} and gateway.supply("cryptopunks") == 10050
        page = api(running, "getNFTsForContract", contractAddress=PUNKS, pageKey=f"0x{10000:x}").json()
        assert [nft["name"] for nft in page["nfts"]] == [f"CryptoPunk #{i}" for i in range(10000, 10050)]
        reused = requests.get(new_punk.replace("10049", "49"), timeout=30).content
        assert requests.get(new_punk, timeout=30).content == reused
        assert requests.post(admin, params={"slug": "nope", "n": 1}, timeout=30).status_code == 404


def test_injected_faults_and_counters() -> None:
    faults = GatewayFaults(rate_429=0.3, retry_after=7, seed=1)
    with running_gateway(SampleGateway(faults=faults)) as running:
        gateway = running.gateway
        url = f"{running.base_url}/ipfs/{PUNKS_IMAGE_CID}/5.png"
        statuses: Counter[int] = Counter()
        for _ in range(60):
            response = requests.get(url, timeout=30)
            statuses[response.status_code] += 1
            if response.status_code == 429:
                assert response.headers["Retry-After"] == "7"
        assert set(statuses) == {200, 429} and 5 < statuses[429] < 35
        counters = gateway.counters()
        assert counters.requests["ipfs"] == 60 and counters.injected[429] == statuses[429]
        assert counters.ipfs_paths == Counter({f"{PUNKS_IMAGE_CID}/5.png": statuses[200]})

        gateway.reset_counters()
        assert gateway.counters().requests == Counter()
        broken = requests.post(f"{running.base_url}/admin/faults", json={"rate_429": 0, "error_rate": 1.0}, timeout=30)
        assert broken.json()["error_rate"] == 1.0
        assert api(running, "getContractMetadata", contractAddress=NOUNS).status_code == 500
        gateway.set_faults(GatewayFaults(latency=0.2))
        started = time.monotonic()
        assert api(running, "getContractMetadata", contractAddress=NOUNS).status_code == 200
        assert time.monotonic() - started >= 0.2
        counters = gateway.counters()
        assert counters.requests["contract_metadata"] == 2 and counters.injected == Counter({500: 1})
        assert requests.post(f"{running.base_url}/admin/faults", json={"error_rate": 2}, timeout=30).status_code == 400
        reported = requests.get(f"{running.base_url}/admin/counters", timeout=30).json()
        assert reported["requests"] == {"contract_metadata": 2}


def test_running_gateway_frees_its_port() -> None:
    with running_gateway() as running:
        assert running.port > 0 and running.base_url == f"http://127.0.0.1:{running.port}"
        assert api(running, "getContractMetadata", contractAddress=NOUNS).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{running.base_url}/admin/counters", timeout=5)
    with running_gateway(port=running.port) as again:  # the port is free again
        assert again.port == running.port
