"""CryptoPunks, served from the vendored sprite sheet and attributes (see data/cryptopunks/README.md).

Metadata lives at `ipfs://<PUNKS_METADATA_CID>/<id>` (JSON, no extension, as many collections
publish it) and each image at `ipfs://<PUNKS_IMAGE_CID>/<id>.png` (the exact 24x24 RGBA tile).

Beyond the 10,000 real punks: so that tests can grow the supply past the real collection, token
`i >= 10000` reuses the art and attributes of punk `i % 10000` under the name "CryptoPunk #i".
"""

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nft_pipeline.samples.cids import PUNKS_IMAGE_CID, PUNKS_METADATA_CID
from nft_pipeline.samples.collection import FileProducer, SampleCollection, ServedFile, json_file
from nft_pipeline.samples.media import encode_png

DATA_DIR = Path(__file__).parent / "data" / "cryptopunks"
TILE = 24
SHEET_COLUMNS = 100
ART_COUNT = 10_000


class CryptoPunks(SampleCollection):
    """The real 10,000 CryptoPunks with their real attributes."""

    slug = "cryptopunks"
    symbol = "Ͼ"
    description = "CryptoPunks launched as a fixed set of 10,000 items in mid-2017 (offline sample copy)."
    deployed_block = 3914495

    def __init__(self) -> None:
        super().__init__()
        identity = json.loads((DATA_DIR / "collection.json").read_text(encoding="utf-8"))
        self.name = identity["name"]
        self.contract = identity["contract"].lower()
        self.default_supply = identity["total_supply"]

    @cached_property
    def _sheet(self) -> np.ndarray:
        with Image.open(DATA_DIR / "punks.png") as sheet:
            return np.asarray(sheet.convert("RGBA"))

    @cached_property
    def _attributes(self) -> list[list[dict[str, str]]]:
        with open(DATA_DIR / "metadata.jsonl", encoding="utf-8") as lines:
            return [json.loads(line)["attributes"] for line in lines]

    def tile(self, token_id: int) -> np.ndarray:
        """The token's 24x24 RGBA art, cut from the sprite sheet."""
        art = token_id % ART_COUNT
        x, y = (art % SHEET_COLUMNS) * TILE, (art // SHEET_COLUMNS) * TILE
        return self._sheet[y : y + TILE, x : x + TILE]

    def token_uri(self, token_id: int) -> str:
        return f"ipfs://{PUNKS_METADATA_CID}/{token_id}"

    def metadata(self, token_id: int) -> dict[str, Any]:
        return {
            "name": f"CryptoPunk #{token_id}",
            "description": f"CryptoPunk #{token_id}, one of 10,000 unique 24x24 pixel art characters.",
            "image": f"ipfs://{PUNKS_IMAGE_CID}/{token_id}.png",
            "attributes": self._attributes[token_id % ART_COUNT],
        }

    def ipfs_files(self) -> dict[str, FileProducer]:
        return {PUNKS_METADATA_CID: self._metadata_file, PUNKS_IMAGE_CID: self._image_file}

    def _metadata_file(self, token_id: int, extension: str) -> ServedFile | None:
        if extension:
            return None
        return self._memo(("metadata", token_id), lambda: json_file(self.metadata(token_id)))

    def _image_file(self, token_id: int, extension: str) -> ServedFile | None:
        if extension != "png":
            return None
        return self._memo(("image", token_id), lambda: ServedFile(encode_png(self.tile(token_id)), "image/png"))
