"""Sample NFT collections bundled for offline runs and tests, and the registry the gateway serves.

Three collections: `cryptopunks` (the real punks and attributes), `nouns` (real CC0 parts with
generated seeds and ground-truth layers) and `mixedmedia` (generated critters in every media
format, with deliberate faults). None of this imports dagster.
"""

from typing import NamedTuple

from nft_pipeline.samples.collection import SampleCollection
from nft_pipeline.samples.mixedmedia import MixedMedia
from nft_pipeline.samples.nouns import Nouns
from nft_pipeline.samples.punks import CryptoPunks

CHAIN = "ethereum"


def sample_collections() -> dict[str, SampleCollection]:
    """Fresh instances (with empty caches) of every sample collection, by slug."""
    return {collection.slug: collection for collection in (CryptoPunks(), Nouns(), MixedMedia())}


SAMPLE_COLLECTIONS = sample_collections()


class CatalogRow(NamedTuple):
    slug: str
    name: str
    chain: str
    contract: str


def sample_catalog_rows() -> list[CatalogRow]:
    """One catalog row per sample collection, in the shape of the bundled catalogs."""
    return [CatalogRow(c.slug, c.name, CHAIN, c.contract) for c in SAMPLE_COLLECTIONS.values()]
