"""The tiny CLIP the tests train and index with, and what keeps it fast on two shared cores.

One definition for every test file that builds or trains a model, so they all exercise the same
shape (and a change to it is made once).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import torch

from nft_pipeline.embedding import EmbeddingModel
from nft_pipeline.index import (
    embedding_rows,
    ensure_indexes,
    index_inputs_from_examples,
    lance_path,
    replace_partition,
)
from nft_pipeline.train import TrainConfig, TrainingExample

# A few seconds per training run; by_token because the tests train on one or two collections.
TINY = TrainConfig(
    tiny_image_size=32,
    tiny_patch_size=8,
    tiny_width=64,
    tiny_layers=2,
    tiny_heads=2,
    tiny_projection_dim=32,
    split="by_token",
    num_workers=0,
    eval_batch_size=16,
)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Two shared cores: OpenMP threads spinning against other processes make steps 10-50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def index_examples(data_dir: Path, model: EmbeddingModel, by_collection: Mapping[str, Sequence[TrainingExample]]) -> dict[str, pa.Table]:
    """Each collection's examples embedded by `model` into the index under `data_dir`, as the
    `nft_index` asset writes a partition; returns the rows written per collection."""
    rows = {}
    for collection, examples in by_collection.items():
        rows[collection] = embedding_rows(model, index_inputs_from_examples(examples))
        replace_partition(lance_path(data_dir), collection, rows[collection])
    ensure_indexes(lance_path(data_dir))
    return rows
