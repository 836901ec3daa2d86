"""Dynamic masking (NFT1000): hide a trait's component in the image and its phrase in the caption.

The model then cannot match image and text on that trait, and learns from the traits left. The
paper describes two variants, both offered through `MaskingSettings.mode`:

- `one` (the paper's text): with probability p, mask ONE component, chosen uniformly among the
  token's tags whose component is visible in the token (non-empty pixel mask);
- `each` (the paper's released code): every visible component independently with probability p.

Masked pixels are filled with the image's background colour (the most common border colour), its
mean colour, or uniform noise; each masked tag's phrase is removed from the caption with
`captions.remove_tag`, so the shortened caption stays grammatical. Draws come from a generator
keyed by (seed, epoch, example index): a run is reproducible, a resumed run repeats the draws of
an uninterrupted one, and DataLoader workers never share a stream. Evaluation builds its dataset
without masking settings, so it cannot mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from nft_pipeline.captions import Caption, remove_tag
from nft_pipeline.train.config import MaskingFill, MaskingMode, TrainConfig


@dataclass(frozen=True)
class MaskingSettings:
    mode: MaskingMode
    probability: float
    fill: MaskingFill

    @classmethod
    def from_config(cls, config: TrainConfig) -> MaskingSettings:
        return cls(mode=config.masking_mode, probability=config.masking_probability, fill=config.masking_fill)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class MaskedPair:
    rgb: np.ndarray  # H x W x 3 uint8
    text: str
    masked_tags: tuple[int, ...]  # indices into the caption's tags


def masking_rng(seed: int, epoch: int, example_index: int) -> np.random.Generator:
    """The generator for one example in one epoch; independent of worker, rank and resume point."""
    return np.random.default_rng([seed, epoch, example_index])


def choose_tags(visible: Sequence[int], settings: MaskingSettings, rng: np.random.Generator) -> tuple[int, ...]:
    """Which of the `visible` tags (indices) to mask this time."""
    if not visible:
        return ()
    if settings.mode == "one":
        if rng.random() >= settings.probability:
            return ()
        return (visible[int(rng.integers(len(visible)))],)
    drawn = rng.random(len(visible)) < settings.probability
    return tuple(tag for tag, masked in zip(visible, drawn) if masked)


def fill_pixels(
    rgb: np.ndarray, mask: np.ndarray, fill: MaskingFill, background_rgb: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A copy of `rgb` whose `mask` pixels are replaced by the fill; every other pixel is untouched."""
    filled = rgb.copy()
    if fill == "background":
        filled[mask] = background_rgb
    elif fill == "mean":
        filled[mask] = np.round(rgb.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
    else:
        filled[mask] = rng.integers(0, 256, size=(int(mask.sum()), 3), dtype=np.uint8)
    return filled


def remove_tags(caption: Caption, tags: Sequence[int]) -> str:
    """The caption re-rendered without the given tags (by index), keeping its grammar."""
    return remove_tag(caption, [caption.tags[index] for index in tags])


def apply_masking(
    rgb: np.ndarray,
    tag_masks: np.ndarray,
    background_rgb: np.ndarray,
    caption: Caption,
    settings: MaskingSettings,
    rng: np.random.Generator,
) -> MaskedPair:
    """Mask the chosen components of one (image, caption) pair.

    `tag_masks[i]` is the pixel mask of `caption.tags[i]` in this token at the image's size (all
    False when the trait has no component or the component is not visible in this token).
    """
    visible = [index for index in range(len(tag_masks)) if tag_masks[index].any()]
    chosen = choose_tags(visible, settings, rng)
    if not chosen:
        return MaskedPair(rgb=rgb, text=caption.caption, masked_tags=())
    masked_pixels = np.logical_or.reduce(tag_masks[list(chosen)], axis=0)
    filled = fill_pixels(rgb, masked_pixels, settings.fill, background_rgb, rng)
    return MaskedPair(rgb=filled, text=remove_tags(caption, chosen), masked_tags=chosen)
