"""An image to search by, from an upload or a URL: size-capped, sniffed, and fetched only where allowed.

Uploads are read from the request body up to `MAX_IMAGE_BYTES` (a larger declared or actual body
is refused before it is held whole). URLs go through the project's guarded HTTP client
(http_client.py): only http(s), no private, loopback, link-local or metadata addresses, a byte
cap, short timeouts and one attempt (a person is waiting). Either way the bytes must sniff as a
raster image (sniff.py) before Pillow sees them; every refusal is a `SearchError` whose message
says what was wrong (not an image, too large, a private address, a timeout).
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from nft_pipeline.http_client import FetchStatus, GuardedHttpClient, HttpLimits
from nft_pipeline.search import MAX_IMAGE_BYTES, SearchError
from nft_pipeline.sniff import GIF, JPEG, PNG, WEBP, sniff_media_type

RASTER_TYPES = (PNG, JPEG, GIF, WEBP)
URL_LIMITS = HttpLimits(
    max_attempts=1, connect_timeout_s=5.0, read_timeout_s=8.0, total_timeout_s=10.0, max_redirects=3
)
_MIB = 1024 * 1024


def checked_image(body: bytes, where: str) -> bytes:
    """`body` if it sniffs as a raster image Pillow reads; a SearchError naming what it is otherwise."""
    kind = sniff_media_type(body[:1024])
    if kind not in RASTER_TYPES:
        raise SearchError(f"{where} is not an image (it looks like {kind}); use a PNG, JPEG, GIF or WebP")
    return body


async def uploaded_image(request: web.Request, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The request body as an image: refused past `max_bytes` (declared or read) or when not an image."""
    too_large = SearchError(f"the upload is larger than {max_bytes // _MIB} MiB")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise SearchError("the upload is empty: send the image file as the request body")
    return checked_image(body, "the upload")


_FETCH_ERRORS = {
    FetchStatus.BLOCKED_ADDRESS: "refused: {url} is a private, loopback or reserved address",
    FetchStatus.TIMEOUT: "{url} did not answer in time",
    FetchStatus.TOO_LARGE: "the image at {url} is larger than {mib} MiB",
    FetchStatus.INVALID_URI: "not an http(s) URL: {url}",
    FetchStatus.TOO_MANY_REDIRECTS: "{url} redirects too many times",
}


async def fetched_image(url: str, limits: HttpLimits = URL_LIMITS, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The image at `url`, fetched by the guarded client; SearchError with the reason when it cannot be."""
    url = url.strip()
    if not url:
        raise SearchError("give the image's URL, e.g. https://example.com/punk.png")
    shown = url[:200]
    async with GuardedHttpClient(replace(limits, max_attempts=1)) as client:
        result = await client.fetch_url(url, max_bytes)
    if not result.ok:
        template = _FETCH_ERRORS.get(result.status)
        if template is not None:
            raise SearchError(template.format(url=shown, mib=max_bytes // _MIB))
        if result.http_status is not None:
            raise SearchError(f"{shown} answered HTTP {result.http_status}")
        raise SearchError(f"could not fetch {shown}: {result.error or result.status}")
    if result.body is None:
        raise SearchError(f"the image at {shown} is larger than {max_bytes // _MIB} MiB")
    return checked_image(result.body, f"the file at {shown}")
