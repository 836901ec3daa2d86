"""Fine-tuning CLIP on NFT image-caption pairs with dynamic masking (NFT1000), and retrieval metrics.

Entry point: `train_clip(examples, components, config, output_dir)` -> `TrainingRun`; the same run
under torchrun: `torchrun_command(...)` (or `python -m nft_pipeline.train`).
"""

from nft_pipeline.train.config import TrainConfig
from nft_pipeline.train.data import Split, TrainingExample, split_examples
from nft_pipeline.train.distributed import torchrun_command
from nft_pipeline.train.evaluate import retrieval_metrics
from nft_pipeline.train.inputs import load_components, load_examples, save_training_inputs
from nft_pipeline.train.loop import TrainingRun, train_clip
from nft_pipeline.train.masking import MaskingSettings
from nft_pipeline.train.model import ClipBundle, load_clip
from nft_pipeline.train.prepared import Component, ComponentLookup

__all__ = [
    "ClipBundle",
    "Component",
    "ComponentLookup",
    "MaskingSettings",
    "Split",
    "TrainConfig",
    "TrainingExample",
    "TrainingRun",
    "load_clip",
    "load_components",
    "load_examples",
    "retrieval_metrics",
    "save_training_inputs",
    "split_examples",
    "torchrun_command",
    "train_clip",
]
