"""The `collection_map` and `combined_map` assets: every indexed token on a 2-D map with named clusters.

`collection_map` is per collection partition, after the collection's `nft_index` partition (the demo
materializes it right after the index); `combined_map` is one map of everything indexed. Both are
materialized on demand (no automation condition yet: the automation tests count on the index being
the only asset that automates) and extend their previous map when they can (new tokens placed,
nobody moves) and fit a new layout when they must (`nft_pipeline/collection_map/build.py`). Heavy libraries (LanceDB, UMAP, scikit-learn,
matplotlib) are imported when a map is built, not when this module is loaded.
"""

import dagster as dg

from assets.index import nft_index
from assets.partitions import collection_partitions
from assets.table_metadata import image_markdown, table_metadata
from nft_pipeline.collection_map.build import ALL_MAP, COLLECTION_MAP, MapBuild, build_map
from nft_pipeline.collection_map.settings import MapSettings
from nft_pipeline.reporting import markdown_table
from nft_pipeline.storage import DataLayout, read_table, write_table
from resources import DataDirResource

DEFAULTS = MapSettings()


class CollectionMapConfig(dg.Config):
    """The `MapSettings` a run may change (the others keep their defaults)."""

    refit_placed_share: float = DEFAULTS.refit_placed_share
    seed: int = DEFAULTS.seed
    n_neighbors: int = DEFAULTS.n_neighbors
    min_dist: float = DEFAULTS.min_dist
    umap_min_points: int = DEFAULTS.umap_min_points
    min_cluster_size: int = DEFAULTS.min_cluster_size

    def settings(self) -> MapSettings:
        return MapSettings(**self.model_dump())


def _materialize(layout: DataLayout, map_name: str, collection: str | None, table_path, settings: MapSettings) -> dg.MaterializeResult:
    from nft_pipeline.collection_map.embeddings import read_map_input
    from nft_pipeline.collection_map.preview import largest_clusters, preview_png

    tokens = read_map_input(layout.root, collection)
    built: MapBuild = build_map(tokens, read_table(table_path, COLLECTION_MAP), layout.root, map_name, settings)
    path = write_table(built.table, table_path, COLLECTION_MAP)
    metadata = table_metadata(
        built.table,
        path,
        layout_version=built.layout.version,
        layout_method=built.layout.method,
        refit=built.refit,
        placed_now=built.placed_now,
        cluster_count=len(built.clusters),
        notes=dg.MetadataValue.md("\n".join(f"- {note}" for note in built.notes)),
        largest_clusters=dg.MetadataValue.md(markdown_table(largest_clusters(built.clusters))),
        map_preview=image_markdown(preview_png(built.table, built.clusters, map_name), f"{map_name} map"),
    )
    if built.neighbourhood_score is not None:
        metadata["neighbourhood_preservation_at_10"] = built.neighbourhood_score
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name="search",
    kinds={"parquet", "umap"},
    partitions_def=collection_partitions,
    deps=[nft_index],
)
def collection_map(context: dg.AssetExecutionContext, config: CollectionMapConfig, data_dir: DataDirResource) -> dg.MaterializeResult:
    """The collection's tokens on a 2-D map (UMAP of image embeddings), clustered and named; thumbnails in atlases."""
    layout = data_dir.layout()
    slug = context.partition_key
    return _materialize(layout, slug, slug, layout.partition_path("collection_map", slug), config.settings())


@dg.asset(
    group_name="search",
    kinds={"parquet", "umap"},
    deps=[nft_index],
)
def combined_map(config: CollectionMapConfig, data_dir: DataDirResource) -> dg.MaterializeResult:
    """Every indexed token of every collection on one map (the `/map` page's "everything")."""
    layout = data_dir.layout()
    return _materialize(layout, ALL_MAP, None, layout.table_path("combined_map"), config.settings())
