"""Clone detection: tokens of one collection that copy a token of another, grouped with their original.

Two steps, so that most pairs are never compared in full:

1. Signatures, per collection (`collection_signatures`): each standardized image's perceptual hash
   and aligned thumbnail (`signature.py`). This is the per-token cost (reading the PNG); a
   collection whose images did not change keeps its stored signatures (`cached_signatures`: the
   input fingerprint in the Parquet footer, as `versions.py` describes).
2. Groups, across collections (`clone_rows`): a token's candidate originals are the tokens of the
   collections listed before its own (catalog order) whose hash is within `max_hamming` bits of
   its own (XOR and popcount over 64-bit integers, chunked: cheap); a candidate is a match when the
   cosine of their aligned thumbnails is at least `min_cosine`. Both limits were measured on copies
   whose original is known (docs/benchmarks.md, "Clone detection"). A token with matches copies
   the best of them; a chain (a copy of a copy) is followed to its root, the likely original: the
   earliest, by the catalog's order of collections. Neither the catalog nor the sources give mint
   blocks or times here, so the catalog order stands for age; within a collection, ids are not
   compared (a copy joins the one original it matches best).

Within a collection nothing is grouped: identical images inside one collection are the
`token_audit`'s `duplicate_image` flag. A group is a star (an original and the copies that matched
it), never a chain of look-alikes: two distinct punks that differ by an earring never join one
group through a copy that resembles both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nft_pipeline.classify.signature import BLUR_CELLS, GRID, SIGNATURE_DIM, read_signature
from nft_pipeline.storage import DataLayout, read_table, write_table
from nft_pipeline.versions import fingerprint, stored_fingerprint, table_fingerprint, with_fingerprint

SIGNATURES_CODE_VERSION = "3"  # change when `signature.py` changes what it computes
CLONES_CODE_VERSION = "3"  # change when `clone_rows` changes what it computes

CLONE_SIGNATURES = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("token_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # ok | no_image | unreadable
        pa.field("phash", pa.uint64()),
        pa.field("grid", pa.list_(pa.float16(), SIGNATURE_DIM)),  # the aligned grid, not yet smoothed
    ]
)
CLONES = pa.schema(
    [
        pa.field("group_id", pa.string(), nullable=False),  # "<collection>/<token id>" of the original
        pa.field("collection", pa.string(), nullable=False),
        pa.field("token_id", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),  # original | copy
        pa.field("original_collection", pa.string(), nullable=False),
        pa.field("original_token_id", pa.string(), nullable=False),
        pa.field("matched_collection", pa.string()),  # what a copy matched (the original, or a copy of it)
        pa.field("matched_token_id", pa.string()),
        pa.field("cosine", pa.float32()),  # aligned-thumbnail cosine to the matched token (copies)
        pa.field("hamming", pa.int16()),  # hash bits differing from the matched token (copies)
    ]
)


@dataclass(frozen=True)
class CloneSettings:
    max_hamming: int = 12  # candidate pairs: hashes at most this many bits apart
    min_cosine: float = 0.915  # a match: aligned thumbnails at least this similar
    threads: int = 2  # image reading
    chunk_rows: int = 1024  # tokens compared against everything at once (memory: rows x N bytes)


def collection_signatures(collection: str, images: pa.Table, files: Callable[[str], object], threads: int = 2) -> pa.Table:
    """One CLONE_SIGNATURES row per token of a `standardized_images` table."""
    rows = images.select(["token_id", "status", "png_path"]).to_pylist()
    ok = [r for r in rows if r["status"] == "ok" and r["png_path"]]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        signatures = dict(zip((r["token_id"] for r in ok), pool.map(read_signature, [files(r["png_path"]) for r in ok]), strict=True))
    out = []
    for row in rows:
        token = row["token_id"]
        if token not in signatures:
            out.append({"collection": collection, "token_id": token, "status": "no_image", "phash": None, "grid": None})
        elif signatures[token] is None:
            out.append({"collection": collection, "token_id": token, "status": "unreadable", "phash": None, "grid": None})
        else:
            phash, grid = signatures[token]
            out.append({"collection": collection, "token_id": token, "status": "ok", "phash": phash, "grid": grid.reshape(-1).astype(np.float16)})
    return pa.Table.from_pylist(out, schema=CLONE_SIGNATURES)


@dataclass(frozen=True)
class Signatures:
    table: pa.Table
    fingerprint: str  # of the standardized images they were computed from
    computed: bool  # False: the stored ones were still current


def cached_signatures(layout: DataLayout, collection: str, images: pa.Table, threads: int = 2) -> Signatures:
    """The collection's signatures: the stored ones while they match its standardized images (by the
    fingerprint of their token ids and PNG digests), else computed now and stored."""
    path = layout.partition_path("clone_signatures", collection)
    wanted = fingerprint(SIGNATURES_CODE_VERSION, table_fingerprint(images, ["token_id", "status", "png_sha256"]))
    if stored_fingerprint(path) == wanted:
        return Signatures(read_table(path, CLONE_SIGNATURES), wanted, False)
    table = collection_signatures(collection, images, layout.file, threads)
    write_table(with_fingerprint(table, wanted), path, CLONE_SIGNATURES)
    return Signatures(table, wanted, True)


def clones_fingerprint(signatures: Sequence[Signatures], settings: CloneSettings) -> str:
    """What `clone_rows` depends on: the collections in order, their signatures' fingerprints, the settings."""
    limits = {k: v for k, v in asdict(settings).items() if k in ("max_hamming", "min_cosine")}
    return fingerprint(CLONES_CODE_VERSION, [s.fingerprint for s in signatures], limits)


def thumbnail_vectors(grids: np.ndarray) -> np.ndarray:
    """N x SIGNATURE_DIM aligned grids -> the aligned thumbnails: smoothed by `BLUR_CELLS`, unit vectors."""
    from scipy.ndimage import gaussian_filter

    cube = grids.astype(np.float32).reshape(-1, GRID, GRID, 3)
    flat = gaussian_filter(cube, (0, BLUR_CELLS, BLUR_CELLS, 0)).reshape(len(cube), -1)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-6)


@dataclass(frozen=True)
class Match:
    row: int  # the candidate original's row
    cosine: float
    hamming: int


def best_matches(ranks: np.ndarray, hashes: np.ndarray, grids: np.ndarray, settings: CloneSettings) -> dict[int, Match]:
    """Row -> its best match among rows of earlier collections: candidates by hash, kept and ranked
    by thumbnail cosine."""
    vectors = thumbnail_vectors(grids)
    matches: dict[int, Match] = {}
    for start in range(0, len(ranks), settings.chunk_rows):
        rows = np.arange(start, min(start + settings.chunk_rows, len(ranks)))
        earlier = ranks[None, :] < ranks[rows, None]
        if not earlier.any():
            continue
        bits = np.bitwise_count(hashes[rows, None] ^ hashes[None, :])
        chunk_rows, candidates = np.nonzero(earlier & (bits <= settings.max_hamming))
        if not len(candidates):
            continue
        cosines = np.einsum("ij,ij->i", vectors[rows[chunk_rows]], vectors[candidates])
        keep = cosines >= settings.min_cosine
        for local, candidate, cosine in zip(chunk_rows[keep], candidates[keep], cosines[keep], strict=True):
            row = int(rows[local])
            if row not in matches or cosine > matches[row].cosine:
                matches[row] = Match(int(candidate), float(cosine), int(bits[local, candidate]))
    return matches


def clone_rows(signature_tables: Sequence[pa.Table], settings: CloneSettings = CloneSettings()) -> pa.Table:
    """The CLONES table of collections given in catalog order (see the module docstring)."""
    collections, tokens, ranks, hashes, grids = [], [], [], [], []
    for rank, table in enumerate(signature_tables):
        ok = table.filter(pc.equal(table["status"], "ok"))
        if not ok.num_rows:
            continue
        collections += ok["collection"].to_pylist()
        tokens += ok["token_id"].to_pylist()
        ranks.append(np.full(ok.num_rows, rank, np.int32))
        hashes.append(ok["phash"].to_numpy())
        grids.append(ok["grid"].combine_chunks().values.to_numpy(zero_copy_only=False).reshape(-1, SIGNATURE_DIM))
    if not ranks:
        return CLONES.empty_table()
    ranks_all, hashes_all = np.concatenate(ranks), np.concatenate(hashes).astype(np.uint64)
    matches = best_matches(ranks_all, hashes_all, np.concatenate(grids).astype(np.float32), settings)

    def root(row: int) -> int:
        while row in matches:  # ranks fall along a chain: it ends
            row = matches[row].row
        return row

    by_root: dict[int, list[int]] = {}
    for row in sorted(matches):
        by_root.setdefault(root(row), []).append(row)
    out = []
    for original, copies in sorted(by_root.items()):
        group = f"{collections[original]}/{tokens[original]}"
        common = {"group_id": group, "original_collection": collections[original], "original_token_id": tokens[original]}
        out.append({**common, "collection": collections[original], "token_id": tokens[original], "role": "original",
                    "matched_collection": None, "matched_token_id": None, "cosine": None, "hamming": None})
        for row in copies:
            match = matches[row]
            out.append({**common, "collection": collections[row], "token_id": tokens[row], "role": "copy",
                        "matched_collection": collections[match.row], "matched_token_id": tokens[match.row],
                        "cosine": match.cosine, "hamming": match.hamming})
    return pa.Table.from_pylist(out, schema=CLONES)


def copies_per_collection(clones: pa.Table, collections: Sequence[str]) -> list[dict]:
    """Per collection (in the given order): its tokens that copy another collection's, its tokens
    copied by others, and the collection copied most."""
    rows = clones.select(["collection", "role", "original_collection"]).to_pylist()
    copies = Counter(r["collection"] for r in rows if r["role"] == "copy")
    originals = Counter(r["collection"] for r in rows if r["role"] == "original")
    sources: dict[str, Counter] = {}
    for r in rows:
        if r["role"] == "copy":
            sources.setdefault(r["collection"], Counter())[r["original_collection"]] += 1
    return [
        {"collection": c, "copies_of_others": copies[c], "copied_originals": originals[c],
         "copies_most": sources[c].most_common(1)[0][0] if c in sources else None}
        for c in collections
    ]



@dataclass(frozen=True)
class CloneAccuracy:
    copies: int
    found: int  # copies grouped with the token they copy (as its copy)
    groups: int
    false_groups: int  # groups holding a token that does not show the original's picture
    falsely_grouped_originals: int  # tokens of the original collection in a false group

    @property
    def found_share(self) -> float:
        return self.found / self.copies if self.copies else 0.0


def clone_accuracy(clones: pa.Table, truth: dict[tuple[str, str], tuple[str, str]]) -> CloneAccuracy:
    """`clones` scored against ground truth: copy key -> the key of the token it copies. A group is
    false when any member is neither its original nor a true copy of it."""
    rows = clones.to_pylist()
    found = sum(1 for r in rows if r["role"] == "copy" and truth.get((r["collection"], r["token_id"])) == (r["original_collection"], r["original_token_id"]))
    false = {r["group_id"] for r in rows if r["role"] == "copy" and truth.get((r["collection"], r["token_id"])) != (r["original_collection"], r["original_token_id"])}
    originals = sum(1 for r in rows if r["role"] == "original" and r["group_id"] in false)
    return CloneAccuracy(len(truth), found, len({r["group_id"] for r in rows}), len(false), originals)


@dataclass(frozen=True)
class CloneLabels:
    """The `clones` groups aligned with the rows of a search index version."""

    groups: np.ndarray  # per row: its group number, -1 outside every group
    originals: set[tuple[str, str]]  # (collection, token id) of each group's likely original

    @classmethod
    def load(cls, layout: DataLayout, collections: Sequence[str], token_ids: Sequence[str]) -> CloneLabels | None:
        """None when there is no `clones` table (search then collapses identical pictures only)."""
        path = layout.table_path("clones")
        if not path.exists():
            return None
        rows = read_table(path, CLONES).select(["group_id", "collection", "token_id", "role"]).to_pylist()
        number = {group: i for i, group in enumerate(dict.fromkeys(r["group_id"] for r in rows))}
        of_token = {(r["collection"], r["token_id"]): number[r["group_id"]] for r in rows}
        groups = np.fromiter((of_token.get(key, -1) for key in zip(collections, token_ids, strict=True)), np.int64, len(collections))
        return cls(groups, {(r["collection"], r["token_id"]) for r in rows if r["role"] == "original"})
