"""Catalogs: CSV lists of the collections a pipeline run covers.

A catalog row names a collection (slug, name, chain, contract) and the source that serves it
(`sample` for the bundled gateway, `alchemy` for the Alchemy NFT API). Two catalogs ship with the
package: `samples` (the three bundled collections, the default) and `nft1000` (the paper's 1,000
collections with its train/val/test split, for users with an Alchemy key). Users add contracts to
their own CSV and point the pipeline at it.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

CATALOG_DIR = Path(__file__).parent / "catalogs"
BUNDLED_CATALOGS = {"samples": CATALOG_DIR / "samples.csv", "nft1000": CATALOG_DIR / "nft1000.csv"}
SOURCES = ("sample", "alchemy")

_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
_CONTRACT = re.compile(r"0x[0-9a-fA-F]{40}")


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog row; `problem` says why the row cannot be used (None when it can)."""

    slug: str
    name: str
    chain: str
    contract: str
    source: str
    split: str | None = None
    problem: str | None = None


def resolve_catalog_path(name_or_path: str) -> Path:
    """A bundled catalog by name (`samples`, `nft1000`) or a CSV path."""
    return BUNDLED_CATALOGS.get(name_or_path, Path(name_or_path))


def _entry_from_row(row: dict[str, str], default_source: str) -> CatalogEntry:
    slug = (row.get("slug") or "").strip()
    contract = (row.get("contract") or "").strip()
    source = (row.get("source") or default_source).strip()
    entry = CatalogEntry(
        slug=slug,
        name=(row.get("name") or slug).strip(),
        chain=(row.get("chain") or "ethereum").strip(),
        contract=contract.lower(),
        source=source,
        split=(row.get("nft1000_split") or row.get("split") or "").strip() or None,
    )
    problem = None
    if not _SLUG.fullmatch(slug):
        problem = f"invalid slug {slug!r} (lower-case letters, digits, '-', '_')"
    elif not _CONTRACT.fullmatch(contract):
        problem = f"invalid contract address {contract!r}"
    elif source not in SOURCES:
        problem = f"unknown source {source!r} (one of {', '.join(SOURCES)})"
    return entry if problem is None else CatalogEntry(**{**entry.__dict__, "problem": problem})


def load_catalog(name_or_path: str, default_source: str = "alchemy") -> list[CatalogEntry]:
    """Read a catalog; invalid rows are kept with a `problem`, duplicate slugs after the first too."""
    with resolve_catalog_path(name_or_path).open(newline="", encoding="utf-8") as f:
        entries = [_entry_from_row(row, default_source) for row in csv.DictReader(f)]
    seen: set[str] = set()
    checked = []
    for entry in entries:
        if entry.problem is None and entry.slug in seen:
            entry = CatalogEntry(**{**entry.__dict__, "problem": f"duplicate slug {entry.slug!r}"})
        seen.add(entry.slug)
        checked.append(entry)
    return checked
