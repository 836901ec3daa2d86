"""NFT1000 in miniature: N generated critter collections shaped like the NFT1000 catalog.

The pipeline's purpose is 1,000 collections refreshed daily; the bundled samples are 3. These
collections stand in for the 1,000 at a size one machine can run end to end (about 20,000 tokens
in all), so the orchestration cost of 1,000 partitions can be measured offline:

- sizes: each collection copies the `collected` count of a row of `catalogs/nft1000.csv` drawn at
  random, scaled so the catalog's median (8,000) becomes `MEDIAN_TOKENS`; the quantiles of the
  sizes are the catalog's, scaled (at least 1 token);
- failures: the same row's share of tokens the NFT1000 authors could not collect
  (1 - collected / total_supply: half the collections lose none, a tenth lose more than 17%) is
  the chance that a token is broken: its image 404s, is an HTML error page or is cut short, or its
  token URI 404s or serves truncated JSON (`mixedmedia.Fault`);
- formats: one per collection, as real collections keep to one, drawn from `FORMAT_WEIGHTS`
  (the catalog has no format column: the weights are an estimate, PNG on IPFS first);
- traits: critters like `mixedmedia`, each collection drawing its own from its slug.

Everything is deterministic from (seed, index): collection i is the same whatever N is, so
`generated_collections(20)` is a prefix of `generated_collections(1000)`.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from nft_pipeline.catalog import CATALOG_DIR
from nft_pipeline.samples import CHAIN
from nft_pipeline.samples.cids import cid_for
from nft_pipeline.samples.collection import derived_address
from nft_pipeline.samples.generated import critter_traits
from nft_pipeline.samples.mixedmedia import FILE_TYPES, Fault, MixedMedia

NFT1000_CATALOG = CATALOG_DIR / "nft1000.csv"
MEDIAN_TOKENS = 20
SLUG_PREFIX = "mini-"
# Share of collections by media format: PNG on IPFS first, on-chain SVG next (estimates).
FORMAT_WEIGHTS = {
    "png": 0.55,
    "data-svg": 0.10,
    "jpeg": 0.10,
    "gif": 0.08,
    "svg": 0.06,
    "webp": 0.04,
    "data-png": 0.04,
    "mp4": 0.03,
}
FILE_FAULTS = (Fault.IMAGE_404, Fault.IMAGE_HTML_200, Fault.IMAGE_TRUNCATED_PNG, Fault.TOKEN_URI_404)
DATA_URI_FAULTS = (Fault.TOKEN_URI_404, Fault.TOKEN_URI_INVALID_JSON)  # a data: image cannot 404
CATALOG_COLUMNS = ("slug", "name", "chain", "contract", "source", "total_supply", "failure_rate", "media_format")


@dataclass(frozen=True)
class CatalogSize:
    """A catalog row's size and the share of its tokens the NFT1000 authors could not collect."""

    collected: int
    failure_rate: float


@cache
def nft1000_sizes() -> tuple[CatalogSize, ...]:
    with NFT1000_CATALOG.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    sizes = []
    for row in rows:
        collected, total = int(row["collected"]), int(row["total_supply"] or 0)
        sizes.append(CatalogSize(collected, min(1.0, max(0.0, 1.0 - collected / total)) if total else 0.0))
    return tuple(sizes)


def size_scale() -> float:
    """Tokens of a generated collection per collected token of the catalog."""
    return MEDIAN_TOKENS / float(np.median([size.collected for size in nft1000_sizes()]))


def scaled_size(collected: int) -> int:
    return max(1, round(collected * size_scale()))


class GeneratedCollection(MixedMedia):
    """One generated collection: `mixedmedia`'s critters, faults and media encoders, with its own
    slug, contract, CIDs, traits, size, format and failure rate."""

    symbol = "MINI"

    def __init__(self, index: int, seed: int = 0) -> None:
        super().__init__()
        rng = random.Random(f"nft1000-mini-{seed}-{index}")
        modelled_on = rng.choice(nft1000_sizes())
        self.index = index
        self.slug = f"{SLUG_PREFIX}{index:04d}"
        self.name = f"Mini Critters {index:04d}"
        self.contract = derived_address(f"nft1000-mini-{seed}-{self.slug}")
        self.description = "A generated critter collection of NFT1000 in miniature (sample collection)."
        self.default_supply = scaled_size(modelled_on.collected)
        self.failure_rate = modelled_on.failure_rate
        self.format = rng.choices(list(FORMAT_WEIGHTS), weights=list(FORMAT_WEIGHTS.values()))[0]
        self.metadata_cid = cid_for(f"nft1000-mini-{seed}-{self.slug}-metadata")
        self.image_cid = cid_for(f"nft1000-mini-{seed}-{self.slug}-images")
        self._namespace = f"nft1000-mini-{seed}-{self.slug}"

    def media_format(self, token_id: int) -> str:
        return self.format

    def fault_of(self, token_id: int) -> Fault | None:
        """A token is broken with probability `failure_rate`, decided by its own draw (so minting
        more tokens never changes the faults of the earlier ones)."""
        rng = random.Random(f"{self._namespace}-fault-{token_id}")
        if rng.random() >= self.failure_rate:
            return None
        return rng.choice(FILE_FAULTS if self.format in FILE_TYPES else DATA_URI_FAULTS)

    def traits(self, token_id: int) -> dict[str, str]:
        return critter_traits(token_id, self._namespace)


def generated_collections(count: int, seed: int = 0) -> dict[str, GeneratedCollection]:
    """`count` generated collections by slug (`mini-0000`, `mini-0001`, ...)."""
    collections = (GeneratedCollection(index, seed) for index in range(count))
    return {collection.slug: collection for collection in collections}


def write_catalog(collections: dict[str, GeneratedCollection], path: Path) -> Path:
    """The collections as a pipeline catalog (source `sample`), with their size, failure rate and format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CATALOG_COLUMNS)
        for c in collections.values():
            row = (c.slug, c.name, CHAIN, c.contract, "sample", c.default_supply, f"{c.failure_rate:.4f}", c.format)
            writer.writerow(row)
    return path
