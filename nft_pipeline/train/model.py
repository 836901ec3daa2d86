"""CLIP from the hub, from a local directory, or built offline as the `tiny` preset.

Whatever its origin, a model travels as a `ClipBundle` (model, tokenizer, image processor) and is
saved with `save_pretrained`, so a trained model directory loads exactly like a hub model:
`CLIPModel.from_pretrained(d)` and `CLIPProcessor.from_pretrained(d)`. The tiny preset exists so
the pipeline and its tests run without a download: a small CLIP initialised from a seed, and a
tokenizer trained on the run's captions (see tokenizer.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoTokenizer, CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

from nft_pipeline.train.config import TrainConfig
from nft_pipeline.train.tokenizer import train_clip_tokenizer


@dataclass(frozen=True)
class ImagePreprocessing:
    """What the model expects of an image: CLIP's resize-shortest-edge, centre crop, normalise."""

    shortest_edge: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass
class ClipBundle:
    model: CLIPModel
    tokenizer: object  # a transformers tokenizer (CLIPTokenizer for the tiny preset)
    image_processor: object  # a transformers CLIP image processor

    @property
    def preprocessing(self) -> ImagePreprocessing:
        processor = self.image_processor
        shortest_edge = processor.size["shortest_edge"] or processor.size["height"]
        return ImagePreprocessing(
            shortest_edge=int(shortest_edge),
            crop_size=int(processor.crop_size["height"]),
            mean=tuple(float(v) for v in processor.image_mean),
            std=tuple(float(v) for v in processor.image_std),
        )

    def save(self, directory: Path) -> None:
        """Weights, config, tokenizer and image processor, loadable with `from_pretrained(directory)`.

        Written beside `directory` and renamed into place (replacing what was there), so a crash
        mid-save never leaves a directory that loads half a model.
        """
        partial = directory.with_name(directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        self.model.save_pretrained(partial)
        CLIPProcessor(image_processor=self.image_processor, tokenizer=self.tokenizer).save_pretrained(partial)
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(partial, directory)


def load_clip(model_name_or_path: str | Path) -> ClipBundle:
    """A CLIP model with its tokenizer and image processor, from a hub id or a saved directory."""
    return ClipBundle(
        model=CLIPModel.from_pretrained(model_name_or_path),
        tokenizer=AutoTokenizer.from_pretrained(model_name_or_path),
        image_processor=AutoImageProcessor.from_pretrained(model_name_or_path),
    )


def build_tiny_clip(config: TrainConfig, captions: Iterable[str]) -> ClipBundle:
    """The offline preset: a small randomly initialised CLIP (seeded) and a tokenizer trained on `captions`."""
    tokenizer = train_clip_tokenizer(captions, config.tiny_vocab_size)
    shape = {
        "hidden_size": config.tiny_width,
        "intermediate_size": 4 * config.tiny_width,
        "num_hidden_layers": config.tiny_layers,
        "num_attention_heads": config.tiny_heads,
    }
    clip_config = CLIPConfig(
        text_config={
            **shape,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": config.context_length,
            "bos_token_id": tokenizer.bos_token_id,
            # The text tower pools at the first end marker: its id must be the tokenizer's.
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={**shape, "image_size": config.tiny_image_size, "patch_size": config.tiny_patch_size},
        projection_dim=config.tiny_projection_dim,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = CLIPModel(clip_config)
    size = config.tiny_image_size
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return ClipBundle(model=model, tokenizer=tokenizer, image_processor=image_processor)


def prepare_base_model(config: TrainConfig, train_captions: Iterable[str], directory: Path) -> str | Path:
    """Where every process loads the starting model from.

    The tiny preset is built once and saved to `directory`, so all ranks (and a resumed run) share
    exactly the same initial weights and tokenizer; a hub id or local path is used as it is.
    """
    if not config.is_tiny:
        return config.model_name_or_path
    if not (directory / "config.json").exists():
        build_tiny_clip(config, train_captions).save(directory)
    return directory


def image_embeddings(model: CLIPModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """Projected, un-normalised image embeddings (transformers 5 returns them as the pooler output)."""
    return model.get_image_features(pixel_values=pixel_values).pooler_output


def text_embeddings(model: CLIPModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Projected, un-normalised text embeddings (transformers 5 returns them as the pooler output)."""
    return model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
