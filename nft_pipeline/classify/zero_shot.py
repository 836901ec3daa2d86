"""What zero-shot needs from the search index: each token's image embedding and, from the model
that made them, the text embedding of a caption naming each trait value (`traits.prompt_texts`).

Read only where the index exists (the benchmark, an evaluation); `trait_predictions` itself uses
the pixel methods, which need no model, because they measure better on every trait type of the
demo collections (docs/benchmarks.md, "Classification").
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from nft_pipeline.classify.trait_labels import CollectionLabels, prompt_texts
from nft_pipeline.classify.traits import TraitFeatures


def collection_title(names: list[str | None], fallback: str) -> str:
    """The tokens' common name without its number ("CryptoPunk #12" -> "CryptoPunk"): captions
    start with the token's name, so a prompt that names no token starts the same way."""
    stems = Counter(re.sub(r"\s*#?\s*\d+\s*$", "", name).strip() for name in names if name)
    return stems.most_common(1)[0][0] if stems and stems.most_common(1)[0][0] else fallback


def index_features(data_dir: Path, collection: str, labels: CollectionLabels, base: TraitFeatures) -> TraitFeatures:
    """`base` with the index's image embeddings of `labels.token_ids` (rows missing from the index
    are marked unavailable) and the prompts embedded by the index's model."""
    import lancedb

    from nft_pipeline.captions import template_for
    from nft_pipeline.embedding import EmbeddingModel
    from nft_pipeline.index import TABLE_NAME, VECTOR_COLUMN, lance_path, sql_literal

    table = lancedb.connect(lance_path(data_dir)).open_table(TABLE_NAME)
    rows = (
        table.search().where(f"collection = {sql_literal(collection)}")
        .select(["token_id", "name", "model_dir", VECTOR_COLUMN]).limit(None).to_arrow()
    )
    dim = rows.schema.field(VECTOR_COLUMN).type.list_size
    vectors = rows[VECTOR_COLUMN].combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(rows.num_rows, dim)
    position = {token: i for i, token in enumerate(rows["token_id"].to_pylist())}
    embedding = np.zeros((len(labels.token_ids), dim), dtype=np.float32)
    found = np.zeros(len(labels.token_ids), dtype=bool)
    for i, token in enumerate(labels.token_ids):
        if token in position:
            embedding[i], found[i] = vectors[position[token]], True
    model_dirs = Counter(rows["model_dir"].to_pylist())
    model = EmbeddingModel.load(Path(model_dirs.most_common(1)[0][0]))
    title = collection_title(rows["name"].to_pylist(), collection)
    texts = prompt_texts(title, labels, template_for(collection))
    keys = list(texts)
    vectors = model.embed_texts([texts[key] for key in keys])
    has_image = base.available(len(labels.token_ids)) & found
    return TraitFeatures(base.knn, base.samples, embedding, dict(zip(keys, vectors)), has_image, base.n_pixels)
