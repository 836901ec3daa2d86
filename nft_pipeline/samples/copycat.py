"""A copycat collection: CryptoPunks re-minted under another contract, as copies of famous collections are.

Each copy shows one real punk (`source_punk`, the ground truth the clone tests score against),
changed the way copies on marketplaces are: the 24x24 art enlarged by a non-integer factor with
bilinear smoothing (so it is no longer clean pixel art), moved a few art pixels off centre on a
solid background, lightly recoloured (each channel scaled by 0.9-1.1 and offset by up to ±12) and
re-encoded lossily as JPEG or WebP. Everything is deterministic from (seed, token id), and the
copied punks are distinct (a sample of `range(source_supply)` without replacement).
"""

from __future__ import annotations

import csv
import random
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nft_pipeline.samples.cids import cid_for
from nft_pipeline.samples.collection import FileProducer, SampleCollection, ServedFile, derived_address, json_file
from nft_pipeline.samples.media import encode_jpeg, encode_webp
from nft_pipeline.samples.punks import ART_COUNT, TILE, CryptoPunks

COPYCAT_SLUG = "copycat-punks"
DEFAULT_COPIES = 300
BACKGROUNDS = ((99, 133, 150), (255, 255, 255), (238, 232, 213), (40, 40, 48))  # punks' blue, white, cream, dark
FORMATS = {"jpeg": "image/jpeg", "webp": "image/webp"}


class CopycatPunks(SampleCollection):
    """`copies` altered CryptoPunks under a contract of their own (see the module docstring)."""

    symbol = "CPYPUNK"
    description = "Pixel characters (a generated copy of CryptoPunks, for clone detection tests)."

    def __init__(self, copies: int = DEFAULT_COPIES, seed: int = 0, source_supply: int = ART_COUNT) -> None:
        super().__init__()
        if not 1 <= copies <= source_supply <= ART_COUNT:
            raise ValueError(f"copies ({copies}) must be between 1 and the punks copied from ({source_supply}, at most {ART_COUNT})")
        self.slug = COPYCAT_SLUG
        self.name = "Copycat Punks"
        self.seed = seed
        self.default_supply = copies
        self.contract = derived_address(f"copycat-punks-{seed}")
        self.metadata_cid = cid_for(f"copycat-punks-{seed}-metadata")
        self.image_cid = cid_for(f"copycat-punks-{seed}-images")
        self._sources = random.Random(f"copycat-punks-{seed}").sample(range(source_supply), copies)

    @cached_property
    def _punks(self) -> CryptoPunks:
        return CryptoPunks()

    def source_punk(self, token_id: int) -> int:
        """The punk token `token_id` copies (ground truth)."""
        return self._sources[token_id % len(self._sources)]

    def image_format(self, token_id: int) -> str:
        return random.Random(f"copycat-{self.seed}-format-{token_id}").choice(list(FORMATS))

    def token_uri(self, token_id: int) -> str:
        return f"ipfs://{self.metadata_cid}/{token_id}"

    def metadata(self, token_id: int) -> dict[str, Any]:
        punk = self._punks.metadata(self.source_punk(token_id))
        return {
            "name": f"Copycat Punk #{token_id}",
            "description": "A pixel character.",
            "image": f"ipfs://{self.image_cid}/{token_id}.{self.image_format(token_id)}",
            "attributes": punk["attributes"],  # copies copy the traits too
        }

    def copy_rgb(self, token_id: int) -> np.ndarray:
        """The altered copy's pixels (H x W x 3 uint8) before lossy encoding."""
        rng = random.Random(f"copycat-{self.seed}-pixels-{token_id}")
        tile = self._punks.tile(self.source_punk(token_id)).astype(np.float32)
        background = np.array(rng.choice(BACKGROUNDS), np.float32)
        alpha = tile[..., 3:] / 255.0
        art = tile[..., :3] * alpha + background * (1.0 - alpha)
        gain = np.array([rng.uniform(0.9, 1.1) for _ in range(3)], np.float32)
        offset = np.array([rng.uniform(-12, 12) for _ in range(3)], np.float32)
        art = np.clip(art * gain + offset, 0, 255).astype(np.uint8)
        scale = rng.uniform(7.3, 13.7)
        side = round(TILE * scale)
        enlarged = np.asarray(Image.fromarray(art).resize((side, side), Image.Resampling.BILINEAR))
        margin = round(3 * scale)  # room for a shift of up to 3 art pixels each way
        canvas = np.empty((side + 2 * margin, side + 2 * margin, 3), np.uint8)
        canvas[:] = np.clip(background * gain + offset, 0, 255).astype(np.uint8)
        dx, dy = (round(rng.uniform(-2.5, 2.5) * scale) for _ in range(2))
        canvas[margin + dy : margin + dy + side, margin + dx : margin + dx + side] = enlarged
        return canvas

    def ipfs_files(self) -> dict[str, FileProducer]:
        return {self.metadata_cid: self._metadata_file, self.image_cid: self._image_file}

    def _metadata_file(self, token_id: int, extension: str) -> ServedFile | None:
        if extension:
            return None
        return self._memo(("metadata", token_id), lambda: json_file(self.metadata(token_id)))

    def _image_file(self, token_id: int, extension: str) -> ServedFile | None:
        if extension != self.image_format(token_id):
            return None
        return self._memo(("image", token_id), lambda: self._encoded(token_id))

    def _encoded(self, token_id: int) -> ServedFile:
        quality = random.Random(f"copycat-{self.seed}-quality-{token_id}").randint(70, 90)
        pixels = self.copy_rgb(token_id)
        body = encode_jpeg(pixels, quality) if self.image_format(token_id) == "jpeg" else encode_webp(pixels, quality)
        return ServedFile(body, FORMATS[self.image_format(token_id)])


def write_copycat_catalog(copycat: CopycatPunks, path: Path) -> Path:
    """The bundled samples' catalog with the copycat listed last (so the punks are the originals)."""
    from nft_pipeline.samples import CHAIN, sample_catalog_rows

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("slug", "name", "chain", "contract", "source"))
        for row in [*sample_catalog_rows(), (copycat.slug, copycat.name, CHAIN, copycat.contract)]:
            writer.writerow((*row, "sample"))
    return path
