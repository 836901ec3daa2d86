"""The collection map: every token of a collection (or of everything indexed) on a 2-D map where
similar images sit together, with named clusters and thumbnail atlases for the `/map` page.

- `settings.py`: every knob (`MapSettings`);
- `layout.py`: UMAP / PCA layouts and placing new tokens in a fitted one (`LayoutModel`);
- `clusters.py`: HDBSCAN clusters named by their most over-represented traits (lift);
- `atlas.py`: content-addressed thumbnail sprite sheets;
- `build.py`: one map from its tokens and its previous table (incremental or refitted), the table schema;
- `embeddings.py`: the tokens and embeddings of a map, read from the search index;
- `preview.py`: the PNG preview of a map for Dagster metadata.

See docs/map.md for the measured speed and the neighbourhood score.
"""
