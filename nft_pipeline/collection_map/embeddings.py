"""The map's input: tokens and their image embeddings, read from the search index (`nft_index`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nft_pipeline.collection_map.build import MapInput, traits_of


def read_map_input(data_dir: Path, collection: str | None = None) -> MapInput:
    """The tokens of `collection` in the index under `data_dir` (every collection when None), sorted by
    key so a map's rows keep one order; `png_path` made absolute (the index may store it relative to
    the data directory, as the search page reads it). `IndexMissing` when there is no index."""
    import lancedb  # heavy (as is the index module, which imports torch): only when reading the index

    from nft_pipeline.index import TABLE_NAME, VECTOR_COLUMN, IndexMissing, lance_path, sql_literal

    db_path = lance_path(data_dir)
    db = lancedb.connect(db_path)
    if TABLE_NAME not in db.list_tables().tables:
        raise IndexMissing(Path(db_path))
    query = db.open_table(TABLE_NAME).search().select(["collection", "token_id", "tags", "png_path", "model_run_id", VECTOR_COLUMN]).limit(None)
    if collection is not None:
        query = query.where(f"collection = {sql_literal(collection)}")
    rows = query.to_arrow()
    rows = rows.take(np.lexsort((rows["token_id"].to_numpy(zero_copy_only=False), rows["collection"].to_numpy(zero_copy_only=False))))
    dim = rows.schema.field(VECTOR_COLUMN).type.list_size
    vectors = rows[VECTOR_COLUMN].combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(rows.num_rows, dim)
    spaces = sorted(set(rows["model_run_id"].to_pylist()))
    return MapInput(
        collection=rows["collection"].to_pylist(),
        token_id=rows["token_id"].to_pylist(),
        vectors=vectors.astype(np.float32),
        traits=traits_of(rows["tags"].to_pylist()),
        png_path=[str(Path(data_dir) / path) if path else None for path in rows["png_path"].to_pylist()],
        space=spaces[0] if spaces else "",
    )
