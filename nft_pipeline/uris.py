"""Turn the URIs NFT metadata uses into fetchable candidates.

Token metadata points at media in many ways: `ipfs://CID/path`, the doubled `ipfs://ipfs/CID`,
bare CIDs, `https://some-gateway/ipfs/CID/path`, `ar://TX`, `data:` URIs and plain http(s).
Content-addressed URIs are not tied to a host, so they resolve to an ordered list of gateway URLs
(the caller falls back to the next one on failure); `data:` URIs are decoded locally.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import urllib.parse
from dataclasses import dataclass

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_CID_V0 = re.compile(rf"Qm[{_BASE58}]{{44}}")
_CID_V1_BASE32 = re.compile(r"b[a-z2-7]{58,}")
_CID_V1_BASE58 = re.compile(rf"z[{_BASE58}]{{46,}}")
_ARWEAVE_TX = re.compile(r"[A-Za-z0-9_-]{43}")
_IPFS_PATH = re.compile(r"^/ipfs/([^/?#]+)(/[^?#]*)?")
# A subdomain gateway: https://<cid>.ipfs.<gateway host>/<path> (dweb.link, w3s.link, nftstorage.link, ...).
_IPFS_SUBDOMAIN = re.compile(r"^([a-z0-9]+)\.ipfs\.[^/]+$")
ERC1155_ID = "{id}"


class InvalidUri(ValueError):
    """The URI cannot be resolved; the message says why (it becomes a row's error)."""


@dataclass(frozen=True)
class DataUri:
    """A decoded `data:` URI."""

    media_type: str
    body: bytes


@dataclass(frozen=True)
class Candidates:
    """HTTP URLs to try in order for one URI (several for content-addressed URIs)."""

    urls: tuple[str, ...]


@functools.lru_cache(maxsize=4096)
def is_valid_cid(cid: str) -> bool:
    """CIDv0 (base58 `Qm...`) or CIDv1 (base32 `b...` with version 1, or base58btc `z...`)."""
    if _CID_V0.fullmatch(cid) or _CID_V1_BASE58.fullmatch(cid):
        return True
    if not _CID_V1_BASE32.fullmatch(cid):
        return False
    body = cid[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except binascii.Error:
        return False
    return len(raw) > 4 and raw[0] == 0x01


def decode_data_uri(uri: str, max_bytes: int) -> DataUri:
    """Decode `data:[type][;base64],payload` (base64 or percent-encoded), capped at `max_bytes`."""
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise InvalidUri("data: URI without a ',' separator")
    params = header.split(";")
    is_base64 = params[-1].strip().lower() == "base64"
    media_type = (params[0].strip() or "text/plain").lower()
    # Base64 grows 4/3 and percent-encoding up to 3x: reject by encoded size before decoding.
    if len(payload) > max_bytes * 3 + 16:
        raise InvalidUri(f"data: URI payload larger than {max_bytes} bytes")
    if is_base64:
        compact = re.sub(r"\s+", "", urllib.parse.unquote(payload))
        try:
            body = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidUri(f"invalid base64 in data: URI ({exc})") from None
    else:
        body = urllib.parse.unquote_to_bytes(payload)
    if len(body) > max_bytes:
        raise InvalidUri(f"data: URI payload larger than {max_bytes} bytes")
    return DataUri(media_type=media_type, body=body)


def substitute_token_id(uri: str, token_id: str) -> str:
    """An ERC-1155 URI with its `{id}` placeholder replaced by the token id as the standard says:
    64 lower-case hex digits, zero-padded, no `0x` (token 1 -> `000...001`). Other URIs as they are;
    `token_id` is decimal text (`token_metadata.token_id_text`)."""
    if ERC1155_ID not in uri or not token_id.isdigit():
        return uri
    return uri.replace(ERC1155_ID, format(int(token_id), "064x"))


def _ipfs_candidates(cid_and_path: str, gateways: tuple[str, ...]) -> tuple[str, ...]:
    cid, _, path = cid_and_path.lstrip("/").partition("/")
    if not is_valid_cid(cid):
        raise InvalidUri(f"invalid IPFS CID {cid[:80]!r}")
    suffix = f"{cid}/{urllib.parse.quote(path, safe='/%')}" if path else cid
    if not gateways:
        raise InvalidUri("no IPFS gateway configured")
    return tuple(f"{g.rstrip('/')}/{suffix}" for g in gateways)


def resolve_uri(
    uri: str,
    ipfs_gateways: tuple[str, ...],
    arweave_gateways: tuple[str, ...],
    max_data_bytes: int,
) -> DataUri | Candidates:
    """Resolve one metadata URI to a decoded data URI or the HTTP URLs to try, in order.

    IPFS gateways are given as prefixes ending in `/ipfs/` (e.g. `https://ipfs.io/ipfs/`);
    Arweave gateways as hosts (`https://arweave.net/`). Raises `InvalidUri` with a reason.
    """
    uri = (uri or "").strip()
    if not uri:
        raise InvalidUri("empty URI")
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme == "data":
        return decode_data_uri(uri, max_data_bytes)
    if scheme == "ipfs":
        rest = uri[5:].lstrip("/")
        if rest.lower().startswith("ipfs/"):
            rest = rest[5:]
        return Candidates(_ipfs_candidates(rest, ipfs_gateways))
    if scheme == "ar":
        tx, _, path = uri[3:].lstrip("/").partition("/")
        if not _ARWEAVE_TX.fullmatch(tx):
            raise InvalidUri(f"invalid Arweave transaction id {tx[:80]!r}")
        if not arweave_gateways:
            raise InvalidUri("no Arweave gateway configured")
        return Candidates(tuple(f"{g.rstrip('/')}/{tx}{'/' + path if path else ''}" for g in arweave_gateways))
    if scheme in ("http", "https"):
        parsed = urllib.parse.urlsplit(uri)
        if not parsed.hostname:
            raise InvalidUri("http(s) URI without a host")
        # A pinned gateway host may be dead or rate-limited: our gateways first, it last.
        match = _IPFS_PATH.match(parsed.path)
        if match and is_valid_cid(match.group(1)):
            ours = _ipfs_candidates(parsed.path[len("/ipfs/") :], ipfs_gateways) if ipfs_gateways else ()
            return Candidates(tuple(dict.fromkeys((*ours, uri))))
        subdomain = _IPFS_SUBDOMAIN.match(parsed.hostname)
        if subdomain and is_valid_cid(subdomain.group(1)):
            ours = _ipfs_candidates(subdomain.group(1) + parsed.path, ipfs_gateways) if ipfs_gateways else ()
            return Candidates(tuple(dict.fromkeys((*ours, uri))))
        return Candidates((uri,))
    if not scheme and is_valid_cid(uri.split("/", 1)[0]):
        return Candidates(_ipfs_candidates(uri, ipfs_gateways))
    raise InvalidUri(f"unsupported URI scheme {scheme or uri[:40]!r}")
