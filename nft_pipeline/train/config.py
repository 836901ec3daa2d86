"""Every knob of a training run in one object, so a run is fully described by one JSON document.

Like open_clip's params.py, the command line is generated from this dataclass (one flag per
field), so the asset, the CLI and torchrun all configure a run the same way. Fields that only
change *how* a run executes (workers, evaluation batching, device) are listed in
`EXECUTION_FIELDS`: they are left out of the run id, so a run interrupted on one machine may
resume on another with a different worker count without being mistaken for a new experiment.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass
from typing import Any, Literal

TINY_PRESET = "tiny"  # a small CLIP for CPUs, tests and demos
VIT_B_32_PRESET = "vit-b-32"  # openai/clip-vit-base-patch32's architecture, random weights
PRESETS = (TINY_PRESET, VIT_B_32_PRESET)
# A run's record beside its model directory (`<output dir>/run.json`), read back by whoever loads the model.
RUN_FILE = "run.json"

SplitStrategy = Literal["by_collection", "by_token"]
MaskingMode = Literal["one", "each"]
MaskingFill = Literal["background", "mean", "noise"]
Precision = Literal["auto", "fp32", "bf16"]
DeviceChoice = Literal["auto", "cpu", "cuda"]
DataSource = Literal["auto", "store", "stream"]

# Fields of earlier versions: `tiny_vocab_size` sized the tokenizer the tiny preset once learnt
# from its captions (every model now uses CLIP's own, nft_pipeline/clip_tokenizer.py).
RETIRED_FIELDS = frozenset({"tiny_vocab_size"})

EXECUTION_FIELDS = frozenset(
    {
        "num_workers",
        "prefetch_factor",
        "eval_batch_size",
        "eval_query_chunk",
        "eval_candidate_chunk",
        "device",
        "precision",
        "compile",
        "data_source",
        "max_store_gib",
    }
)


@dataclass(frozen=True)
class TrainConfig:
    # Model: a hub id ("openai/clip-vit-base-patch32"), a local directory, or an offline preset
    # (PRESETS: built from a seed with CLIP's own tokenizer, see model.py).
    model_name_or_path: str = TINY_PRESET
    context_length: int = 77  # text tokens, including the start and end markers
    # The tiny preset's shape (its tokenizer is CLIP's, like every model's here).
    tiny_image_size: int = 64
    tiny_patch_size: int = 16
    tiny_width: int = 256
    tiny_layers: int = 4
    tiny_heads: int = 4
    tiny_projection_dim: int = 128
    # Images: transparent pixels are composited over this colour before anything else sees them.
    matte_rgb: tuple[int, int, int] = (255, 255, 255)

    # Splits (the paper: 80:5:15 by collection, so test collections are never seen in training).
    split: SplitStrategy = "by_collection"
    split_ratios: tuple[float, float, float] = (0.80, 0.05, 0.15)
    seed: int = 0

    # Dynamic masking (training only).
    masking_mode: MaskingMode = "one"
    masking_probability: float = 0.5
    masking_fill: MaskingFill = "background"
    # Captions as people write them: each epoch a token is paired with one phrasing of its tags
    # drawn per (token, epoch) (nft_pipeline/phrasings.py), not always the canonical sentence.
    caption_phrasings: bool = False

    # NFT1000's options. Component pairs: a trait's component on the background with its tag's
    # words, as this share of the training pairs (0: none; see component_pairs.py).
    component_pairs_share: float = 0.0
    # WiSE-FT: the saved model is (1 - alpha) * starting weights + alpha * fine-tuned weights
    # (1: the fine-tuned model as trained); zero-shot, fine-tuned and interpolated are all evaluated.
    wise_ft_alpha: float = 1.0

    # Optimisation.
    epochs: int = 10
    batch_size: int = 64  # per device and per micro-batch; contrastive negatives come from the global micro-batch
    grad_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.2
    adam_betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-6
    warmup_fraction: float = 0.05  # of all optimizer steps, then cosine decay
    min_lr_ratio: float = 0.0  # the cosine ends at learning_rate * min_lr_ratio
    max_grad_norm: float = 1.0

    # Execution (left out of the run id, see EXECUTION_FIELDS).
    num_workers: int = 2
    prefetch_factor: int = 4
    eval_batch_size: int = 256
    eval_query_chunk: int = 1024
    eval_candidate_chunk: int = 8192
    eval_top_k: tuple[int, ...] = (1, 5, 10)
    device: DeviceChoice = "auto"
    precision: Precision = "auto"
    compile: bool = False  # torch.compile the model (worth it on GPUs for long runs; minutes to compile)
    # Images: decoded once into a memory-mapped store, or decoded by the workers every epoch
    # (streaming, for large runs); "auto": the store whenever it fits max_store_gib
    # (prepared.choose_image_source, measured in docs/benchmarks.md).
    data_source: DataSource = "auto"
    max_store_gib: float = 200.0

    def __post_init__(self) -> None:
        if abs(sum(self.split_ratios) - 1.0) > 1e-6 or min(self.split_ratios) < 0:
            raise ValueError(f"split_ratios must be non-negative and sum to 1, got {self.split_ratios}")
        if not 0.0 <= self.masking_probability <= 1.0:
            raise ValueError(f"masking_probability must be in [0, 1], got {self.masking_probability}")
        if not 0.0 <= self.component_pairs_share < 1.0:
            raise ValueError(f"component_pairs_share must be in [0, 1), got {self.component_pairs_share}")
        if not 0.0 <= self.wise_ft_alpha <= 1.0:
            raise ValueError(f"wise_ft_alpha must be in [0, 1], got {self.wise_ft_alpha}")
        for name in ("epochs", "batch_size", "grad_accumulation_steps", "context_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("split", "masking_mode", "masking_fill", "precision", "device", "data_source"):
            allowed = typing.get_args(_FIELD_TYPES[name])
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def preset(self) -> str | None:
        """The offline preset this config trains from, or None for a hub id or a directory."""
        return self.model_name_or_path if self.model_name_or_path in PRESETS else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild from `to_dict` output (JSON turns tuples into lists; they are turned back).

        Fields a config no longer has (`RETIRED_FIELDS`) are dropped, so runs recorded before they
        were retired (run.json, `training_runs.config_json`) still load.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        values = {name: value for name, value in values.items() if name not in RETIRED_FIELDS}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        return cls(**{name: tuple(v) if isinstance(v, list) else v for name, v in values.items()})

    def experiment_digest(self) -> str:
        """A digest of every field that changes what is trained (not how fast or where)."""
        defining = {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS}
        return hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()


_FIELD_TYPES = typing.get_type_hints(TrainConfig)


def config_fields() -> dict[str, tuple[Any, Any]]:
    """Every field as (annotation, default), tuples turned into lists: what a JSON or YAML run config
    (Dagster's `ClipModelConfig`) can carry. `TrainConfig.from_dict` turns the lists back."""
    fields = {}
    for config_field in dataclasses.fields(TrainConfig):
        annotation, default = _FIELD_TYPES[config_field.name], config_field.default
        if typing.get_origin(annotation) is tuple:
            annotation, default = list[typing.get_args(annotation)[0]], list(default)
        fields[config_field.name] = (annotation, default)
    return fields


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per config field, typed from the annotation, defaulting to the dataclass default."""
    for config_field in dataclasses.fields(TrainConfig):
        annotation = _FIELD_TYPES[config_field.name]
        flag = "--" + config_field.name.replace("_", "-")
        default = config_field.default
        if typing.get_origin(annotation) is Literal:
            parser.add_argument(flag, choices=typing.get_args(annotation), default=default)
        elif typing.get_origin(annotation) is tuple:
            item_type = typing.get_args(annotation)[0]
            parser.add_argument(flag, type=item_type, nargs="+", default=default)
        else:
            parser.add_argument(flag, type=annotation, default=default)


def config_from_arguments(namespace: argparse.Namespace) -> TrainConfig:
    return TrainConfig.from_dict({f.name: getattr(namespace, f.name) for f in dataclasses.fields(TrainConfig)})


def config_arguments(config: TrainConfig) -> list[str]:
    """The command-line flags that reproduce `config` (only fields that differ from the defaults)."""
    defaults = TrainConfig()
    arguments = []
    for config_field in dataclasses.fields(TrainConfig):
        value = getattr(config, config_field.name)
        if value == getattr(defaults, config_field.name):
            continue
        arguments.append("--" + config_field.name.replace("_", "-"))
        if isinstance(value, tuple):
            arguments.extend(str(item) for item in value)
        else:
            arguments.append(str(value))
    return arguments
