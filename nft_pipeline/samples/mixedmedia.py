"""Mixed Media Critters: a generated collection that serves every media kind and the usual faults.

Real collections mix formats and break in predictable ways; this one does both on purpose and
deterministically, so a downloader can be tested against known answers:

- the media format cycles with the token id over `MEDIA_FORMATS` (files on IPFS, or `data:` URIs);
- `fault_of(token_id)` names the token's deliberate fault, if any. Faults repeat every
  `FAULT_PERIOD` tokens at the offsets in `FAULTS_BY_OFFSET` (7% of tokens are broken or messy);
  besides those, every token with `id % 10 == 3` is one the indexer failed to read
  (`raw.metadata` is {}), while its token URI serves good JSON.
"""

import base64
import urllib.parse
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from nft_pipeline.samples.cids import MIXED_IMAGE_CID, MIXED_METADATA_CID
from nft_pipeline.samples.collection import FileProducer, SampleCollection, ServedFile, derived_address, json_file
from nft_pipeline.samples.generated import (
    critter_svg,
    critter_traits,
    render_critter,
    render_frames,
    render_photo,
)
from nft_pipeline.samples.media import encode_gif, encode_jpeg, encode_mp4, encode_png, encode_webp

MEDIA_FORMATS = ("png", "jpeg", "webp", "gif", "svg", "mp4", "data-png", "data-svg")
# Format -> (file extension, Content-Type) for the formats stored as files
FILE_TYPES = {
    "png": ("png", "image/png"),
    "jpeg": ("jpg", "image/jpeg"),
    "webp": ("webp", "image/webp"),
    "gif": ("gif", "image/gif"),
    "svg": ("svg", "image/svg+xml"),
    "mp4": ("mp4", "video/mp4"),
}
_DATA_URI_SOURCES = {"data-png": "png", "data-svg": "svg"}  # data: format -> file format it embeds
PHOTO_SIZES = {"jpeg": 600, "webp": 320}
GIF_BOB = [(0, 0), (0, -2), (0, -4), (0, -6), (0, -4), (0, -2)]  # 6 frames, every one differs from the last
VIDEO_CANVAS, VIDEO_FPS = 128, 8
VIDEO_WALK = [(4 * step, 16) for step in range(VIDEO_FPS)]  # 1 s walking right


class Fault(StrEnum):
    RAW_METADATA_EMPTY = "raw_metadata_empty"  # indexer failed; the token URI works
    IMAGE_404 = "image_404"
    IMAGE_HTML_200 = "image_html_200"  # 200 with an HTML error page
    IMAGE_CONTENT_TYPE_LIES = "image_content_type_lies"  # `<id>.png`, image/png, JPEG bytes
    IMAGE_TRUNCATED_PNG = "image_truncated_png"  # the first half of the PNG
    ATTRIBUTES_MISSING = "attributes_missing"
    ATTRIBUTES_DICT = "attributes_dict"  # {"Background": "Sky", ...}
    ATTRIBUTES_STRING = "attributes_string"  # "Background: Sky, ..."
    ATTRIBUTES_NUMERIC = "attributes_numeric"  # numbers, with and without display_type
    ATTRIBUTES_ODD_VALUES = "attributes_odd_values"  # true, null, "", "None", no trait_type
    ATTRIBUTES_DUPLICATED = "attributes_duplicated"
    ATTRIBUTE_LONG_VALUE = "attribute_long_value"  # a 500-character value
    NAME_NOT_UTF8 = "name_not_utf8"  # JSON encoded as Latin-1; not indexed
    TOKEN_URI_404 = "token_uri_404"  # not indexed
    TOKEN_URI_INVALID_JSON = "token_uri_invalid_json"  # truncated JSON; not indexed


FAULT_PERIOD = 200  # a multiple of len(MEDIA_FORMATS), so each offset keeps its format
FAULTS_BY_OFFSET: dict[int, Fault] = {
    16: Fault.IMAGE_TRUNCATED_PNG,  # png
    41: Fault.IMAGE_CONTENT_TYPE_LIES,  # jpeg
    58: Fault.IMAGE_404,  # webp
    75: Fault.IMAGE_HTML_200,  # gif
    20: Fault.ATTRIBUTES_MISSING,
    37: Fault.ATTRIBUTES_DICT,
    94: Fault.ATTRIBUTES_STRING,
    107: Fault.ATTRIBUTES_NUMERIC,
    118: Fault.ATTRIBUTES_ODD_VALUES,
    129: Fault.ATTRIBUTES_DUPLICATED,
    150: Fault.ATTRIBUTE_LONG_VALUE,
    63: Fault.NAME_NOT_UTF8,  # the not-indexed faults sit on id % 10 == 3
    133: Fault.TOKEN_URI_404,
    183: Fault.TOKEN_URI_INVALID_JSON,
}
# The faults an indexer cannot read past, with the `raw.error` it reports
INDEX_ERRORS: dict[Fault, str] = {
    Fault.RAW_METADATA_EMPTY: "Timed out fetching the token uri",
    Fault.NAME_NOT_UTF8: "Failed to decode the token uri response as UTF-8",
    Fault.TOKEN_URI_404: "Token uri responded with a non 200 response code",
    Fault.TOKEN_URI_INVALID_JSON: "Failed to parse the token uri response as JSON",
}
HTML_ERROR_PAGE = (
    b"<!DOCTYPE html><html><head><title>504 Gateway Time-out</title></head>"
    b"<body><h1>504 Gateway Time-out</h1><p>The upstream IPFS node did not answer.</p></body></html>"
)
LONG_LORE = ("Critters keep their stories short, but this one kept talking. " * 9)[:500]


def media_format(token_id: int) -> str:
    return MEDIA_FORMATS[token_id % len(MEDIA_FORMATS)]


def fault_of(token_id: int) -> Fault | None:
    fault = FAULTS_BY_OFFSET.get(token_id % FAULT_PERIOD)
    if fault is None and token_id % 10 == 3:
        return Fault.RAW_METADATA_EMPTY
    return fault


def mixedmedia_faults(supply: int) -> dict[int, Fault]:
    """Token id -> fault for the tokens 0..supply-1 that have one."""
    return {token_id: fault for token_id in range(supply) if (fault := fault_of(token_id)) is not None}


# File format -> encoder of a token's media from its traits and id (the id seeds the photo grain)
_RENDERERS: dict[str, Callable[[dict[str, str], int], bytes]] = {
    "png": lambda traits, _: encode_png(render_critter(traits)),
    "jpeg": lambda traits, token_id: encode_jpeg(render_photo(traits, PHOTO_SIZES["jpeg"], seed=token_id)),
    "webp": lambda traits, token_id: encode_webp(render_photo(traits, PHOTO_SIZES["webp"], seed=token_id)),
    "gif": lambda traits, _: encode_gif(render_frames(traits, 96, 2, GIF_BOB), frame_ms=100),
    "svg": lambda traits, _: critter_svg(traits).encode("utf-8"),
    "mp4": lambda traits, _: encode_mp4(render_frames(traits, VIDEO_CANVAS, 2, VIDEO_WALK), VIDEO_FPS),
}


def _messy_attributes(fault: Fault | None, attributes: list[dict[str, Any]]) -> Any:
    """The attributes as the token's metadata states them (clean unless the fault is about them)."""
    match fault:
        case Fault.ATTRIBUTES_DICT:
            return {item["trait_type"]: item["value"] for item in attributes}
        case Fault.ATTRIBUTES_STRING:
            return ", ".join(f"{item['trait_type']}: {item['value']}" for item in attributes)
        case Fault.ATTRIBUTES_NUMERIC:
            return attributes + [
                {"trait_type": "Level", "value": 7},
                {"trait_type": "Stamina", "value": 42, "display_type": "number"},
                {"trait_type": "Speed Boost", "value": 15, "display_type": "boost_percentage"},
                {"trait_type": "Weight", "value": 3.5},
            ]
        case Fault.ATTRIBUTES_ODD_VALUES:
            return attributes + [
                {"trait_type": "Shiny", "value": True},
                {"trait_type": "Rarity", "value": None},
                {"trait_type": "Mood", "value": ""},
                {"trait_type": "Cape", "value": "None"},
                {"value": "Untyped"},
            ]
        case Fault.ATTRIBUTES_DUPLICATED:
            return attributes + attributes[:2]
        case Fault.ATTRIBUTE_LONG_VALUE:
            return attributes + [{"trait_type": "Lore", "value": LONG_LORE}]
    return attributes


class MixedMedia(SampleCollection):
    """The critters; a subclass changes which format, fault and traits each token has (the
    `media_format`, `fault_of` and `traits` methods) and the CIDs its files live under."""

    slug = "mixedmedia"
    name = "Mixed Media Critters"
    symbol = "MMC"
    contract = derived_address("mixedmedia")
    description = "Generated critters in every media format, with deliberate faults (sample collection)."
    default_supply = 600
    metadata_cid = MIXED_METADATA_CID
    image_cid = MIXED_IMAGE_CID

    def media_format(self, token_id: int) -> str:
        return media_format(token_id)

    def fault_of(self, token_id: int) -> Fault | None:
        return fault_of(token_id)

    def traits(self, token_id: int) -> dict[str, str]:
        return critter_traits(token_id)

    def token_uri(self, token_id: int) -> str:
        return f"ipfs://{self.metadata_cid}/{token_id}.json"

    def _image_extension(self, token_id: int) -> str | None:
        """The extension of the token's image file on IPFS; None for `data:` images."""
        file_format = self.media_format(token_id)
        if file_format not in FILE_TYPES:
            return None
        return "png" if self.fault_of(token_id) is Fault.IMAGE_CONTENT_TYPE_LIES else FILE_TYPES[file_format][0]

    def media(self, token_id: int) -> ServedFile:
        """The token's genuine media (what a `data:` URI embeds, or the file before any fault)."""
        return self._memo(("media", token_id), lambda: self._render_media(token_id))

    def _render_media(self, token_id: int) -> ServedFile:
        file_format = _DATA_URI_SOURCES.get(self.media_format(token_id), self.media_format(token_id))
        body = _RENDERERS[file_format](self.traits(token_id), token_id)
        return ServedFile(body, FILE_TYPES[file_format][1])

    def image_uri(self, token_id: int) -> str:
        extension = self._image_extension(token_id)
        if extension is not None:
            return f"ipfs://{self.image_cid}/{token_id}.{extension}"
        media = self.media(token_id)
        if media.content_type == "image/svg+xml":
            return "data:image/svg+xml," + urllib.parse.quote(media.body.decode("utf-8"))
        return f"data:{media.content_type};base64," + base64.b64encode(media.body).decode("ascii")

    def metadata(self, token_id: int) -> dict[str, Any]:
        return self._memo(("metadata", token_id), lambda: self._build_metadata(token_id))

    def _build_metadata(self, token_id: int) -> dict[str, Any]:
        fault = self.fault_of(token_id)
        attributes = [{"trait_type": trait, "value": value} for trait, value in self.traits(token_id).items()]
        name = f"Crème Brûlée Critter #{token_id}" if fault is Fault.NAME_NOT_UTF8 else f"Critter #{token_id}"
        document: dict[str, Any] = {
            "name": name,
            "description": f"Critter #{token_id} of the {self.name}, a generated sample collection.",
            "image": self.image_uri(token_id),
        }
        if self.media_format(token_id) == "mp4":
            document["animation_url"] = document["image"]
        if fault is not Fault.ATTRIBUTES_MISSING:
            document["attributes"] = _messy_attributes(fault, attributes)
        return document

    def indexed_metadata(self, token_id: int) -> dict[str, Any]:
        return {} if self.fault_of(token_id) in INDEX_ERRORS else self.metadata(token_id)

    def index_error(self, token_id: int) -> str | None:
        fault = self.fault_of(token_id)
        return INDEX_ERRORS.get(fault) if fault is not None else None

    def ipfs_files(self) -> dict[str, FileProducer]:
        return {self.metadata_cid: self._metadata_file, self.image_cid: self._image_file}

    def _metadata_file(self, token_id: int, extension: str) -> ServedFile | None:
        if extension != "json":
            return None
        return self._memo(("metadata_file", token_id), lambda: self._build_metadata_file(token_id))

    def _build_metadata_file(self, token_id: int) -> ServedFile | None:
        document = self.metadata(token_id)
        match self.fault_of(token_id):
            case Fault.TOKEN_URI_404:
                return None
            case Fault.NAME_NOT_UTF8:
                return json_file(document, encoding="latin-1")
            case Fault.TOKEN_URI_INVALID_JSON:
                complete = json_file(document)
                return ServedFile(complete.body[: len(complete.body) // 2], complete.content_type)
        return json_file(document)

    def _image_file(self, token_id: int, extension: str) -> ServedFile | None:
        if extension != self._image_extension(token_id):
            return None
        media = self.media(token_id)
        match self.fault_of(token_id):
            case Fault.IMAGE_404:
                return None
            case Fault.IMAGE_HTML_200:
                return ServedFile(HTML_ERROR_PAGE, "text/html; charset=utf-8")
            case Fault.IMAGE_CONTENT_TYPE_LIES:
                return ServedFile(media.body, "image/png")
            case Fault.IMAGE_TRUNCATED_PNG:
                return ServedFile(media.body[: len(media.body) // 2], media.content_type)
        return media
