"""One map: a layout, clusters and thumbnails for a set of embedded tokens, extended incrementally.

`build_map` is what the `collection_map` asset runs for a collection (or for everything indexed,
`ALL_MAP`). Given the tokens' embeddings and the map's previous table it either

- places the tokens that are new since the previous map with the fitted layout's `transform`
  (existing tokens keep their coordinates exactly, `layout_version` stays), or
- fits the layout again from every token, when there is no usable previous layout (none yet,
  its model file gone, embeddings of another model) or the placed tokens would pass
  `MapSettings.refit_placed_share` of the map; the new layout has a new `layout_version`.

Tokens whose embedding is not a finite, non-zero vector get a row with status `invalid_embedding`
and no position, never an exception; an empty map is an empty table. `MapBuild.notes` says in
words what happened (the method and why, whether clusters were found).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nft_pipeline.collection_map.atlas import NO_SLOT, atlas_path, build_atlases
from nft_pipeline.collection_map.clusters import NOISE, Cluster, TraitSet, find_clusters, label_clusters, nearest_cluster
from nft_pipeline.collection_map.layout import LayoutModel, fit_layout, neighbourhood_preservation
from nft_pipeline.collection_map.settings import MapSettings
from nft_pipeline.storage import safe_name

ALL_MAP = "__all__"  # the combined map of every indexed collection
MODELS_DIR = Path("maps") / "models"  # under the data directory: <map>/<layout_version>.npz
SCORE_SAMPLE = 10_000  # tokens the neighbourhood score is computed on (exact k-NN is quadratic)

COLLECTION_MAP = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("token_id", pa.string(), nullable=False),
        pa.field("x", pa.float64()),  # unit square; null when status is not ok
        pa.field("y", pa.float64()),
        pa.field("cluster", pa.int32(), nullable=False),  # -1: in no cluster
        pa.field("cluster_label", pa.string()),
        pa.field("layout_version", pa.string(), nullable=False),
        pa.field("placement", pa.string(), nullable=False),  # fitted | placed | none
        pa.field("status", pa.string(), nullable=False),  # ok | invalid_embedding
        pa.field("reason", pa.string()),
        pa.field("atlas", pa.string()),  # sha256 of the thumbnail sheet (atlas.py); null: no thumbnail
        pa.field("atlas_slot", pa.int32(), nullable=False),  # -1: no thumbnail
    ]
)


@dataclass(frozen=True)
class MapInput:
    """The tokens of one map: keys, embeddings (rows may be invalid), traits, images, and the embedding space."""

    collection: list[str]
    token_id: list[str]
    vectors: np.ndarray  # N x D float32
    traits: list[TraitSet]
    png_path: list[str | None]
    space: str  # the model run id the vectors come from

    def __len__(self) -> int:
        return len(self.token_id)

    def keys(self) -> list[tuple[str, str]]:
        return list(zip(self.collection, self.token_id, strict=True))


@dataclass
class MapBuild:
    table: pa.Table  # COLLECTION_MAP rows
    clusters: dict[int, Cluster]
    layout: LayoutModel
    refit: bool
    placed_now: int  # tokens placed by this build (0 after a refit)
    neighbourhood_score: float | None  # of the fitted tokens; None when not refitted
    notes: list[str] = field(default_factory=list)


def model_path(data_dir: Path, map_name: str, version: str) -> Path:
    return Path(data_dir) / MODELS_DIR / safe_name(map_name) / f"{version}.npz"


def valid_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which rows are finite non-zero vectors, and all rows L2-normalised (invalid ones left as zeros)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.size == 0:
        return np.zeros(len(vectors), dtype=bool), np.zeros((len(vectors), vectors.shape[-1] if vectors.ndim == 2 else 0), np.float32)
    norms = np.linalg.norm(np.nan_to_num(vectors, nan=0.0, posinf=0.0, neginf=0.0), axis=1)
    valid = np.isfinite(vectors).all(axis=1) & (norms > 1e-6)
    normalised = np.zeros_like(vectors)
    normalised[valid] = vectors[valid] / norms[valid, None]
    return valid, normalised


def _previous_layout(previous: pa.Table, data_dir: Path, map_name: str, space: str) -> tuple[LayoutModel | None, str]:
    """The layout the previous table was placed in, if it can be extended; else None and why not."""
    fitted = previous.filter(pc.equal(previous["status"], "ok"))
    if fitted.num_rows == 0:
        return None, "no previous map"
    version = fitted["layout_version"][0].as_py()
    path = model_path(data_dir, map_name, version)
    if not path.exists():
        return None, f"the layout file of version {version} is missing"
    model = LayoutModel.load(path)
    if model.space != space:
        return None, f"the embeddings come from another model ({space}, the layout from {model.space})"
    return model, ""


def _coords_of(previous: pa.Table) -> dict[tuple[str, str], tuple[float, float, int, str]]:
    ok = previous.filter(pc.equal(previous["status"], "ok"))
    return {
        (c, t): (x, y, cluster, placement)
        for c, t, x, y, cluster, placement in zip(
            *(ok[name].to_pylist() for name in ("collection", "token_id", "x", "y", "cluster", "placement")), strict=True
        )
    }


def _thumbnails(
    tokens: MapInput, valid: np.ndarray, previous: pa.Table, data_dir: Path, settings: MapSettings
) -> tuple[list[str | None], list[int]]:
    """Each token's atlas and slot: kept from `previous` where its sheet still exists, new sheets for
    the rest (so placing 100 tokens makes one small sheet, not the whole atlas again)."""
    kept = {
        (c, t): (a, s)
        for c, t, a, s in zip(*(previous[n].to_pylist() for n in ("collection", "token_id", "atlas", "atlas_slot")), strict=True)
        if a and atlas_path(data_dir, a).exists()
    }
    keys = tokens.keys()
    missing = [i for i in range(len(tokens)) if valid[i] and keys[i] not in kept]
    made = build_atlases(data_dir, [tokens.png_path[i] for i in missing], settings)
    for i, a, s in zip(missing, made.atlas, made.slot, strict=True):
        kept[keys[i]] = (a or None, s)
    return [kept.get(key, (None, NO_SLOT))[0] if valid[i] else None for i, key in enumerate(keys)], [
        kept.get(key, (None, NO_SLOT))[1] if valid[i] else NO_SLOT for i, key in enumerate(keys)
    ]


def build_map(
    tokens: MapInput, previous: pa.Table, data_dir: Path, map_name: str, settings: MapSettings = MapSettings()
) -> MapBuild:
    """The map of `tokens`, extending `previous` (its COLLECTION_MAP table; empty for none) where it can.

    Writes the layout model and the thumbnail sheets under `data_dir`; the caller writes the table.
    """
    valid, vectors = valid_rows(tokens.vectors)
    good = np.flatnonzero(valid)
    notes = []
    if len(good) < len(tokens):
        notes.append(f"{len(tokens) - len(good)} tokens have no usable embedding (NaN, infinite or zero): not on the map")
    keys = tokens.keys()
    model, why = _previous_layout(previous, data_dir, map_name, tokens.space)
    known = _coords_of(previous) if model is not None else {}
    new = [i for i in good if keys[i] not in known]
    placed_before = sum(1 for i in good if keys[i] in known and known[keys[i]][3] == "placed")
    share = (placed_before + len(new)) / len(good) if len(good) else 0.0
    refit = model is None or share > settings.refit_placed_share
    coords = np.full((len(tokens), 2), np.nan)
    clusters = np.full(len(tokens), NOISE, dtype=np.int32)
    placement = np.array(["none"] * len(tokens), dtype=object)
    score = None
    if refit:
        notes.append(f"fitted a new layout ({why or f'placed tokens would be {share:.0%} of the map'})")
        model = fit_layout(vectors[good], settings, tokens.space)
        coords[good] = model.coords
        placement[good] = "fitted"
        clusters[good] = find_clusters(model.coords, settings)
        sample = good[: SCORE_SAMPLE]
        score = neighbourhood_preservation(vectors[sample], coords[sample]) if len(sample) > 1 else None
        model.save(model_path(data_dir, map_name, model.version))
    else:
        notes.append(f"placed {len(new)} new tokens in layout {model.version} (placed share {share:.0%})")
        for i in good:
            if keys[i] in known:
                x, y, cluster, was = known[keys[i]]
                coords[i], clusters[i], placement[i] = (x, y), cluster, was
        new_index = np.asarray(new, dtype=np.int64)
        coords[new_index] = model.transform(vectors[new_index])
        placement[new_index] = "placed"
        old = np.setdiff1d(good, new_index)
        clusters[new_index] = nearest_cluster(coords[new_index], coords[old], clusters[old])
    notes.append(f"{model.method} layout of {len(good)} token{'' if len(good) == 1 else 's'}" + (" (too few for UMAP)" if model.method == "pca" else ""))
    named = label_clusters(clusters[good], coords[good], [tokens.traits[i] for i in good], settings)
    if not named:
        notes.append(f"no clusters: {len(good)} tokens, clusters need at least {settings.cluster_size_for(len(good))} close together")
    remapped = {cluster: named[cluster].label for cluster in named}
    atlas, atlas_slot = _thumbnails(tokens, valid, previous if not refit else COLLECTION_MAP.empty_table(), data_dir, settings)
    table = pa.table(
        {
            "collection": tokens.collection,
            "token_id": tokens.token_id,
            "x": pa.array(np.where(valid, coords[:, 0], np.nan), pa.float64(), mask=~valid),
            "y": pa.array(np.where(valid, coords[:, 1], np.nan), pa.float64(), mask=~valid),
            "cluster": clusters,
            "cluster_label": [remapped.get(int(c)) for c in clusters],
            "layout_version": [model.version] * len(tokens),
            "placement": placement.tolist(),
            "status": ["ok" if v else "invalid_embedding" for v in valid],
            "reason": [None if v else "embedding is not a finite non-zero vector" for v in valid],
            "atlas": atlas,
            "atlas_slot": atlas_slot,
        }
    ).cast(COLLECTION_MAP)
    return MapBuild(table, named, model, refit, 0 if refit else len(new), score, notes)


def traits_of(tags: Sequence[Sequence[dict]]) -> list[TraitSet]:
    """(trait_type, value) pairs per token from caption tags (the index's `tags` column)."""
    return [[(tag["trait_type"], tag["value"]) for tag in token] for token in tags]
