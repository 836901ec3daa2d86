"""Fine-tuning CLIP on NFT image-caption pairs with dynamic masking (NFT1000), and retrieval metrics.

Entry point: `train_clip(examples, components, config, output_dir)` -> `TrainingRun`; the same run
under torchrun: `torchrun_command(...)` (or `python -m nft_pipeline.train`).

The names below load their module on first use (PEP 562), so that importing one light submodule
(`nft_pipeline.train.config` for the Dagster config classes) does not import torch and
transformers through this package.
"""

from importlib import import_module

_EXPORTS = {
    "ClipBundle": "model",
    "Component": "prepared",
    "ComponentLookup": "prepared",
    "MaskingSettings": "masking",
    "Split": "data",
    "TrainConfig": "config",
    "TrainingExample": "data",
    "TrainingRun": "loop",
    "load_clip": "model",
    "load_components": "inputs",
    "load_examples": "inputs",
    "retrieval_metrics": "evaluate",
    "save_training_inputs": "inputs",
    "split_examples": "data",
    "torchrun_command": "distributed",
    "train_clip": "loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
