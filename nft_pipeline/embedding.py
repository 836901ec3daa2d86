"""Embedding images and texts with a trained CLIP, as the search index and search queries need.

The inference side of the model, kept apart from training: it imports the model and the pixel
preparation (`train/model.py`, `train/pixels.py`), not the training loop or its prepared-image
store, so `nft-pipeline search` and the `nft_index` step load only what embedding needs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nft_pipeline.train.config import RUN_FILE, TrainConfig
from nft_pipeline.train.distributed import weights_digest
from nft_pipeline.train.model import ClipBundle, ImagePreprocessing, image_embeddings, load_clip, text_embeddings
from nft_pipeline.train.pixels import composite_over, pixel_values, resize_and_crop


def model_input_rgb(
    image: Image.Image, preprocessing: ImagePreprocessing, matte_rgb: tuple[int, int, int]
) -> np.ndarray:
    """The S x S x 3 pixels the model saw in training for this image (see train/pixels.py)."""
    return np.asarray(resize_and_crop(composite_over(image.convert("RGBA"), matte_rgb), preprocessing))


def _model_input(image: Path | Image.Image, preprocessing: ImagePreprocessing, matte_rgb) -> np.ndarray:
    if isinstance(image, Image.Image):
        return model_input_rgb(image, preprocessing, matte_rgb)
    with Image.open(image) as opened:
        return model_input_rgb(opened, preprocessing, matte_rgb)


@torch.inference_mode()
def embed_images(
    bundle: ClipBundle,
    images: Sequence[Path | Image.Image],
    batch_size: int = 64,
    matte_rgb: tuple[int, int, int] = TrainConfig.matte_rgb,
    decode_threads: int = 2,
) -> np.ndarray:
    """N x D float32 L2-normalised image embeddings, in input order (PNG paths or decoded images).

    Pixels are prepared exactly as training prepares them (composited over `matte_rgb`, box-resized
    and centre-cropped), so an indexed image lands where the model learnt to put it. Decoding a
    512 px PNG costs more than embedding it at the tiny preset's size, so images are decoded by a
    thread pool (Pillow releases the GIL while decoding; threads, unlike forked workers, are safe
    in a process whose LanceDB runtime is running).
    """
    bundle.model.eval()
    preprocessing = bundle.preprocessing
    batches = []
    with ThreadPoolExecutor(decode_threads) as pool:
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            rgb = np.stack(list(pool.map(_model_input, chunk, [preprocessing] * len(chunk), [matte_rgb] * len(chunk))))
            embeddings = image_embeddings(bundle.model, pixel_values(rgb, preprocessing)).float()
            batches.append(F.normalize(embeddings, dim=-1))
    if not batches:
        return np.zeros((0, bundle.model.config.projection_dim), dtype=np.float32)
    return torch.cat(batches).numpy()


@torch.inference_mode()
def embed_texts(
    bundle: ClipBundle, texts: Sequence[str], context_length: int = TrainConfig.context_length
) -> np.ndarray:
    """N x D float32 L2-normalised text embeddings; texts longer than `context_length` tokens are cut."""
    bundle.model.eval()
    tokens = bundle.tokenizer(
        list(texts), padding=True, truncation=True, max_length=context_length, return_tensors="pt"
    )
    embeddings = text_embeddings(bundle.model, tokens["input_ids"], tokens["attention_mask"]).float()
    return F.normalize(embeddings, dim=-1).numpy()


@dataclass(frozen=True)
class EmbeddingModel:
    """A trained model with what embedding like its training needs: its matte colour and context length.

    `run_id` names the embedding space in the table: the training run's id when the model directory
    is a run's `model/` (its `run.json` lies beside it), else a digest of the weights.
    """

    bundle: ClipBundle
    run_id: str
    model_dir: Path
    matte_rgb: tuple[int, int, int]
    context_length: int

    @classmethod
    def load(cls, model_dir: Path) -> EmbeddingModel:
        model_dir = Path(model_dir).resolve()
        bundle = load_clip(model_dir)
        bundle.model.eval()
        run_file = model_dir.parent / RUN_FILE
        if run_file.exists():
            # Read as JSON rather than as a `TrainingRun`, which would import the training loop.
            run = json.loads(run_file.read_text())
            if run["model_dir"] is not None and Path(run["model_dir"]).resolve() == model_dir:
                config = TrainConfig.from_dict(run["config"])
                return cls(bundle, run["run_id"], model_dir, config.matte_rgb, config.context_length)
        defaults = TrainConfig()
        return cls(bundle, weights_digest(bundle.model)[:16], model_dir, defaults.matte_rgb, defaults.context_length)

    @property
    def dim(self) -> int:
        return int(self.bundle.model.config.projection_dim)

    def embed_images(
        self, images: Sequence[Path | Image.Image], batch_size: int = 64, decode_threads: int = 2
    ) -> np.ndarray:
        return embed_images(self.bundle, images, batch_size, self.matte_rgb, decode_threads)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return embed_texts(self.bundle, texts, self.context_length)

    def count_text_tokens(self, text: str) -> int:
        """Tokens the text encoder would need for `text`, start and end markers included (no cut)."""
        return len(self.bundle.tokenizer(text)["input_ids"])
