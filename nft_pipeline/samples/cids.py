"""Deterministic, well-formed IPFS CIDs for the sample collections.

The sample gateway serves files under `/ipfs/<cid>/...` like a real IPFS gateway, so the
pipeline's CID handling is exercised on identifiers that parse exactly like real ones:
CIDv1, dag-pb codec, sha2-256 multihash, multibase base32 (the `bafybei...` form).
"""

import base64
import hashlib

_CID_V1 = 0x01
_DAG_PB = 0x70
_SHA2_256 = 0x12
_SHA2_256_LENGTH = 0x20


def cid_for(label: str) -> str:
    """The CIDv1 (base32, dag-pb, sha2-256) whose digest is the sha256 of `label`."""
    digest = hashlib.sha256(label.encode("utf-8")).digest()
    binary = bytes([_CID_V1, _DAG_PB, _SHA2_256, _SHA2_256_LENGTH]) + digest
    return "b" + base64.b32encode(binary).decode("ascii").lower().rstrip("=")


PUNKS_METADATA_CID = cid_for("cryptopunks-metadata")
PUNKS_IMAGE_CID = cid_for("cryptopunks-images")
MIXED_METADATA_CID = cid_for("mixedmedia-metadata")
MIXED_IMAGE_CID = cid_for("mixedmedia-images")
