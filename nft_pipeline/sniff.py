"""Media type sniffing from magic bytes: what a body really is, whatever its headers claim.

Gateways mislabel content (`application/octet-stream` PNGs, `image/png` HTML error pages), so
every stage decides by the first bytes of the body. The returned names are MIME types; the
non-media ones (HTML, JSON, text) are reported so a bad download says what it got instead.
"""

from __future__ import annotations

import re

PNG = "image/png"
JPEG = "image/jpeg"
GIF = "image/gif"
WEBP = "image/webp"
SVG = "image/svg+xml"
MP4 = "video/mp4"
QUICKTIME = "video/quicktime"
WEBM = "video/webm"
HTML = "text/html"
JSON = "application/json"
TEXT = "text/plain"
UNKNOWN = "application/octet-stream"
EMPTY = "empty"

IMAGE_TYPES = (PNG, JPEG, GIF, WEBP, SVG)
VIDEO_TYPES = (MP4, QUICKTIME, WEBM)
MEDIA_TYPES = IMAGE_TYPES + VIDEO_TYPES

_SVG_ROOT = re.compile(rb"<svg[\s>/]", re.IGNORECASE)
_HTML_ROOT = re.compile(rb"<(!doctype\s+html|html|head|body|title)[\s>]", re.IGNORECASE)
_MP4_BRANDS_QUICKTIME = {b"qt  "}


def _strip_text_prefix(head: bytes) -> bytes:
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    return head.lstrip()


def sniff_media_type(head: bytes) -> str:
    """The MIME type of a body from its first bytes (>= 512 recommended)."""
    if not head:
        return EMPTY
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[4:8] == b"ftyp":
        return QUICKTIME if head[8:12] in _MP4_BRANDS_QUICKTIME else MP4
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return QUICKTIME
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return WEBM
    text = _strip_text_prefix(head)
    if text.startswith((b"{", b"[")):
        return JSON
    if _HTML_ROOT.search(text[:512]):
        return HTML
    if _SVG_ROOT.search(text) and (text.startswith(b"<") or text.startswith(b"<?xml")):
        return SVG
    if _is_text(head):
        return TEXT
    return UNKNOWN


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte char cut at the end of the head is fine
            return False
    return not any(b < 9 or 13 < b < 32 for b in head[:512])


_TRAILERS = {PNG: (b"IEND\xaeB`\x82",), JPEG: (b"\xff\xd9",), GIF: (b";",)}


def looks_truncated(media_type: str, tail: bytes) -> bool:
    """True if a PNG, JPEG or GIF body does not end with its format's trailer (cut in transit).

    Trailing zero padding after the trailer is tolerated (some encoders add it).
    """
    trailers = _TRAILERS.get(media_type)
    if trailers is None:
        return False
    return not tail.rstrip(b"\x00").endswith(trailers)
