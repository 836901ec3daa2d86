"""Embeddings of (image, caption) pairs with a saved model, outside a training run.

The CVI report (and anyone comparing models) needs the same preprocessing, tokenisation and
normalisation as the training run's own evaluation, so this reuses its store, collator, loader and
`embed_pairs` rather than a second implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from nft_pipeline.train.config import TrainConfig
from nft_pipeline.train.data import PairCollator, TrainingExample, evaluation_loader, image_sources
from nft_pipeline.train.distributed import start_runtime
from nft_pipeline.train.evaluate import embed_pairs
from nft_pipeline.train.model import ClipBundle
from nft_pipeline.train.prepared import build_prepared_store


def embed_examples(
    bundle: ClipBundle, examples: Sequence[TrainingExample], work_dir: Path, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised image and caption embeddings of `examples`, in order (never masked).

    `work_dir` holds the decoded images at the model's input size (reused if already complete).
    """
    preprocessing = bundle.preprocessing
    store = build_prepared_store(image_sources(examples), {}, preprocessing, config.matte_rgb, work_dir, config.num_workers)
    collator = PairCollator(bundle.tokenizer, config.context_length, preprocessing)
    runtime = start_runtime(config)
    return embed_pairs(bundle.model, evaluation_loader(examples, store, collator, config), runtime)
