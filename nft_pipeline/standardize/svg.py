"""SVG rasterisation with resvg, with no network, no file access and no entity expansion.

NFT SVGs are untrusted markup. resvg never fetches URLs, but it does read local files named by
`<image href="/abs/path">` (or relative to a resources directory), and it follows SVG documents
nested in `data:` URLs with the same rules. So before rendering, the text is parsed with
defusedxml (entity declarations, the billion-laughs vector, are refused, external entities never
resolved) and rewritten: every `href` / `xlink:href` that is not a local `#fragment` or a `data:`
URL is removed, nested SVG data URLs are cleaned the same way (to a fixed depth), embedded rasters
must fit the pixel cap, and `<script>` and `<foreignObject>` (HTML, which resvg does not draw) are
dropped. resvg has no script engine, so nothing executes either way.

Vector art is drawn directly at the output width, never upscaled from a small raster. Pixel art
drawn as SVG (on-chain renderers such as Nouns' emit one `<rect>` per run of pixels) is detected
from the markup: if the drawing is only axis-aligned rectangles whose coordinates share an
integer grid, the SVG is rasterised at one pixel per grid cell and then goes through the same
integer nearest-neighbour upscale as raster pixel art, so its blocks stay exact.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import reduce

import defusedxml
import defusedxml.ElementTree as SafeET
import resvg_py
from PIL import Image

from nft_pipeline.standardize.frame import check_pixels
from nft_pipeline.standardize.model import Rejected, StandardizeSettings, Status

SVG_NS = "http://www.w3.org/2000/svg"
MAX_NESTED_SVG_DEPTH = 2
DEFAULT_SIZE = (100.0, 100.0)  # resvg's size for an SVG without width, height or viewBox
_DROPPED_ELEMENTS = {"script", "foreignObject"}
_GRID_ELEMENTS = {"svg", "g", "rect", "title", "desc", "metadata"}
_PX_PER_UNIT = {"": 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}
_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")
# resvg maps generic families to fonts that a Debian machine lacks (Times New Roman, Arial), and
# then draws no text at all; DejaVu ships with fontconfig on Debian.
_FONTS = {
    "font_family": "DejaVu Sans",
    "serif_family": "DejaVu Serif",
    "sans_serif_family": "DejaVu Sans",
    "monospace_family": "DejaVu Sans Mono",
}


@dataclass(frozen=True)
class SvgDocument:
    """Sanitised SVG markup and what rendering it needs to know.

    `size` is the intrinsic size in px. `grid` is the side of one art pixel in user units when
    the drawing is pixel art on an integer grid, and `grid_cells` the canvas in art pixels.
    """

    markup: str
    size: tuple[float, float]
    grid: int | None
    grid_cells: tuple[int, int] | None
    has_text: bool


def parse_svg(data: bytes, settings: StandardizeSettings) -> SvgDocument:
    root = _sanitised_root(data, settings, depth=0)
    viewbox = _viewbox(root.get("viewBox"))
    size = _intrinsic_size(root, viewbox)
    frame = viewbox or (0.0, 0.0, *size)
    grid = _pixel_grid(root, frame, size)
    cells = (round(frame[2]) // grid, round(frame[3]) // grid) if grid else None
    has_text = any(_local(element.tag) == "text" for element in root.iter())
    return SvgDocument(ET.tostring(root, encoding="unicode"), size, grid, cells, has_text)


def render_svg(document: SvgDocument, width: int, height: int) -> Image.Image:
    """The SVG drawn at `width` x `height` px (its own aspect ratio, last row cut or padded)."""
    try:
        png = resvg_py.svg_to_bytes(
            svg_string=document.markup, width=width, skip_system_fonts=not document.has_text, **_FONTS
        )
    except ValueError as exc:
        raise Rejected(Status.DECODE_ERROR, f"resvg: {exc}") from exc
    image = Image.open(io.BytesIO(png), formats=["PNG"])
    image.load()
    # resvg rounds the height up; the standard height is rounded to nearest.
    return image if image.size == (width, height) else image.crop((0, 0, width, height))


def _sanitised_root(data: bytes, settings: StandardizeSettings, depth: int) -> ET.Element:
    if len(data) > settings.max_svg_bytes:
        raise Rejected(Status.TOO_LARGE, f"SVG of {len(data)} bytes exceeds {settings.max_svg_bytes}")
    try:
        root = SafeET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise Rejected(Status.UNSAFE_SVG, f"{type(exc).__name__}: {exc}") from exc
    except ET.ParseError as exc:
        raise Rejected(Status.DECODE_ERROR, f"invalid XML: {exc}") from exc
    elements = list(root.iter())
    for element in elements:
        if isinstance(element.tag, str) and not element.tag.startswith("{"):
            element.tag = f"{{{SVG_NS}}}{element.tag}"  # HTML pages draw SVG without xmlns; resvg needs it
        for child in list(element):
            if _local(child.tag) in _DROPPED_ELEMENTS:
                element.remove(child)
        for name, value in list(element.attrib.items()):
            if _local(name) == "href":
                kept = _safe_href(value, settings, depth)
                if kept is None:
                    del element.attrib[name]
                else:
                    element.attrib[name] = kept
    return root


def _safe_href(value: str, settings: StandardizeSettings, depth: int) -> str | None:
    """The reference to keep in place of `value`, or None to drop it."""
    stripped = value.strip()
    if stripped.startswith("#"):
        return value
    if stripped[:5].lower() != "data:":
        return None
    header, _, payload = stripped.partition(",")
    try:
        raw = (
            base64.b64decode(payload) if header.lower().endswith(";base64") else urllib.parse.unquote_to_bytes(payload)
        )
    except (binascii.Error, ValueError):
        return None
    if "svg" in header.lower():
        if depth >= MAX_NESTED_SVG_DEPTH:
            return None
        nested = ET.tostring(_sanitised_root(raw, settings, depth + 1))
        return "data:image/svg+xml;base64," + base64.b64encode(nested).decode("ascii")
    try:
        embedded = Image.open(io.BytesIO(raw), formats=["PNG", "JPEG", "GIF", "WEBP"])
    except Image.DecompressionBombError as exc:
        raise Rejected(Status.TOO_MANY_PIXELS, f"embedded image: {exc}") from exc
    except OSError:
        return None  # not an image PIL reads: resvg would not draw it either
    check_pixels(embedded.width, embedded.height, settings)  # resvg decodes it whole, in native code
    return stripped


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _viewbox(value: str | None) -> tuple[float, float, float, float] | None:
    try:
        numbers = [float(part) for part in re.split(r"[\s,]+", (value or "").strip()) if part]
    except ValueError:
        return None
    if len(numbers) != 4 or numbers[2] <= 0 or numbers[3] <= 0:
        return None
    return numbers[0], numbers[1], numbers[2], numbers[3]


def _length_px(value: str | None) -> float | None:
    """An absolute length in px; None for missing, relative (%, em) or malformed lengths."""
    match = _LENGTH.match(value or "")
    if not match or match.group(2) not in _PX_PER_UNIT:
        return None
    length = float(match.group(1)) * _PX_PER_UNIT[match.group(2)]
    return length if length > 0 else None


def _intrinsic_size(root: ET.Element, viewbox: tuple[float, float, float, float] | None) -> tuple[float, float]:
    """The size resvg gives the SVG: width/height, the missing one from the viewBox's aspect."""
    width, height = _length_px(root.get("width")), _length_px(root.get("height"))
    if width and height:
        return width, height
    if viewbox is None:
        return DEFAULT_SIZE
    aspect = viewbox[3] / viewbox[2]
    if width:
        return width, width * aspect
    if height:
        return height / aspect, height
    return viewbox[2], viewbox[3]


def _pixel_grid(root: ET.Element, frame: tuple[float, float, float, float], size: tuple[float, float]) -> int | None:
    """The art-pixel side in user units if the SVG is only axis-aligned rects on an integer grid.

    `frame` is the viewBox (or the px size when there is none); it must have the aspect of the
    intrinsic size, or the grid would be stretched unevenly.
    """
    if not math.isclose(frame[3] / frame[2], size[1] / size[0], rel_tol=1e-6):
        return None
    values = list(frame)
    for element in root.iter():
        name = _local(element.tag)
        nested_svg = name == "svg" and element is not root
        if name not in _GRID_ELEMENTS or nested_svg or "transform" in element.attrib:
            return None
        if name == "rect":
            if "rx" in element.attrib or "ry" in element.attrib:
                return None
            for attribute, extent in (("x", frame[2]), ("y", frame[3]), ("width", frame[2]), ("height", frame[3])):
                values.append(_coordinate(element.get(attribute, "0"), extent))
    if not all(value is not None and value.is_integer() for value in values):
        return None
    grid = reduce(math.gcd, (abs(int(value)) for value in values))
    return grid or None


def _coordinate(value: str, extent: float) -> float | None:
    """A rect coordinate in user units; percentages are of the viewBox side."""
    value = value.strip()
    try:
        return float(value[:-1]) * extent / 100 if value.endswith("%") else float(value)
    except ValueError:
        return None
