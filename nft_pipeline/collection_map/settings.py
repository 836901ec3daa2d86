"""Every knob of the collection map in one place (the `collection_map` asset's config derives from it)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class MapSettings:
    """How maps are laid out, clustered, extended and drawn.

    `refit_placed_share`: a refresh places new tokens into the existing layout (nobody moves) while
    placed tokens stay at most this share of the map; past it the layout is fitted again from all
    tokens and gets a new `layout_version` (placed tokens sit where their neighbours are, but they
    did not shape the layout, so a map made mostly of them would stop showing their structure).
    """

    seed: int = 0
    n_neighbors: int = 15
    min_dist: float = 0.1
    umap_min_points: int = 50  # fewer tokens: PCA (layout.py)
    exact_knn_max_points: int = 15_000  # UMAP's neighbours by one matrix product up to here, NN-descent beyond
    refit_placed_share: float = 0.2
    min_cluster_size: int = 0  # 0: about sqrt(N) / 2, at least 5 (`cluster_size_for`)
    label_traits: int = 2  # traits named in a cluster label
    label_min_share: float = 0.3  # a trait names a cluster only if this share of its tokens has it
    thumbnail_px: int = 32
    atlas_columns: int = 64  # thumbnails per sheet row: 64 x 32 px = a 2048 px sheet of 4,096 tokens

    def layout_key(self) -> str:
        """What a layout depends on, for its version digest (clustering and drawing knobs excluded)."""
        return f"seed={self.seed},nn={self.n_neighbors},md={self.min_dist},umin={self.umap_min_points},exact={self.exact_knn_max_points}"

    def cluster_size_for(self, count: int) -> int:
        return self.min_cluster_size or max(5, round(math.sqrt(count) / 2))
