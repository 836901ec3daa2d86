"""Dynamic masking on real Nouns: the right pixels, the right words, the right draws, never at evaluation."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from nft_pipeline.captions import caption_token, remove_tag
from nft_pipeline.components import token_component_mask
from nft_pipeline.train.config import TrainConfig
from nft_pipeline.train.data import (
    PairCollator,
    PairSample,
    TrainingExample,
    evaluation_loader,
    image_sources,
    training_loader,
)
from nft_pipeline.train.masking import MaskingSettings, apply_masking, choose_tags, masking_rng
from nft_pipeline.train.model import ImagePreprocessing
from nft_pipeline.train.prepared import PreparedImage, build_prepared_store, prepare_image
from nft_pipeline.train.sample_data import nouns_inputs, punks_inputs
from nft_pipeline.clip_tokenizer import clip_tokenizer

WHITE = (255, 255, 255)
SIZE = 64  # 512 / 8: each model pixel is exactly an 8 x 8 block of the standardized image
PREPROCESSING = ImagePreprocessing(shortest_edge=SIZE, crop_size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def nouns(tmp_path_factory):
    examples, components = nouns_inputs(range(8), tmp_path_factory.mktemp("nouns"))
    prepared = [prepare_image(source, components, PREPROCESSING, WHITE) for source in image_sources(examples)]
    return examples, components, prepared


def visible_tags(prepared: PreparedImage) -> list[int]:
    return [index for index, mask in enumerate(prepared.tag_masks) if mask.any()]


def mask(example, image: PreparedImage, settings: MaskingSettings, rng: np.random.Generator):
    """`apply_masking` on a prepared image and its example's caption."""
    return apply_masking(image.rgb, image.tag_masks, image.background_rgb, example.caption, settings, rng)


def test_prepared_masks_are_the_any_coverage_of_the_full_size_component(nouns):
    examples, components, prepared = nouns
    example, image = examples[0], prepared[0]
    with Image.open(example.image_path) as opened:
        token = np.asarray(opened.convert("RGBA"))
    for index, tag in enumerate(example.caption.tags):
        mask, rgba = components["nouns"][(tag["trait_type"], tag["value"])]
        full = token_component_mask(mask, rgba, token)
        blocks = full.reshape(SIZE, 8, SIZE, 8).any(axis=(1, 3))
        assert np.array_equal(image.tag_masks[index], blocks), tag
    # The image is the 8 x 8 box average of the standardized one (Nouns are opaque: no matte).
    expected = token[..., :3].reshape(SIZE, 8, SIZE, 8, 3).mean(axis=(1, 3))
    assert np.abs(image.rgb.astype(float) - expected).max() <= 0.5 + 1e-9
    assert len(visible_tags(image)) >= 3


@pytest.mark.parametrize("fill", ["background", "mean", "noise"])
def test_one_mode_masks_one_tag_its_phrase_and_exactly_its_pixels(nouns, fill):
    examples, _, prepared = nouns
    settings = MaskingSettings(mode="one", probability=1.0, fill=fill)
    for example_index, (example, image) in enumerate(zip(examples, prepared)):
        masked = mask(example, image, settings, masking_rng(0, 0, example_index))
        assert len(masked.masked_tags) == 1
        (tag_index,) = masked.masked_tags
        tag = example.caption.tags[tag_index]
        assert masked.text == remove_tag(example.caption, tag)
        assert tag["phrase"] not in masked.text and tag["phrase"] in example.caption.caption
        pixels = image.tag_masks[tag_index]
        assert pixels.any()
        assert np.array_equal(masked.rgb[~pixels], image.rgb[~pixels])  # nothing else changed
        if fill == "background":
            assert (masked.rgb[pixels] == image.background_rgb).all()
        elif fill == "mean":
            mean = np.round(image.rgb.reshape(-1, 3).mean(axis=0))
            assert (masked.rgb[pixels] == mean).all()
        else:
            assert (masked.rgb[pixels] != image.rgb[pixels]).any()
    assert not np.shares_memory(masked.rgb, image.rgb)  # the prepared image itself is never written


def test_each_mode_with_certainty_masks_every_visible_tag(nouns):
    examples, _, prepared = nouns
    example, image = examples[1], prepared[1]
    settings = MaskingSettings(mode="each", probability=1.0, fill="background")
    masked = mask(example, image, settings, masking_rng(0, 0, 1))
    visible = visible_tags(image)
    assert masked.masked_tags == tuple(visible) and len(visible) >= 2
    assert masked.text == remove_tag(example.caption, [example.caption.tags[i] for i in visible])
    union = np.logical_or.reduce(image.tag_masks[visible])
    assert np.array_equal(masked.rgb[~union], image.rgb[~union])
    assert (masked.rgb[union] == image.background_rgb).all()


@pytest.mark.parametrize("mode", ["one", "each"])
def test_probability_zero_masks_nothing(nouns, mode):
    examples, _, prepared = nouns
    settings = MaskingSettings(mode=mode, probability=0.0, fill="noise")
    for example_index, (example, image) in enumerate(zip(examples, prepared)):
        masked = mask(example, image, settings, masking_rng(0, 3, example_index))
        assert masked.masked_tags == ()
        assert masked.text == example.caption.caption
        assert np.array_equal(masked.rgb, image.rgb)


def test_tags_without_a_visible_component_are_never_masked(tmp_path):
    examples, components = punks_inputs(range(3), tmp_path)  # punks have no components at all
    settings = MaskingSettings(mode="each", probability=1.0, fill="background")
    for index, source in enumerate(image_sources(examples)):
        image = prepare_image(source, components, PREPROCESSING, WHITE)
        assert image.tag_masks.shape == (len(examples[index].caption.tags), SIZE, SIZE)
        masked = mask(examples[index], image, settings, masking_rng(0, 0, index))
        assert masked.masked_tags == () and masked.text == examples[index].caption.caption


def test_a_token_without_tags_is_stored_with_no_masks(tmp_path):
    """A caption without tags (a token without traits, as some mixed-media tokens are) prepares to
    zero masks, in the store as in memory (the store once failed to pack zero masks)."""
    examples, components = punks_inputs(range(3), tmp_path / "punks")
    untagged = [replace(examples[0], caption=replace(examples[0].caption, tags=[])), *examples[1:]]
    store = build_prepared_store(image_sources(untagged), components, PREPROCESSING, WHITE, tmp_path / "store", 0)
    assert len(store) == 3
    assert store[0].tag_masks.shape == (0, SIZE, SIZE)
    assert store[1].tag_masks.shape == (len(examples[1].caption.tags), SIZE, SIZE)
    in_memory = prepare_image(image_sources(untagged)[0], components, PREPROCESSING, WHITE)
    assert np.array_equal(store[0].rgb, in_memory.rgb)


def test_one_and_each_modes_draw_as_specified():
    visible = [0, 2, 3, 5, 6]
    draws = 2000
    one = [choose_tags(visible, MaskingSettings("one", 0.5, "mean"), masking_rng(1, 0, i)) for i in range(draws)]
    assert max(len(chosen) for chosen in one) == 1
    assert 0.45 < sum(len(chosen) for chosen in one) / draws < 0.55  # masked with probability p
    picked = Counter(chosen[0] for chosen in one if chosen)
    assert set(picked) == set(visible)  # uniformly among visible tags: each about 1/5 of the masked draws
    assert all(0.14 < count / sum(picked.values()) < 0.26 for count in picked.values())

    each = [choose_tags(visible, MaskingSettings("each", 0.3, "mean"), masking_rng(1, 0, i)) for i in range(draws)]
    assert 0.27 < sum(len(chosen) for chosen in each) / (draws * len(visible)) < 0.33  # ~p of all components
    assert max(len(chosen) for chosen in each) >= 3  # several at once, unlike `one`
    assert all(set(chosen) <= set(visible) for chosen in each)


def test_draws_are_keyed_by_seed_epoch_and_example():
    visible = list(range(6))
    settings = MaskingSettings("each", 0.5, "noise")

    def draws(seed: int, epoch: int) -> list[tuple[int, ...]]:
        return [choose_tags(visible, settings, masking_rng(seed, epoch, index)) for index in range(50)]

    assert draws(0, 1) == draws(0, 1)
    assert draws(0, 1) != draws(0, 2)
    assert draws(0, 1) != draws(1, 1)


def test_evaluation_never_masks_while_training_does(nouns, tmp_path):
    examples, components, _ = nouns
    config = TrainConfig(masking_mode="each", masking_probability=1.0, num_workers=0, batch_size=4, eval_batch_size=3)
    tokenizer = clip_tokenizer()
    collator = PairCollator(tokenizer, config.context_length, PREPROCESSING)
    store = build_prepared_store(image_sources(examples), components, PREPROCESSING, WHITE, tmp_path / "store", 0)
    unmasked = collator(
        [PairSample(store[index].rgb, example.caption.caption, index, ()) for index, example in enumerate(examples)]
    )

    evaluation = list(evaluation_loader(examples, store, collator, config))
    assert torch.cat([batch["indices"] for batch in evaluation]).tolist() == list(range(len(examples)))
    assert torch.equal(torch.cat([batch["pixel_values"] for batch in evaluation]), unmasked["pixel_values"])
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for batch in evaluation for ids in batch["input_ids"]]
    assert texts == [tokenizer.decode(ids, skip_special_tokens=True) for ids in unmasked["input_ids"]]

    training = training_loader(examples, store, collator, config, num_replicas=1, rank=0)
    training.sampler.set_epoch(0)
    seen = []
    for batch in training:
        for row, index in enumerate(batch["indices"].tolist()):
            assert not torch.equal(batch["pixel_values"][row], unmasked["pixel_values"][index])
            seen.append(index)
    assert sorted(seen) == list(range(len(examples)))


def test_masking_draws_follow_the_epoch_even_inside_persistent_workers(nouns, tmp_path):
    """Workers never see a set_epoch made in the main process: the epoch must travel with each index."""
    examples, components, _ = nouns
    tokenizer = clip_tokenizer()
    collator = PairCollator(tokenizer, 77, PREPROCESSING)
    store = build_prepared_store(image_sources(examples), components, PREPROCESSING, WHITE, tmp_path / "store", 0)

    def epochs_seen(num_workers: int) -> list[dict[int, tuple[int, ...]]]:
        config = TrainConfig(masking_mode="each", masking_probability=0.5, batch_size=4, num_workers=num_workers)
        loader = training_loader(examples, store, collator, config, num_replicas=1, rank=0)
        seen = []
        for epoch in (0, 1):
            loader.sampler.set_epoch(epoch)
            seen.append(
                {
                    index: tuple(ids[ids != tokenizer.pad_token_id].tolist())
                    for batch in loader
                    for index, ids in zip(batch["indices"].tolist(), batch["input_ids"])
                }
            )
        return seen

    in_process, in_worker = epochs_seen(0), epochs_seen(1)
    assert in_worker == in_process
    assert in_process[0] != in_process[1]  # a new epoch, new masking draws


def test_portrait_images_are_cropped_like_clip_and_masks_follow(tmp_path):
    """512 x 768: shortest edge to 64 (64 x 96), centre crop drops 16 model rows (128 px) top and bottom."""
    height = 768
    token = np.full((height, 512, 4), 255, dtype=np.uint8)
    hat, shirt = np.zeros((height, 512), dtype=bool), np.zeros((height, 512), dtype=bool)
    hat[0:64, 0:64] = True  # above the crop
    shirt[384:448, 256:320] = True  # model rows 48-55 of 96 -> 32-39 after the crop; columns 32-39
    for mask, colour in ((hat, (255, 0, 0, 255)), (shirt, (0, 0, 255, 255))):
        token[mask] = colour
    path = tmp_path / "portrait.png"
    Image.fromarray(token).save(path)
    components = {
        "synthetic": {
            ("hat", "red"): (hat, np.where(hat[..., None], token, 0).astype(np.uint8)),
            ("shirt", "blue"): (shirt, np.where(shirt[..., None], token, 0).astype(np.uint8)),
        }
    }
    attributes = [{"trait_type": "hat", "value": "red"}, {"trait_type": "shirt", "value": "blue"}]
    caption = caption_token("Synthetic", "Token 1", "1", attributes)
    (source,) = image_sources([TrainingExample("synthetic", "1", path, caption)])
    image = prepare_image(source, components, PREPROCESSING, WHITE)

    by_value = {tag["value"]: index for index, tag in enumerate(caption.tags)}
    expected_shirt = np.zeros((SIZE, SIZE), dtype=bool)
    expected_shirt[32:40, 32:40] = True
    assert not image.tag_masks[by_value["red"]].any()
    assert np.array_equal(image.tag_masks[by_value["blue"]], expected_shirt)
    assert (image.rgb[expected_shirt] == (0, 0, 255)).all() and (image.rgb[~expected_shirt] == 255).all()
    assert tuple(image.background_rgb) == WHITE
