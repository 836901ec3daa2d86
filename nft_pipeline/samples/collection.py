"""What every sample collection offers the sample gateway.

A sample collection stands in for an NFT contract plus the storage its token URIs point at:
the gateway answers Alchemy-style API calls from `metadata` / `indexed_metadata` and serves
`/ipfs/<cid>/<path>` requests from the producers in `ipfs_files`. Everything is deterministic
from the token id, so two gateways (or two runs) serve identical bytes.
"""

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ServedFile:
    """A file as the gateway sends it: body and the Content-Type it declares."""

    body: bytes
    content_type: str


# (token id, file extension without the dot or "") -> the file, or None if there is no such file
FileProducer = Callable[[int, str], ServedFile | None]


def derived_address(label: str) -> str:
    """A stable, well-formed (lower-case, 20-byte) address for things with no real address."""
    return "0x" + hashlib.sha256(label.encode("utf-8")).hexdigest()[:40]


def json_file(document: Any, encoding: str = "utf-8") -> ServedFile:
    """A JSON document as served by IPFS: UTF-8 text unless a fault asks for another encoding."""
    return ServedFile(json.dumps(document, ensure_ascii=False).encode(encoding), "application/json")


def parse_token_path(path: str) -> tuple[int, str] | None:
    """`"12.png"` -> `(12, "png")`, `"12"` -> `(12, "")`; None unless the id is canonical decimal.

    Only canonical ids (no sign, no leading zeros) name a file, so each token has exactly one
    path and the gateway's request counters are keyed unambiguously.
    """
    stem, _, extension = path.partition(".")
    if not (stem.isascii() and stem.isdigit()) or (len(stem) > 1 and stem[0] == "0"):
        return None
    return int(stem), extension


class SampleCollection(ABC):
    """An NFT collection the sample gateway can serve; token ids run from 0 to supply - 1."""

    slug: str
    name: str
    symbol: str
    contract: str  # lower-case hex address
    description: str
    default_supply: int
    token_type = "ERC721"
    deployed_block: int | None = None

    def __init__(self) -> None:
        self._memo_store: dict[Hashable, Any] = {}
        self._memo_lock = threading.Lock()

    @property
    def deployer(self) -> str:
        """Synthetic: the samples make no claim about who deployed the real contracts."""
        return derived_address(f"{self.slug}-deployer")

    @abstractmethod
    def token_uri(self, token_id: int) -> str:
        """The URI the contract's tokenURI(token_id) returns."""

    @abstractmethod
    def metadata(self, token_id: int) -> dict[str, Any]:
        """The metadata document the token URI points at, as its creator wrote it."""

    def indexed_metadata(self, token_id: int) -> dict[str, Any]:
        """What an indexer (Alchemy's `raw.metadata`) holds for the token: {} if its fetch failed."""
        return self.metadata(token_id)

    def index_error(self, token_id: int) -> str | None:
        """The indexer's error for the token (Alchemy's `raw.error`), None when it read the metadata."""
        return None

    def ipfs_files(self) -> Mapping[str, FileProducer]:
        """The IPFS directories this collection publishes: CID -> producer of the files in it."""
        return {}

    def _memo(self, key: Hashable, build: Callable[[], T]) -> T:
        """`build()` once per key for this instance: encoded files are served many times."""
        try:
            return self._memo_store[key]
        except KeyError:
            value = build()
            with self._memo_lock:
                return self._memo_store.setdefault(key, value)
