"""Training examples, their splits, and the (image, caption) batches the model sees.

The `clip_model` asset builds `TrainingExample`s from the Parquet tables and a `ComponentLookup` from
the components stage; everything after that happens here. Splits are by collection (the paper's
80:5:15, so test collections are never seen in training) or by token within each collection (for
a single-collection run); both are deterministic from the seed and serialise to JSON, so a run
stores the exact split it used and a resumed run reuses it.

Batches are drawn by `EpochSampler`, which hands the dataset (epoch, index) pairs: the epoch
travels with each index, so masking draws stay keyed by epoch even inside persistent DataLoader
workers, which never see a `set_epoch` made in the main process.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from nft_pipeline.captions import Caption
from nft_pipeline.location import Location
from nft_pipeline.phrasings import phrase_caption, phrasing_rng
from nft_pipeline.train.config import SplitStrategy, TrainConfig
from nft_pipeline.train.masking import MaskingSettings, apply_masking, masking_rng
from nft_pipeline.train.model import ImagePreprocessing
from nft_pipeline.train.pixels import pixel_values
from nft_pipeline.train.prepared import ImageSource, PreparedStore, StreamingImages

ExampleKey = tuple[str, str]  # (collection, token id)
SplitPart = Literal["train", "val", "test"]
SPLIT_PARTS: tuple[SplitPart, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class TrainingExample:
    collection: str
    token_id: str
    image_path: Location  # the standardized PNG, local or on object storage
    caption: Caption

    @property
    def key(self) -> ExampleKey:
        return (self.collection, self.token_id)


def image_sources(examples: Sequence[TrainingExample]) -> list[ImageSource]:
    """What preparing each example's image needs (components are looked up by the preparing worker)."""
    return [
        ImageSource(
            image_path=example.image_path,
            collection=example.collection,
            tag_traits=tuple((tag["trait_type"] or "", tag["value"]) for tag in example.caption.tags),
        )
        for example in examples
    ]


def _part_sizes(count: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """Train/val/test sizes: rounded shares, with at least one test item whenever test has a share."""
    val = math.floor(count * ratios[1] + 0.5)
    test = math.floor(count * ratios[2] + 0.5)
    if ratios[2] > 0 and test == 0 and count >= 2:
        test = 1
    val = min(val, max(0, count - test - 1))
    return count - val - test, val, test


@dataclass(frozen=True)
class Split:
    strategy: SplitStrategy
    seed: int
    ratios: tuple[float, float, float]
    train: tuple[ExampleKey, ...]
    val: tuple[ExampleKey, ...]
    test: tuple[ExampleKey, ...]

    def keys(self, part: SplitPart) -> tuple[ExampleKey, ...]:
        return getattr(self, part)

    def select(self, examples: Sequence[TrainingExample], part: SplitPart) -> list[TrainingExample]:
        """The examples of one part, in the split's order; every key of the part must be present."""
        by_key = {example.key: example for example in examples}
        missing = [key for key in self.keys(part) if key not in by_key]
        if missing:
            raise ValueError(f"{len(missing)} examples of the stored {part} split are missing, e.g. {missing[:3]}")
        return [by_key[key] for key in self.keys(part)]

    def to_dict(self) -> dict[str, object]:
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "ratios": list(self.ratios),
            **{part: [list(key) for key in self.keys(part)] for part in SPLIT_PARTS},
        }

    @classmethod
    def from_dict(cls, values: dict) -> Split:
        return cls(
            strategy=values["strategy"],
            seed=values["seed"],
            ratios=tuple(values["ratios"]),
            **{part: tuple((str(c), str(t)) for c, t in values[part]) for part in SPLIT_PARTS},
        )


def split_examples(
    examples: Sequence[TrainingExample], strategy: SplitStrategy, ratios: tuple[float, float, float], seed: int
) -> Split:
    """Assign every example to train/val/test, deterministically from `seed` whatever the input order."""
    by_collection: dict[str, list[ExampleKey]] = defaultdict(list)
    for example in examples:
        by_collection[example.collection].append(example.key)
    keys = [key for group in by_collection.values() for key in group]
    if len(set(keys)) != len(keys):
        raise ValueError("examples contain duplicate (collection, token_id) keys")
    rng = random.Random(seed)
    parts: dict[str, list[ExampleKey]] = {part: [] for part in SPLIT_PARTS}
    if strategy == "by_collection":
        collections = sorted(by_collection)
        rng.shuffle(collections)
        train, val, _ = _part_sizes(len(collections), ratios)
        for position, collection in enumerate(collections):
            part = "train" if position < train else "val" if position < train + val else "test"
            parts[part].extend(by_collection[collection])
    else:
        for collection in sorted(by_collection):
            tokens = sorted(by_collection[collection])
            rng.shuffle(tokens)
            train, val, _ = _part_sizes(len(tokens), ratios)
            parts["train"].extend(tokens[:train])
            parts["val"].extend(tokens[train : train + val])
            parts["test"].extend(tokens[train + val :])
    if not parts["train"] or (ratios[2] > 0 and not parts["test"]):
        raise ValueError(
            f"{strategy} split of {len(by_collection)} collection(s) leaves train or test empty; "
            "a single-collection run needs split='by_token'"
        )
    return Split(strategy, seed, tuple(ratios), **{part: tuple(sorted(keys)) for part, keys in parts.items()})


@dataclass(frozen=True)
class PairSample:
    rgb: np.ndarray  # S x S x 3 uint8
    text: str
    index: int
    masked_tags: tuple[int, ...]


class PairDataset(Dataset):
    """(image, caption) pairs from a prepared store or streamed, masked when masking settings are given."""

    def __init__(
        self,
        examples: Sequence[TrainingExample],
        store: PreparedStore | StreamingImages,
        masking: MaskingSettings | None,
        seed: int,
        phrasings: bool = False,  # a drawn phrasing per (token, epoch) instead of the canonical text (phrasings.py)
    ):
        if len(store) != len(examples):
            raise ValueError(f"store holds {len(store)} images for {len(examples)} examples")
        self.captions = [example.caption for example in examples]
        self.store = store
        self.masking = masking
        self.seed = seed
        self.phrasings = phrasings

    def __len__(self) -> int:
        return len(self.captions)

    def caption_for(self, epoch: int, index: int) -> Caption:
        """The caption pair `index` is trained with in `epoch`: the one place a caption is chosen."""
        return self.captions[index]

    def __getitem__(self, epoch_and_index: tuple[int, int]) -> PairSample:
        epoch, index = epoch_and_index
        prepared = self.store[index]
        caption = self.caption_for(epoch, index)
        if self.masking is None:
            text = phrase_caption(caption, phrasing_rng(self.seed, epoch, index)) if self.phrasings else caption.caption
            return PairSample(rgb=prepared.rgb, text=text, index=index, masked_tags=())
        masked = apply_masking(
            prepared.rgb,
            prepared.tag_masks,
            prepared.background_rgb,
            caption,
            self.masking,
            masking_rng(self.seed, epoch, index),
        )
        if self.phrasings:
            masked = replace(masked, text=phrase_caption(caption, phrasing_rng(self.seed, epoch, index), masked.masked_tags))
        return PairSample(rgb=masked.rgb, text=masked.text, index=index, masked_tags=masked.masked_tags)


class EpochSampler(Sampler[tuple[int, int]]):
    """A DistributedSampler whose items carry the epoch: yields (epoch, index)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool, seed: int):
        self.indices = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.indices.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in self.indices)


class PairCollator:
    """Stacks samples into model inputs: normalised pixels, and the captions tokenized as one batch."""

    def __init__(self, tokenizer: object, context_length: int, preprocessing: ImagePreprocessing):
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.preprocessing = preprocessing

    def __call__(self, samples: list[PairSample]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(
            [sample.text for sample in samples],
            padding=True,
            truncation=True,
            max_length=self.context_length,
            return_tensors="pt",
        )
        return {
            "pixel_values": pixel_values(np.stack([sample.rgb for sample in samples]), self.preprocessing),
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
            "indices": torch.tensor([sample.index for sample in samples]),
        }


def seed_worker(worker_id: int) -> None:
    """Seed numpy and `random` in each worker from torch's per-worker seed (base seed + worker id).

    Masking does not depend on it (it has its own keyed generator); this keeps any other library
    randomness in workers reproducible and distinct between workers.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def _loader(
    dataset: PairDataset,
    collator: PairCollator,
    sampler: EpochSampler,
    batch_size: int,
    drop_last: bool,
    persistent: bool,
    config: TrainConfig,
    pin_memory: bool = False,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collator,
        drop_last=drop_last,
        num_workers=config.num_workers,
        persistent_workers=persistent and config.num_workers > 0,
        prefetch_factor=config.prefetch_factor if config.num_workers > 0 else None,
        worker_init_fn=seed_worker,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(config.seed),
    )


def training_loader(
    examples: Sequence[TrainingExample],
    store: PreparedStore | StreamingImages,
    collator: PairCollator,
    config: TrainConfig,
    num_replicas: int,
    rank: int,
    pin_memory: bool = False,
) -> DataLoader:
    """This rank's shuffled, masked training batches; call `loader.sampler.set_epoch(e)` before each epoch.

    `pin_memory`: batches in page-locked memory, so copies to a GPU can be non-blocking.
    """
    dataset = PairDataset(examples, store, MaskingSettings.from_config(config), config.seed, phrasings=config.caption_phrasings)
    sampler = EpochSampler(dataset, num_replicas, rank, shuffle=True, seed=config.seed)
    return _loader(
        dataset, collator, sampler, config.batch_size, drop_last=True, persistent=True, config=config, pin_memory=pin_memory
    )


def evaluation_loader(
    examples: Sequence[TrainingExample], store: PreparedStore | StreamingImages, collator: PairCollator, config: TrainConfig
) -> DataLoader:
    """Every pair once, in order, never masked (whatever the masking settings of the config).

    Its workers are not kept between passes: evaluation runs a few times per run, and idle workers
    would hold memory for the whole run beside the training loader's.
    """
    dataset = PairDataset(examples, store, masking=None, seed=config.seed)
    sampler = EpochSampler(dataset, num_replicas=1, rank=0, shuffle=False, seed=config.seed)
    return _loader(dataset, collator, sampler, config.eval_batch_size, drop_last=False, persistent=False, config=config)
