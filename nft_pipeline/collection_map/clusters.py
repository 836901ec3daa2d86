"""Clusters of a map and their names: HDBSCAN on the map's 2-D positions, labelled by lift of traits.

Clustering the positions (not the embeddings) makes the clusters the groups a person sees on the
map. HDBSCAN needs no cluster count and leaves scattered tokens unclustered (-1), so islands of
the map become clusters and the sea between them does not.

A cluster is named after the traits most over-represented in it: for each trait, its share in the
cluster over its share in the whole map (lift). Only traits held by at least `label_min_share` of
the cluster qualify, so a rare trait that three tokens of a cluster happen to share does not name
it; then the highest lifts win, e.g. "Zombie · Hoodie (31)": the two traits, and the cluster size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nft_pipeline.collection_map.settings import MapSettings

NOISE = -1


@dataclass(frozen=True)
class TraitLift:
    trait: str  # the value as the collection writes it ("Hoodie")
    trait_type: str | None
    count: int  # tokens of the cluster with it
    share: float  # of the cluster
    lift: float  # share in the cluster / share in the map


@dataclass(frozen=True)
class Cluster:
    cluster: int
    size: int
    label: str
    centre: tuple[float, float]
    traits: tuple[TraitLift, ...]  # the traits in the label, highest lift first


def find_clusters(coords: np.ndarray, settings: MapSettings) -> np.ndarray:
    """A cluster id per position (NOISE for none); all NOISE when there are too few positions to cluster."""
    count = len(coords)
    min_size = settings.cluster_size_for(count)
    if count < 2 * min_size:
        return np.full(count, NOISE, dtype=np.int32)
    from sklearn.cluster import HDBSCAN  # heavy: only when clustering

    return HDBSCAN(min_cluster_size=min_size, copy=True).fit_predict(coords).astype(np.int32)


def nearest_cluster(coords: np.ndarray, fitted_coords: np.ndarray, fitted_clusters: np.ndarray) -> np.ndarray:
    """Placed tokens join the cluster of the fitted token nearest them on the map (clusters are not refitted)."""
    if len(coords) == 0 or len(fitted_coords) == 0:
        return np.full(len(coords), NOISE, dtype=np.int32)
    nearest = np.array([((fitted_coords - point) ** 2).sum(axis=1).argmin() for point in coords])
    return fitted_clusters[nearest].astype(np.int32)


TraitSet = Sequence[tuple[str | None, str]]  # a token's (trait_type, value) pairs


def label_clusters(
    clusters: np.ndarray, coords: np.ndarray, traits: Sequence[TraitSet], settings: MapSettings
) -> dict[int, Cluster]:
    """Each cluster (NOISE excluded) with its size, centre and label from its most over-represented traits."""
    overall = Counter(pair for token in traits for pair in set(token))
    total = len(traits)
    named = {}
    for cluster in sorted(set(clusters.tolist()) - {NOISE}):
        members = np.flatnonzero(clusters == cluster)
        counts = Counter(pair for index in members for pair in set(traits[index]))
        lifts = [
            TraitLift(value, trait_type, count, count / len(members), (count / len(members)) / (overall[(trait_type, value)] / total))
            for (trait_type, value), count in counts.items()
            if count / len(members) >= settings.label_min_share
        ]
        top = tuple(sorted(lifts, key=lambda t: (-t.lift, -t.count, t.trait))[: settings.label_traits])
        name = " · ".join(t.trait for t in top) if top else f"Cluster {cluster + 1}"
        centre = coords[members].mean(axis=0)
        named[cluster] = Cluster(cluster, len(members), f"{name} ({len(members)})", (float(centre[0]), float(centre[1])), top)
    return named
