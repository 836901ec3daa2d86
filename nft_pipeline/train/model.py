"""CLIP from the hub, from a local directory, or built offline from a preset.

Whatever its origin, a model travels as a `ClipBundle` (model, tokenizer, image processor) and is
saved with `save_pretrained`, so a trained model directory loads exactly like a hub model:
`CLIPModel.from_pretrained(d)` and `CLIPProcessor.from_pretrained(d)`. Presets are built from a
seed without a download, always with CLIP's own tokenizer (`nft_pipeline/clip_tokenizer.py`):

- `tiny`: a small CLIP (shape in TrainConfig) so the pipeline and its tests run on CPUs;
- `vit-b-32`: exactly the architecture and image processing of `openai/clip-vit-base-patch32`
  (224 px, CLIP's mean and std), randomly initialised: the real training path, minus the weights.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoTokenizer, CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

from nft_pipeline.clip_tokenizer import clip_tokenizer
from nft_pipeline.train.config import TINY_PRESET, VIT_B_32_PRESET, TrainConfig

# openai/clip-vit-base-patch32's config.json, less the token ids (set from the tokenizer below)
# and the pretrained weights; CLIPConfig's defaults today, spelled out so they cannot move.
VIT_B_32_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
VIT_B_32_VISION = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 32,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
VIT_B_32_PROJECTION = 512
CLIP_LOGIT_SCALE_INIT = 2.6592  # log(1 / 0.07), CLIP's initial temperature


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
    tokenizer: object  # a transformers tokenizer (CLIP's own for the presets)
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


def _token_ids() -> dict[str, int]:
    """The text tower pools at the first end marker: its ids must be the tokenizer's.

    (The hub's config says 0/1/2, a leftover that transformers reads as "pool at the largest id",
    which for CLIP's tokenizer is the same end marker.)
    """
    tokenizer = clip_tokenizer()
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _seeded_clip(clip_config: CLIPConfig, image_size: int, seed: int) -> ClipBundle:
    """A randomly initialised CLIP (same seed, same weights), CLIP's tokenizer and image processing."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(clip_config)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )  # CLIP's mean and std, bicubic, centre crop: the defaults of the hub's preprocessor_config.json
    return ClipBundle(model=model, tokenizer=clip_tokenizer(), image_processor=image_processor)


def build_tiny_clip(config: TrainConfig) -> ClipBundle:
    """The small preset (shape from `config`), seeded."""
    shape = {
        "hidden_size": config.tiny_width,
        "intermediate_size": 4 * config.tiny_width,
        "num_hidden_layers": config.tiny_layers,
        "num_attention_heads": config.tiny_heads,
    }
    clip_config = CLIPConfig(
        text_config={
            **shape,
            "vocab_size": len(clip_tokenizer()),
            "max_position_embeddings": config.context_length,
            **_token_ids(),
        },
        vision_config={**shape, "image_size": config.tiny_image_size, "patch_size": config.tiny_patch_size},
        projection_dim=config.tiny_projection_dim,
    )
    return _seeded_clip(clip_config, config.tiny_image_size, config.seed)


def build_vit_b_32(config: TrainConfig) -> ClipBundle:
    """openai/clip-vit-base-patch32 with random weights (seeded): its shapes, tokenizer and 224 px processing."""
    clip_config = CLIPConfig(
        text_config={**VIT_B_32_TEXT, **_token_ids()},
        vision_config=VIT_B_32_VISION,
        projection_dim=VIT_B_32_PROJECTION,
        logit_scale_init_value=CLIP_LOGIT_SCALE_INIT,
    )
    return _seeded_clip(clip_config, VIT_B_32_VISION["image_size"], config.seed)


PRESET_BUILDERS = {TINY_PRESET: build_tiny_clip, VIT_B_32_PRESET: build_vit_b_32}


def prepare_base_model(config: TrainConfig, directory: Path) -> str | Path:
    """Where every process loads the starting model from.

    A preset is built once and saved to `directory`, so all ranks (and a resumed run) share
    exactly the same initial weights and load them as they would a hub model; a hub id or local
    path is used as it is.
    """
    if config.preset is None:
        return config.model_name_or_path
    if not (directory / "config.json").exists():
        PRESET_BUILDERS[config.preset](config).save(directory)
    return directory


def image_embeddings(model: CLIPModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """Projected, un-normalised image embeddings (transformers 5 returns them as the pooler output)."""
    return model.get_image_features(pixel_values=pixel_values).pooler_output


def text_embeddings(model: CLIPModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Projected, un-normalised text embeddings (transformers 5 returns them as the pooler output)."""
    return model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
