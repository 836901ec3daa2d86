"""Ranking and fusion: which tokens answer a query, in what order, with facet counts and duplicates collapsed.

`RankingIndex` holds, for one index version, what ranking needs as arrays aligned with the rows
of `HitDetails`: each row's collection, its trait ids (from the caption tags), its image
embedding, and a near-duplicate group. Every query is then a few vectorised numpy operations over
at most ~10^5-10^6 rows (a matrix-vector product, boolean masks, one sort), never a Python loop
over rows: on the demo index (11,600 tokens) that is well under a millisecond (docs/search.md).

Ranking with understood traits (the default mode): the query's text embedding gives every row a
cosine similarity; each positive trait chip is a constraint; a row's key is (number of constraints
it meets, similarity). Rows meeting all constraints therefore come first, ranked by similarity,
and rows meeting fewer only fill the page when fewer than k tokens meet them all (the "strong
boost" relaxation). Filters (`trait=`, `not_trait=`, a collection, a negated chip) are hard.

Hybrid mode fuses the vector ranking with a BM25 caption ranking by reciprocal rank fusion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from nft_pipeline.query import Chip, TraitRef, TraitVocabulary, fold

RRF_K = 60  # the constant of Cormack et al.; damps the difference between the first few ranks
DUPLICATE_DECIMALS = 2  # embeddings equal to 2 decimals in every dimension: the same picture (cosine > 0.999)
FACET_VALUES_PER_TYPE = 25  # values listed per trait type, most frequent in the current set first

TokenKey = tuple[str, str]


def reciprocal_rank_fusion(rankings: Sequence[Sequence[TokenKey]], k: int = RRF_K) -> dict[TokenKey, float]:
    """Sum over rankings of 1 / (k + rank), rank starting at 1; a key absent from a ranking gets nothing from it."""
    scores: dict[TokenKey, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return scores


def filter_key(trait_type: str | None, value: str) -> str:
    """How a TYPE=VALUE filter is compared: case, accents and spacing folded."""
    return f"{' '.join(fold(trait_type or '').split())}={' '.join(fold(value).split())}"


@dataclass(frozen=True)
class Ranked:
    """One page of a ranking: row numbers in order, with what the whole result set holds."""

    rows: np.ndarray  # row numbers of this page, best first
    similarities: np.ndarray  # cosine similarity of each page row to the query
    met: np.ndarray  # page rows x constraints: which constraints each row meets
    duplicates: np.ndarray  # per page row: how many rows of the result set it stands for (1 = unique)
    total: int  # rows passing the hard filters (after collapsing, if asked)
    exact: int  # of those, rows meeting every constraint
    collapsed: list[np.ndarray] | None = None  # per page row (when collapsing): the other rows it stands for, best first


def merged_groups(groups: np.ndarray, other: np.ndarray) -> np.ndarray:
    """One group number per row joining two groupings (`other` -1: no group there): rows share a
    group when either grouping links them, directly or through other rows."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(groups)
    linked = np.flatnonzero(other >= 0)
    # Nodes: the rows, then one per group of `groups`, then one per group of `other`.
    sources = np.concatenate([np.arange(n), linked])
    targets = np.concatenate([n + groups, n + groups.max(initial=-1) + 1 + other[linked]])
    size = n + groups.max(initial=-1) + 2 + other.max(initial=-1)
    graph = coo_matrix((np.ones(len(sources), np.int8), (sources, targets)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    return labels[:n]


class RankingIndex:
    """Per-row arrays for ranking one index version (see the module docstring)."""

    def __init__(self, collections: Sequence[str], tags: Sequence[Sequence[Mapping]], names: Sequence[str | None],
                 vectors: np.ndarray, vocabulary: TraitVocabulary, clone_groups: np.ndarray | None = None):
        self.vocabulary = vocabulary
        self.n_rows = len(collections)
        self.collection_names = sorted(set(collections))
        code = {name: i for i, name in enumerate(self.collection_names)}
        self.collection_codes = np.fromiter((code[c] for c in collections), np.int32, self.n_rows)
        per_row = [
            [vocabulary.trait_id[TraitRef(c, tag["trait_type"] or "", tag["value"])] for tag in row_tags]
            for c, row_tags in zip(collections, tags, strict=True)
        ]
        width = max((len(ids) for ids in per_row), default=0)
        self.row_traits = np.full((self.n_rows, max(width, 1)), -1, np.int32)
        for row, ids in enumerate(per_row):
            self.row_traits[row, : len(ids)] = ids
        flat_rows = np.repeat(np.arange(self.n_rows), [len(ids) for ids in per_row])
        flat_traits = np.fromiter((t for ids in per_row for t in ids), np.int32, len(flat_rows))
        order = np.argsort(flat_traits, kind="stable")
        bounds = np.searchsorted(flat_traits[order], np.arange(len(vocabulary.traits) + 1))
        self.trait_rows = [flat_rows[order[bounds[t] : bounds[t + 1]]] for t in range(len(vocabulary.traits))]
        self.traits_by_key: dict[str, list[int]] = {}
        for trait, ref in enumerate(vocabulary.traits):
            self.traits_by_key.setdefault(filter_key(ref.trait_type, ref.value), []).append(trait)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rounded = np.round(self.vectors, DUPLICATE_DECIMALS)
        _, self.duplicate_group = np.unique(rounded, axis=0, return_inverse=True)
        self.duplicate_group = self.duplicate_group.reshape(-1)
        if clone_groups is not None:  # a copy and its original (the `clones` asset) are one picture too
            self.duplicate_group = merged_groups(self.duplicate_group, clone_groups)

    @classmethod
    def from_table(cls, rows: pa.Table, vocabulary: TraitVocabulary | None = None,
                   subject_nouns: Mapping[str, str | None] | None = None,
                   tags: Sequence[Sequence[Mapping]] | None = None,
                   clone_groups: np.ndarray | None = None) -> RankingIndex:
        """From a table with collection, name, tags and vector columns (one row per token); `tags`, if
        given, stand for the table's (predicted traits added); `clone_groups`, per row, a clone group
        number or -1."""
        collections = rows["collection"].to_pylist()
        tags = rows["tags"].to_pylist() if tags is None else tags
        names = rows["name"].to_pylist()
        if vocabulary is None:
            vocabulary = TraitVocabulary.from_rows(collections, tags, names, subject_nouns)
        vector_column = rows["vector"].combine_chunks()
        dim = vector_column.type.list_size
        vectors = vector_column.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
        return cls(collections, tags, names, vectors, vocabulary, clone_groups)

    def traits_mask(self, traits: Sequence[int]) -> np.ndarray:
        """Rows carrying any of `traits`."""
        mask = np.zeros(self.n_rows, bool)
        for trait in traits:
            mask[self.trait_rows[trait]] = True
        return mask

    def filter_traits(self, text: str) -> list[int]:
        """The trait ids a `trait=` filter names: TYPE=VALUE, alternatives joined by "|"; ValueError if malformed."""
        ids: list[int] = []
        trait_type = ""
        for alternative in text.split("|"):
            name, separator, value = alternative.partition("=")
            if separator:
                trait_type = name
            else:  # "Type=Female 1|Female 2": a bare value keeps the previous type
                value = name
            if not trait_type.strip() or not value.strip():
                raise ValueError(f"trait filter {text!r} must look like TYPE=VALUE, e.g. Type=Female 2")
            ids.extend(self.traits_by_key.get(filter_key(trait_type, value), []))
        return ids

    def collection_mask(self, collections: Sequence[str]) -> np.ndarray:
        codes = [self.collection_names.index(c) for c in collections if c in self.collection_names]
        return np.isin(self.collection_codes, codes)

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        return self.vectors @ np.asarray(vector, np.float32)

    def best_collections(self, constraints: Sequence[np.ndarray], allowed: np.ndarray) -> np.ndarray:
        """`allowed` narrowed to the collections whose tokens meet the most constraints (then where most
        of them exist): "3d glasses" without a collection word is a CryptoPunks query, so the page is
        filled with punks."""
        if not constraints or not allowed.any():
            return allowed
        met_count = np.sum(constraints, axis=0)
        codes = self.collection_codes[allowed]
        best = np.zeros(len(self.collection_names), np.int64)
        np.maximum.at(best, codes, met_count[allowed])
        # Ties ("ape wearing a beanie": no token has both anywhere) go to the collections where more
        # of the traits exist at all (punks have apes and beanies; the critters only beanies).
        satisfiable = np.zeros(len(self.collection_names), np.int64)
        for mask in constraints:
            satisfiable += np.bincount(codes[mask[allowed]], minlength=len(self.collection_names)) > 0
        score = best * (len(constraints) + 1) + satisfiable
        return allowed & np.isin(self.collection_codes, np.flatnonzero(score == score.max()))

    def typicality(self, constraints: Sequence[np.ndarray], allowed: np.ndarray) -> np.ndarray:
        """Each row's cosine similarity to the mean embedding of the allowed rows meeting the most
        constraints: without query words to rank by, the most typical matches come first."""
        met_count = np.zeros(self.n_rows, np.int32)
        for mask in constraints:
            met_count += mask
        best = allowed & (met_count == (met_count[allowed].max() if allowed.any() else 0))
        centroid = self.vectors[best].mean(axis=0) if best.any() else np.zeros(self.vectors.shape[1], np.float32)
        norm = float(np.linalg.norm(centroid))
        return self.vectors @ (centroid / norm if norm else centroid)

    def rank(
        self,
        similarities: np.ndarray,
        constraints: Sequence[np.ndarray],
        allowed: np.ndarray,
        offset: int,
        limit: int,
        collapse: bool = False,
    ) -> Ranked:
        """Rows of `allowed`, most constraints met first, then most similar; the page [offset, offset+limit)."""
        met_count = np.zeros(self.n_rows, np.int32)
        for mask in constraints:
            met_count += mask
        eligible = np.flatnonzero(allowed)
        exact = int(np.count_nonzero(met_count[eligible] == len(constraints)))
        order = eligible[np.lexsort((-similarities[eligible], -met_count[eligible]))]
        duplicates = np.ones(len(order), np.int64)
        collapsed = None
        if collapse and len(order):
            uncollapsed = order
            groups = self.duplicate_group[order]
            unique_groups, first, counts = np.unique(groups, return_index=True, return_counts=True)
            keep = np.sort(first)
            duplicates = counts[np.searchsorted(unique_groups, groups[keep])]
            order = order[keep]
            exact = int(np.count_nonzero(met_count[order] == len(constraints)))
            shown = order[offset : offset + limit]
            collapsed = [uncollapsed[(groups == self.duplicate_group[row]) & (uncollapsed != row)] for row in shown]
        page = order[offset : offset + limit]
        met = np.stack([mask[page] for mask in constraints], axis=1) if constraints else np.zeros((len(page), 0), bool)
        return Ranked(page, similarities[page], met, duplicates[offset : offset + limit], len(order), exact, collapsed)

    def matched_traits(self, row: int, chips: Sequence[Chip]) -> list[dict[str, str]]:
        """The row's own trait values that `chips` name (what its hit shows outlined)."""
        named = {trait for chip in chips for trait in chip.traits}
        refs = [self.vocabulary.traits[t] for t in self.row_traits[row] if t >= 0 and t in named]
        return [{"trait_type": ref.trait_type, "value": ref.value} for ref in refs]

    def facets(self, allowed: np.ndarray, per_type: int = FACET_VALUES_PER_TYPE) -> list[dict]:
        """Per (collection, trait type), the values carried in `allowed` rows with their counts, most first."""
        ids = self.row_traits[allowed].ravel()
        counts = np.bincount(ids[ids >= 0], minlength=len(self.vocabulary.traits))
        groups: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for trait in np.flatnonzero(counts):
            ref = self.vocabulary.traits[trait]
            groups.setdefault((ref.collection, ref.trait_type), []).append((int(counts[trait]), int(trait)))
        facets = []
        for (collection, trait_type), values in sorted(groups.items()):
            values.sort(key=lambda item: (-item[0], self.vocabulary.traits[item[1]].value))
            facets.append({
                "collection": collection,
                "trait_type": trait_type,
                "values": [
                    {"value": self.vocabulary.traits[t].value, "count": c,
                     "filter": self.vocabulary.traits[t].filter_key}
                    for c, t in values[:per_type]
                ],
                "more": max(0, len(values) - per_type),
            })
        return facets
