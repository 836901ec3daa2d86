"""Images at the model's input size with each tag's pixel mask: decoded once into a store, or streamed.

Decoding a 512 px PNG and matching every component against it costs 10-30 ms, more than a tiny
CLIP step per sample. None of it changes between epochs (only the masking draws do), so for
small runs it is done once per run, in parallel, into a memory-mapped store (`PreparedStore`); an
epoch then reads a few kilobytes per sample, applies the masking draw and tokenizes. The store
lives in the run directory and belongs to its run id: a resumed run reuses it, a new run
rebuilds it. At NFT1000's size the store would take about 1 TB at 224 px, so for such runs
`StreamingImages` decodes (locally or from object storage) in the DataLoader workers, every
epoch, instead. Both give the
same `PreparedImage` for an index; which is faster is measured in docs/benchmarks.md
(`choose_image_source` applies the result: the store whenever it fits).

Geometry: CLIP's own preprocessing (shortest edge to the model size, centre crop), with area
(box) resampling for the image and an "any coverage" reduction for the masks. With a box filter a
model pixel depends only on the standardized pixels inside it, so a model pixel is either
touched by a component (and in its mask) or carries none of its colour: masking at model size
hides the whole component and leaves every other pixel as it was.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nft_pipeline.components import token_component_mask
from nft_pipeline.location import Location
from nft_pipeline.train.model import ImagePreprocessing
from nft_pipeline.train.pixels import composite_over, resize_and_crop

Component = tuple[np.ndarray, np.ndarray]  # (bool mask H x W, RGBA H x W x 4) at the standardized size
# (trait_type, value) as the components table keys a trait: a value without a trait type has "".
Trait = tuple[str, str]
# collection -> trait -> its component, or None when the trait has none.
ComponentLookup = Mapping[str, Mapping[Trait, Component | None]]


@dataclass(frozen=True)
class PreparedImage:
    rgb: np.ndarray  # S x S x 3 uint8
    tag_masks: np.ndarray  # T x S x S bool, one per caption tag
    background_rgb: np.ndarray  # 3 uint8: the most common border colour of the standardized image


@dataclass(frozen=True)
class ImageSource:
    """What preparing one image needs: its file, its collection, and the (trait_type, value) of each caption tag."""

    image_path: Location  # local, or on object storage
    collection: str
    tag_traits: tuple[Trait, ...]


def border_mode_colour(rgb: np.ndarray) -> np.ndarray:
    """The most common colour on the image border (ties go to the smallest packed RGB value)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]])
    packed = (border[:, 0].astype(np.uint32) << 16) | (border[:, 1].astype(np.uint32) << 8) | border[:, 2]
    values, counts = np.unique(packed, return_counts=True)
    winner = int(values[np.argmax(counts)])
    return np.array([(winner >> 16) & 255, (winner >> 8) & 255, winner & 255], dtype=np.uint8)


def prepare_image(
    source: ImageSource,
    components: ComponentLookup,
    preprocessing: ImagePreprocessing,
    matte_rgb: tuple[int, int, int],
) -> PreparedImage:
    """Decode, composite, find each tag's pixels, and bring image and masks to the model's size."""
    with source.image_path.open("rb") as file, Image.open(file) as opened:  # a Path, or a UPath on object storage
        rgba_image = opened.convert("RGBA")
    rgba = np.asarray(rgba_image)
    rgb_image = composite_over(rgba_image, matte_rgb)
    collection_components = components.get(source.collection, {})
    size = preprocessing.crop_size
    tag_masks = np.zeros((len(source.tag_traits), size, size), dtype=bool)
    for index, trait in enumerate(source.tag_traits):
        component = collection_components.get(trait)
        if component is None or component[0].shape != rgba.shape[:2]:
            continue  # no component, or one drawn for another canvas size: nothing of it can be located
        full_mask = token_component_mask(component[0], component[1], rgba)
        if full_mask.any():
            coverage = resize_and_crop(Image.fromarray(full_mask.astype(np.float32)), preprocessing)
            tag_masks[index] = np.asarray(coverage) > 0
    return PreparedImage(
        rgb=np.asarray(resize_and_crop(rgb_image, preprocessing)),
        tag_masks=tag_masks,
        background_rgb=border_mode_colour(np.asarray(rgb_image)),
    )


class StreamingImages(torch.utils.data.Dataset):
    """Each image prepared when it is asked for (in the DataLoader worker that asks): no store.

    Indexed like `PreparedStore`, so a `PairDataset` takes either. Reads are sharded by the
    sampler: every epoch each index goes to exactly one rank (DistributedSampler) and, within a
    rank, each batch to one worker, so ranks and workers read disjoint files.
    """

    def __init__(
        self,
        sources: Sequence[ImageSource],
        components: ComponentLookup,
        preprocessing: ImagePreprocessing,
        matte_rgb: tuple[int, int, int],
    ):
        self.sources = sources
        self.components = components
        self.preprocessing = preprocessing
        self.matte_rgb = matte_rgb

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> PreparedImage:
        return prepare_image(self.sources[index], self.components, self.preprocessing, self.matte_rgb)


def _unchanged(prepared: PreparedImage) -> PreparedImage:
    return prepared


def store_bytes(sources: Sequence[ImageSource], preprocessing: ImagePreprocessing) -> int:
    """What a `PreparedStore` of `sources` takes on disk: the pixels plus one bit-packed mask per tag."""
    pixels = preprocessing.crop_size * preprocessing.crop_size
    return len(sources) * pixels * 3 + sum(len(source.tag_traits) for source in sources) * ((pixels + 7) // 8)


def choose_image_source(requested: str, needed_bytes: int, max_store_gib: float) -> str:
    """`store` or `stream`: as requested, or for "auto" the store whenever it fits `max_store_gib`.

    Measured (docs/benchmarks.md): a worker streams about as fast as it prepares the store, and
    reads the store 5-10x faster than it streams. So with one epoch the two cost the same and
    with more the store is faster; the stream is for runs whose store would not fit the disk
    (NFT1000 at 224 px: about 1 TB).
    """
    if requested != "auto":
        return requested
    return "store" if needed_bytes <= max_store_gib * 2**30 else "stream"


class PreparedStore:
    """Memory-mapped prepared images: read-only once built, safe to share between worker processes."""

    def __init__(self, directory: Path):
        meta = json.loads((directory / "meta.json").read_text())
        self.directory = directory
        self.count: int = meta["count"]
        self.size: int = meta["size"]
        self._tag_offsets = np.load(directory / "tag_offsets.npy")
        self._background = np.load(directory / "background.npy")
        self._images: np.ndarray | None = None
        self._masks: np.ndarray | None = None

    def _open(self) -> None:
        # Opened lazily so a store handed to DataLoader workers is mapped in each worker, not pickled.
        self._images = np.load(self.directory / "images.npy", mmap_mode="r")
        self._masks = np.load(self.directory / "masks.npy", mmap_mode="r")

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_images": None, "_masks": None}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> PreparedImage:
        if self._images is None:
            self._open()
        start, stop = self._tag_offsets[index], self._tag_offsets[index + 1]
        pixels = self.size * self.size
        tag_masks = np.unpackbits(self._masks[start:stop], axis=1, count=pixels).astype(bool)
        return PreparedImage(
            rgb=np.asarray(self._images[index]),
            tag_masks=tag_masks.reshape(stop - start, self.size, self.size),
            background_rgb=self._background[index],
        )


def build_prepared_store(
    sources: Sequence[ImageSource],
    components: ComponentLookup,
    preprocessing: ImagePreprocessing,
    matte_rgb: tuple[int, int, int],
    directory: Path,
    num_workers: int,
) -> PreparedStore:
    """The store for `sources` in `directory`, prepared now unless a finished one is already there.

    The caller owns the directory (the run directory is wiped when a new run starts in it).
    Written into a temporary directory and renamed into place when complete, so a killed run never
    leaves a half-written store that a later run would trust.
    """
    if (directory / "meta.json").exists():
        return PreparedStore(directory)
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    size = preprocessing.crop_size
    tag_counts = [len(source.tag_traits) for source in sources]
    tag_offsets = np.concatenate([[0], np.cumsum(tag_counts, dtype=np.int64)]).astype(np.int64)
    images = np.lib.format.open_memmap(
        partial / "images.npy", mode="w+", dtype=np.uint8, shape=(len(sources), size, size, 3)
    )
    masks = np.lib.format.open_memmap(
        partial / "masks.npy", mode="w+", dtype=np.uint8, shape=(int(tag_offsets[-1]), (size * size + 7) // 8)
    )
    background = np.zeros((len(sources), 3), dtype=np.uint8)
    loader = torch.utils.data.DataLoader(
        StreamingImages(sources, components, preprocessing, matte_rgb),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_unchanged,
    )
    for index, prepared in enumerate(loader):
        images[index] = prepared.rgb
        masks[tag_offsets[index] : tag_offsets[index + 1]] = np.packbits(
            prepared.tag_masks.reshape(len(prepared.tag_masks), size * size), axis=1  # 0 tags: 0 rows
        )
        background[index] = prepared.background_rgb
    images.flush()
    masks.flush()
    del images, masks
    np.save(partial / "tag_offsets.npy", tag_offsets)
    np.save(partial / "background.npy", background)
    (partial / "meta.json").write_text(json.dumps({"count": len(sources), "size": size}))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(partial, directory)
    return PreparedStore(directory)
