"""Training CLIP offline with the tiny preset: model round trip, splits, learning, exact resume, DDP on gloo."""

from __future__ import annotations

import json
import os
import random
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import CLIPModel, CLIPProcessor

from nft_pipeline.captions import caption_token
from nft_pipeline.train import (
    TrainingExample,
    TrainingRun,
    load_clip,
    load_components,
    load_examples,
    save_training_inputs,
    split_examples,
    torchrun_command,
    train_clip,
)
from nft_pipeline.train.data import Split
from nft_pipeline.train.model import build_tiny_clip, image_embeddings, text_embeddings
from nft_pipeline.train.sample_data import nouns_inputs, punks_inputs
from nft_pipeline.train.tokenizer import learn_merges, train_clip_tokenizer, word_counts
from tests.tiny_model import TINY, one_torch_thread


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def nouns(tmp_path_factory):
    """20 Nouns: by_token gives 16 train, 1 val, 3 test."""
    return nouns_inputs(range(20), tmp_path_factory.mktemp("nouns"))


def state_dict_of(model_dir: Path) -> dict[str, torch.Tensor]:
    return CLIPModel.from_pretrained(model_dir).state_dict()


def test_tied_merges_go_to_the_smaller_pair_on_every_call():
    # "ge" and "gb" are equally frequent: a hash-ordered tie-break gave alternating vocabularies.
    vocabularies = {tuple(sorted(train_clip_tokenizer(["ge gb", "gb ge"] * 3, 600).get_vocab().items())) for _ in range(4)}
    assert len(vocabularies) == 1
    assert learn_merges(word_counts(["ge gb", "gb ge"]), 10) == [("g", "b</w>"), ("g", "e</w>")]


def test_tokenizer_is_deterministic_and_never_falls_back_to_unknown():
    captions = [
        caption_token("Nouns", f"Noun {i}", str(i), [{"trait_type": "head", "value": "cone"}]).caption
        for i in range(50)
    ]
    first, second = train_clip_tokenizer(captions, 700), train_clip_tokenizer(captions, 700)
    assert first.get_vocab() == second.get_vocab()
    assert len(first) > 514  # some merges were learnt beyond the byte symbols
    assert len(first.tokenize("a cone head")) == 3  # frequent words became whole tokens
    ids = first("Ünïcödé 🙂 CAPTION, unseen!")["input_ids"]
    assert ids[0] == first.bos_token_id and ids[-1] == first.eos_token_id
    assert first.eos_token_id not in ids[1:-1]  # no unknown character became the end marker
    assert first.decode(ids, skip_special_tokens=True) == "ünïcödé 🙂 caption , unseen !"


def test_tiny_preset_round_trips_through_save_pretrained(tmp_path):
    captions = ["Noun 1: a Noun with a cone head and red glasses.", "CryptoPunk #2: a Female 2 with an Earring."]
    bundle = build_tiny_clip(TINY, captions * 5)
    bundle.save(tmp_path / "tiny")
    loaded = load_clip(tmp_path / "tiny")
    processor = CLIPProcessor.from_pretrained(tmp_path / "tiny")  # loads like a hub model
    assert loaded.preprocessing == bundle.preprocessing
    tokens = processor.tokenizer(captions, padding=True, return_tensors="pt")
    assert torch.equal(tokens["input_ids"], bundle.tokenizer(captions, padding=True, return_tensors="pt")["input_ids"])
    pixels = torch.rand(2, 3, TINY.tiny_image_size, TINY.tiny_image_size)

    def embed(model: CLIPModel) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            model.eval()
            return image_embeddings(model, pixels), text_embeddings(
                model, tokens["input_ids"], tokens["attention_mask"]
            )

    (original_images, original_texts), (loaded_images, loaded_texts) = embed(bundle.model), embed(loaded.model)
    assert torch.equal(original_images, loaded_images) and torch.equal(original_texts, loaded_texts)
    assert not torch.equal(loaded_texts[0], loaded_texts[1])


def fake_examples(collections: int, tokens: int) -> list[TrainingExample]:
    return [
        TrainingExample(f"c{c}", str(t), Path(f"/nowhere/{c}/{t}.png"), caption_token(f"c{c}", None, str(t), []))
        for c in range(collections)
        for t in range(tokens)
    ]


def test_split_by_collection_is_80_5_15_disjoint_deterministic_and_serialisable():
    examples = fake_examples(20, 3)
    split = split_examples(examples, "by_collection", (0.8, 0.05, 0.15), seed=3)
    collections = {part: {key[0] for key in split.keys(part)} for part in ("train", "val", "test")}
    assert [len(collections[part]) for part in ("train", "val", "test")] == [16, 1, 3]
    assert not (collections["train"] & collections["test"]) and not (collections["val"] & collections["test"])
    assert sum(len(split.keys(part)) for part in ("train", "val", "test")) == 60
    shuffled = examples[:]
    random.Random(1).shuffle(shuffled)
    assert split_examples(shuffled, "by_collection", (0.8, 0.05, 0.15), seed=3) == split
    assert split_examples(examples, "by_collection", (0.8, 0.05, 0.15), seed=4) != split
    assert Split.from_dict(json.loads(json.dumps(split.to_dict()))) == split
    assert [e.key for e in split.select(shuffled, "test")] == list(split.test)


def test_split_by_token_cuts_within_each_collection():
    split = split_examples(fake_examples(2, 40), "by_token", (0.8, 0.05, 0.15), seed=0)
    for collection in ("c0", "c1"):
        sizes = [sum(key[0] == collection for key in split.keys(part)) for part in ("train", "val", "test")]
        assert sizes == [32, 2, 6]
    with pytest.raises(ValueError, match="by_token"):
        split_examples(fake_examples(1, 40), "by_collection", (0.8, 0.05, 0.15), seed=0)


def test_training_inputs_round_trip_through_files(nouns, tmp_path):
    examples, components = nouns
    save_training_inputs(examples[:4], components, tmp_path / "inputs")
    assert load_examples(tmp_path / "inputs") == examples[:4]
    loaded = load_components(tmp_path / "inputs")["nouns"]
    assert set(loaded) == set(components["nouns"])
    for trait, (mask, rgba) in components["nouns"].items():
        assert np.array_equal(loaded[trait][0], mask) and np.array_equal(loaded[trait][1], rgba)


def test_a_few_steps_on_one_batch_lower_the_loss(nouns, tmp_path):
    examples, components = nouns
    # One batch of all 16 training pairs, unmasked: each epoch is one step on the same batch.
    config = replace(TINY, epochs=6, batch_size=16, masking_probability=0.0, learning_rate=2e-3, warmup_fraction=0.0)
    run = train_clip(examples, components, config, tmp_path / "run")
    losses = [metrics["train_loss"] for metrics in run.epoch_metrics]
    assert run.steps == 6 and len(losses) == 6
    assert losses[-1] < losses[0] - 0.3, losses
    assert run.finished and (run.model_dir / "model.safetensors").exists()
    assert set(run.fine_tuned["global"]) == {"count", "text_to_image", "image_to_text"}
    assert run.fine_tuned["global"]["count"] == 3 == run.zero_shot["global"]["count"]
    assert TrainingRun.from_dict(json.loads((tmp_path / "run" / "run.json").read_text())) == run


def test_resume_gives_the_weights_of_an_uninterrupted_run(nouns, tmp_path):
    examples, components = nouns
    config = replace(TINY, epochs=2, batch_size=4, masking_mode="each", masking_probability=0.5, learning_rate=1e-3)
    straight = train_clip(examples, components, config, tmp_path / "straight")

    # Interrupted after one epoch, resumed in a fresh call (and with a worker process, which must not matter).
    with_worker = replace(config, num_workers=1)
    halfway = train_clip(examples, components, with_worker, tmp_path / "resumed", stop_after_epoch=1)
    assert not halfway.finished and halfway.epochs == 1 and halfway.fine_tuned is None
    resumed = train_clip(examples, components, with_worker, tmp_path / "resumed", resume=True)

    assert resumed.steps == straight.steps == 8
    assert [m["train_loss"] for m in resumed.epoch_metrics] == [m["train_loss"] for m in straight.epoch_metrics]
    expected, actual = state_dict_of(straight.model_dir), state_dict_of(resumed.model_dir)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    initial = state_dict_of(tmp_path / "straight" / "base")
    assert not torch.equal(initial["text_projection.weight"], actual["text_projection.weight"])  # it did train

    with pytest.raises(ValueError, match="holds run"):
        train_clip(examples, components, replace(config, learning_rate=5e-4), tmp_path / "resumed", resume=True)


def test_two_gloo_processes_agree_with_each_other_and_with_one_process(nouns, tmp_path):
    examples, components = nouns
    save_training_inputs(examples, components, tmp_path / "inputs")
    # Two ranks x 8 pairs gather into the same global batch of 16 as one process with batch 16.
    config = replace(TINY, epochs=2, batch_size=8, masking_probability=0.0, learning_rate=1e-3)
    command = torchrun_command(config, tmp_path / "inputs", tmp_path / "ddp", processes=2)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    distributed = TrainingRun.from_dict(json.loads((tmp_path / "ddp" / "run.json").read_text()))
    assert distributed.finished and distributed.world_size == 2 and distributed.steps == 2
    assert len(distributed.replica_digests) == 2 and len(set(distributed.replica_digests)) == 1

    single = train_clip(examples, components, replace(config, batch_size=16), tmp_path / "single")
    # The first step's loss is measured before any update: same global batch, same loss.
    assert distributed.epoch_metrics[0]["train_loss"] == pytest.approx(single.epoch_metrics[0]["train_loss"], abs=1e-5)
    assert distributed.split == single.split


def test_a_run_without_enough_pairs_for_one_step_says_so(tmp_path):
    examples, components = punks_inputs(range(6), tmp_path / "images")
    with pytest.raises(ValueError, match="smaller than one optimizer step"):
        train_clip(examples, components, replace(TINY, batch_size=64), tmp_path / "run")
