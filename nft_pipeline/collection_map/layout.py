"""2-D layouts of image embeddings: fitted once, then extended with new tokens without moving anyone.

`fit_layout` picks the method by size, so every collection has a layout from one token up:

- 0 or 1 token: the point sits at the centre;
- up to `MapSettings.umap_min_points` tokens: PCA (UMAP's neighbour graph needs more points than
  neighbours, and on a handful of tokens it says nothing PCA does not);
- beyond: UMAP (cosine metric, seeded, so the same embeddings give the same map).

Coordinates are scaled into the unit square (aspect kept), so a page can draw any map the same
way.

`LayoutModel.transform` places new tokens in a fitted layout. For PCA it is the projection. For
UMAP it is the step UMAP's own `transform` starts from: each new token goes to the mean of the
layout positions of its `n_neighbors` nearest fitted tokens (cosine), weighted by UMAP's
membership strength exp(-(d - rho) / sigma). UMAP's `transform` then optimises that position
further, but its first call in a process compiles numba code and builds a search index (7-16 s
measured here for 100 tokens, against a 2 s budget), and a position near the token's nearest
neighbours is what a map needs. The model keeps the fitted tokens' embeddings and positions
(`save` / `load`, one `.npz`), so placing reads nothing else.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from nft_pipeline.collection_map.settings import MapSettings
from nft_pipeline.location import atomic_path

LayoutMethod = Literal["none", "single", "pca", "umap"]


def _unit_square(coords: np.ndarray) -> tuple[np.ndarray, float]:
    """(offset, scale) that map `coords` into [0, 1]^2, centred, aspect kept; one point goes to (0.5, 0.5)."""
    if len(coords) == 0:
        return np.full(2, 0.5), 1.0
    low, high = coords.min(axis=0), coords.max(axis=0)
    span = float((high - low).max())
    scale = 1.0 / span if span > 1e-12 else 1.0
    return 0.5 - (low + high) / 2 * scale, scale


def _pca(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the top two principal axes (rows; zero rows where the data has fewer directions)."""
    mean = vectors.mean(axis=0)
    components = np.zeros((2, vectors.shape[1]), dtype=np.float64)
    if len(vectors) > 1:
        _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
        components[: min(2, len(vt))] = vt[:2]
        # A sign fixed by the data, not by the SVD routine: the largest loading of each axis is positive.
        signs = np.sign(components[np.arange(2), np.abs(components).argmax(axis=1)])
        components *= np.where(signs == 0, 1.0, signs)[:, None]
    return mean, components


def cosine_neighbours(queries: np.ndarray, points: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine distances of the `k` nearest `points` of each query (both L2-normalised), nearest first."""
    k = min(k, len(points))
    indices = np.empty((len(queries), k), dtype=np.int64)
    distances = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        similarity = queries[start : start + chunk] @ points.T
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k] if k < len(points) else np.tile(np.arange(k), (len(similarity), 1))
        top_similarity = np.take_along_axis(similarity, top, axis=1)
        order = np.argsort(-top_similarity, axis=1, kind="stable")
        indices[start : start + chunk] = np.take_along_axis(top, order, axis=1)
        distances[start : start + chunk] = 1.0 - np.take_along_axis(top_similarity, order, axis=1)
    return indices, distances


def _membership_weights(distances: np.ndarray) -> np.ndarray:
    """UMAP's fuzzy membership exp(-(d - rho) / sigma) per row, rho the nearest distance; sigma here the
    mean gap to rho (UMAP solves for it by bisection; the ordering of weights is what placing needs)."""
    rho = distances[:, :1]
    gaps = np.maximum(distances - rho, 0.0)
    sigma = np.maximum(gaps.mean(axis=1, keepdims=True), 1e-6)
    return np.exp(-gaps / sigma)


@dataclass
class LayoutModel:
    """A fitted layout: how it was made, the fitted tokens' embeddings and unit-square positions, and
    (PCA) the projection. `version` names the layout: a digest of the method, settings and inputs."""

    method: LayoutMethod
    embeddings: np.ndarray  # N x D float32, L2-normalised, the fitted tokens in `coords` order
    coords: np.ndarray  # N x 2 float64 in the unit square
    pca_mean: np.ndarray
    pca_components: np.ndarray  # 2 x D
    offset: np.ndarray  # unit-square transform of the raw layout: raw * scale + offset
    scale: float
    n_neighbors: int
    space: str  # the embedding space (model run id) the fitted embeddings come from
    version: str

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Unit-square positions for new tokens (L2-normalised rows); fitted positions never change."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) == 0:
            return np.zeros((0, 2))
        if self.method in ("pca", "single"):
            raw = (vectors - self.pca_mean) @ self.pca_components.T
            return raw * self.scale + self.offset
        if self.method == "none":
            return np.full((len(vectors), 2), 0.5)
        indices, distances = cosine_neighbours(vectors, self.embeddings, self.n_neighbors)
        weights = _membership_weights(distances)
        weights /= weights.sum(axis=1, keepdims=True)
        return np.einsum("nk,nkc->nc", weights, self.coords[indices])

    def save(self, path: Path) -> Path:
        with atomic_path(path) as tmp, tmp.open("wb") as handle:
            np.savez(
                handle, method=self.method, embeddings=self.embeddings, coords=self.coords,
                pca_mean=self.pca_mean, pca_components=self.pca_components, offset=self.offset,
                scale=self.scale, n_neighbors=self.n_neighbors, space=self.space, version=self.version,
            )  # fmt: skip
        return path

    @classmethod
    def load(cls, path: Path) -> LayoutModel:
        with np.load(path, allow_pickle=False) as stored:
            return cls(
                method=str(stored["method"]), embeddings=stored["embeddings"], coords=stored["coords"],
                pca_mean=stored["pca_mean"], pca_components=stored["pca_components"], offset=stored["offset"],
                scale=float(stored["scale"]), n_neighbors=int(stored["n_neighbors"]), space=str(stored["space"]),
                version=str(stored["version"]),
            )  # fmt: skip


def layout_method(count: int, settings: MapSettings) -> LayoutMethod:
    if count == 0:
        return "none"
    if count == 1:
        return "single"
    return "pca" if count < settings.umap_min_points else "umap"


def layout_version(method: LayoutMethod, vectors: np.ndarray, settings: MapSettings, space: str) -> str:
    """A digest of everything the layout depends on: rerunning the same fit names the same version."""
    digest = hashlib.sha256(f"{method}|{settings.layout_key()}|{space}|".encode())
    digest.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return digest.hexdigest()[:12]


def _umap(vectors: np.ndarray, settings: MapSettings) -> np.ndarray:
    import umap  # heavy (numba): only when a layout is fitted

    n_neighbors = min(settings.n_neighbors, len(vectors) - 1)
    # Exact neighbours (one matrix product) up to `exact_knn_max_points`: they are better than
    # NN-descent's, and skipping NN-descent skips its numba compile, which is most of the first
    # fit's cost in a fresh process (a Dagster run): 15 -> 8 CPU s for 1,000 punks (docs/map.md).
    precomputed = None
    if len(vectors) <= settings.exact_knn_max_points:
        indices, distances = cosine_neighbours(vectors, vectors, n_neighbors)
        precomputed = (indices, np.maximum(distances, 0.0), None)
    reducer = umap.UMAP(
        n_components=2,
        metric="cosine",
        n_neighbors=n_neighbors,
        min_dist=settings.min_dist,
        random_state=settings.seed,
        n_jobs=1,  # a seed makes UMAP single-threaded anyway; saying so silences its warning
        low_memory=True,
        precomputed_knn=precomputed or (None, None, None),
    )
    with warnings.catch_warnings():
        # With precomputed neighbours UMAP warns that `transform` would be unavailable; placing uses
        # `LayoutModel.transform` instead (module docstring).
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        return reducer.fit_transform(vectors).astype(np.float64)


def fit_layout(vectors: np.ndarray, settings: MapSettings, space: str = "") -> LayoutModel:
    """The layout of `vectors` (N x D, finite, L2-normalised), its method chosen by N (module docstring).
    `space` names the embedding space (the model run id), so another model's layout is another version."""
    vectors = np.asarray(vectors, dtype=np.float32)
    method = layout_method(len(vectors), settings)
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    mean, components = _pca(vectors) if len(vectors) else (np.zeros(dim), np.zeros((2, dim)))
    if method == "umap":
        raw = _umap(vectors, settings)
    else:
        raw = (vectors - mean) @ components.T if len(vectors) else np.zeros((0, 2))
    offset, scale = _unit_square(raw)
    return LayoutModel(
        method=method,
        embeddings=vectors,
        coords=np.clip(raw * scale + offset, 0.0, 1.0),  # exactly inside despite rounding
        pca_mean=mean,
        pca_components=components,
        offset=offset,
        scale=scale,
        n_neighbors=settings.n_neighbors,
        space=space,
        version=layout_version(method, vectors, settings, space),
    )


def neighbourhood_preservation(vectors: np.ndarray, coords: np.ndarray, k: int = 10) -> float:
    """Mean share of each token's k nearest neighbours in embedding space (cosine) that are also among
    its k nearest on the map (Euclidean): 1 is a perfect map, k / (N - 1) what a random layout scores."""
    count = len(vectors)
    k = min(k, count - 1)
    if k < 1:
        return 1.0
    high, _ = cosine_neighbours(vectors, vectors, k + 1)
    low = np.empty((count, k + 1), dtype=np.int64)
    for start in range(0, count, 512):
        block = coords[start : start + 512]
        distances = ((block[:, None, :] - coords[None, :, :]) ** 2).sum(axis=-1)
        low[start : start + 512] = np.argpartition(distances, k, axis=1)[:, : k + 1]
    shared = [len((set(h) & set(l)) - {i}) for i, (h, l) in enumerate(zip(high.tolist(), low.tolist(), strict=True))]
    return float(np.mean(shared) / k)
