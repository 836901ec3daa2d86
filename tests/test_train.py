"""Training CLIP offline with the tiny preset: model round trip, splits, learning, exact resume, DDP on gloo."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from nft_pipeline.captions import caption_token, count_text_tokens
from nft_pipeline.clip_tokenizer import clip_tokenizer
from nft_pipeline.train import (
    TrainConfig,
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
from nft_pipeline.train.component_pairs import component_examples
from nft_pipeline.train.data import PairCollator, Split, image_sources, training_loader
from nft_pipeline.train.distributed import start_runtime
from nft_pipeline.train.optim import build_optimizer, build_scheduler
from nft_pipeline.train.model import ImagePreprocessing, build_tiny_clip, build_vit_b_32, image_embeddings, text_embeddings
from nft_pipeline.train.prepared import StreamingImages, build_prepared_store, choose_image_source, store_bytes
from nft_pipeline.train.sample_data import nouns_inputs, punks_inputs
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


# Expected ids: OpenAI's vocabulary is the 256 byte symbols (printable ASCII from "!" = 0), the same
# with "</w>" (+256: "!</w>" 256, "#</w>" 258, "%</w>" 260, ",</w>" 267, "."</w> 269, "0</w>" 271,
# ":</w>" 281, "a</w>" 320), then one token per merge (512 + its line in the file), then 49406/49407.
# Multi-byte words were worked out with OpenAI's simple_tokenizer algorithm re-typed independently of
# transformers (greedy lowest-rank merges over the same file); "a photo of a cat" is OpenAI's example.
OPENAI_IDS = {
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    "Hello, world!": [49406, 3306, 267, 1002, 256, 49407],
    "CryptoPunk #0: a Female 2 with a Blonde Bob.": [
        49406, 8080, 7246, 258, 271, 281, 320, 3970, 273, 593, 320, 10711, 4423, 269, 49407,
    ],
    "it's  3.5%": [49406, 585, 568, 274, 269, 276, 260, 49407],  # "'s" splits off; digits one by one
    "café naïve": [49406, 15304, 1097, 35689, 563, 49407],  # "é" is bytes C3 A9: "Ã©"
    "Ünïcödé 🙂": [49406, 6522, 77, 35689, 66, 7255, 67, 4166, 14860, 49407],  # lower-cased; emoji one token
}


@pytest.mark.parametrize("text", OPENAI_IDS)
def test_clip_tokenizer_gives_openai_ids(text):
    tokenizer = clip_tokenizer()
    assert len(tokenizer) == 49408 and (tokenizer.bos_token_id, tokenizer.eos_token_id) == (49406, 49407)
    assert tokenizer(text)["input_ids"] == OPENAI_IDS[text]
    assert count_text_tokens(text) == len(OPENAI_IDS[text])  # the captions stage counts with the same tokenizer


def test_vocabulary_layout_is_openais():
    vocab = clip_tokenizer().get_vocab()
    assert vocab["!"] == 0 and vocab["!</w>"] == 256 and vocab["a</w>"] == 320
    assert vocab["photo</w>"] == 1125 and vocab["cat</w>"] == 2368
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407


def test_tiny_preset_round_trips_through_save_pretrained(tmp_path):
    captions = ["Noun 1: a Noun with a cone head and red glasses.", "CryptoPunk #2: a Female 2 with an Earring."]
    bundle = build_tiny_clip(TINY)
    bundle.save(tmp_path / "tiny")
    loaded = load_clip(tmp_path / "tiny")
    processor = CLIPProcessor.from_pretrained(tmp_path / "tiny")  # loads like a hub model
    assert loaded.preprocessing == bundle.preprocessing
    tokens = processor.tokenizer(captions, padding=True, return_tensors="pt")
    assert torch.equal(tokens["input_ids"], clip_tokenizer()(captions, padding=True, return_tensors="pt")["input_ids"])
    assert [len(ids) for ids in processor.tokenizer(captions)["input_ids"]] == [count_text_tokens(c) for c in captions]
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


def test_schedule_warms_up_from_zero_peaks_once_then_decays_to_the_floor():
    config = replace(TINY, learning_rate=1.0, warmup_fraction=0.25, min_lr_ratio=0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.learning_rate)
    scheduler = build_scheduler(optimizer, config, total_steps=20)  # 5 warmup steps
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])  # the rate this optimizer step uses
        optimizer.step()
        scheduler.step()
    assert rates[:6] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])  # linear from 0; peak at step 5 only
    assert rates.count(max(rates)) == 1
    progress = [(step - 5) / 15 for step in range(5, 20)]
    assert rates[5:] == pytest.approx([0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)) for p in progress])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)  # after the last step: the floor


def test_vit_b_32_preset_is_openais_architecture_and_processing(tmp_path):
    bundle = build_vit_b_32(TINY)
    assert sum(p.numel() for p in bundle.model.parameters()) == 151_277_313  # openai/clip-vit-base-patch32's count
    text, vision = bundle.model.config.text_config, bundle.model.config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.vocab_size) == (512, 12, 8, 49408)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size) == (768, 12, 224, 32)
    assert text.hidden_act == vision.hidden_act == "quick_gelu" and text.eos_token_id == 49407
    assert bundle.preprocessing == ImagePreprocessing(
        224, 224, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    )
    bundle.save(tmp_path / "vit")
    processor = CLIPProcessor.from_pretrained(tmp_path / "vit")  # loads like the hub id
    assert processor.image_processor.resample == 3  # bicubic, as the hub's preprocessor_config.json says
    assert processor.tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert load_clip(tmp_path / "vit").preprocessing == bundle.preprocessing


def test_on_cpu_every_gpu_speedup_is_off(nouns, tmp_path):
    runtime = start_runtime(TINY)
    assert runtime.device.type == "cpu"
    assert runtime.accelerations() == {
        "bf16_autocast": False,
        "tf32_matmul": False,
        "fused_adamw": False,
        "pinned_memory": False,
        "non_blocking_copies": False,
        "torch_compile": False,
    }
    model = build_tiny_clip(TINY).model
    optimizer = build_optimizer(model, TINY, fused=runtime.on_gpu)
    assert not optimizer.defaults["fused"]
    assert runtime.wrap(model) is model  # neither DDP nor compiled
    examples, components = nouns
    preprocessing = ImagePreprocessing(32, 32, (0.5,) * 3, (0.5,) * 3)
    store = build_prepared_store(image_sources(examples[:4]), components, preprocessing, (255,) * 3, tmp_path / "store", 0)
    collator = PairCollator(clip_tokenizer(), 77, preprocessing)
    loader = training_loader(examples[:4], store, collator, replace(TINY, batch_size=2), 1, 0, pin_memory=runtime.on_gpu)
    assert not loader.pin_memory


@pytest.mark.slow
def test_vit_b_32_preset_trains_end_to_end_on_cpu(tmp_path):
    """The real architecture at 224 px with CLIP's tokenizer: a few steps, evaluated, saved like a hub model."""
    examples, components = nouns_inputs(range(10), tmp_path / "images")  # by_token: 7 train, 1 val, 2 test
    config = replace(TINY, model_name_or_path="vit-b-32", epochs=1, batch_size=2, masking_probability=0.5)
    run = train_clip(examples, components, config, tmp_path / "run")
    assert run.steps == 3 and run.finished and math.isfinite(run.epoch_metrics[0]["train_loss"])
    assert run.fine_tuned["global"]["count"] == 2 == run.zero_shot["global"]["count"]
    bundle = load_clip(run.model_dir)
    assert bundle.preprocessing.crop_size == 224 and bundle.model.config.vision_config.patch_size == 32
    assert bundle.tokenizer("a photo of a cat")["input_ids"] == OPENAI_IDS["a photo of a cat"]
    base, trained = state_dict_of(tmp_path / "run" / "base"), bundle.model.state_dict()
    assert not torch.equal(base["visual_projection.weight"], trained["visual_projection.weight"])  # it trained


def test_streamed_images_from_object_storage_train_exactly_like_the_store(nouns, tmp_path):
    """Workers decoding PNGs from a `memory://` data root every epoch give the run the store gives."""
    from upath import UPath

    examples, components = nouns
    remote_root = UPath(f"memory://nft-train/{tmp_path.name}")
    remote = []
    for example in examples:
        path = remote_root / example.collection / Path(example.image_path).name
        path.write_bytes(Path(example.image_path).read_bytes())
        remote.append(replace(example, image_path=path))
    config = replace(TINY, epochs=1, batch_size=4, masking_mode="each", masking_probability=0.5)
    stored = train_clip(examples, components, replace(config, data_source="store"), tmp_path / "store")
    streamed = train_clip(remote, components, replace(config, data_source="stream"), tmp_path / "stream")
    assert (stored.data_source, streamed.data_source) == ("store", "stream")
    assert not (tmp_path / "stream" / "prepared").exists()  # nothing decoded ahead, nothing on disk
    assert streamed.epoch_metrics[0]["train_loss"] == stored.epoch_metrics[0]["train_loss"]
    assert streamed.fine_tuned == stored.fine_tuned


def test_streaming_reads_are_disjoint_across_ranks_and_workers(nouns):
    examples, components = nouns
    preprocessing = ImagePreprocessing(32, 32, (0.5,) * 3, (0.5,) * 3)
    images = StreamingImages(image_sources(examples[:16]), components, preprocessing, (255,) * 3)
    collator = PairCollator(clip_tokenizer(), 77, preprocessing)
    config = replace(TINY, batch_size=2, num_workers=2, masking_probability=0.0)
    read_by = {}
    for rank in (0, 1):
        loader = training_loader(examples[:16], images, collator, config, num_replicas=2, rank=rank)
        loader.sampler.set_epoch(3)
        for batch in loader:
            for index in batch["indices"].tolist():
                assert index not in read_by, f"{index} read twice"
                read_by[index] = rank
    assert sorted(read_by) == list(range(16)) and set(read_by.values()) == {0, 1}


def test_component_pairs_join_training_and_wise_ft_alpha_zero_gives_back_the_start(nouns, tmp_path):
    examples, components = nouns
    train = split_examples(examples, "by_token", TINY.split_ratios, TINY.seed).select(examples, "train")
    pairs = component_examples(train, components, 0.2, tmp_path / "pairs")  # 16 train tokens: 0.2 of 20 is 4
    assert len(pairs) == 4 and len({pair.key for pair in pairs}) == 4
    for pair in pairs:
        trait = tuple(pair.token_id.removeprefix("component:").split("=", 1))
        assert np.array_equal(np.asarray(Image.open(pair.image_path)), components["nouns"][trait][1])
        assert pair.caption.tags == [] and pair.caption.caption.endswith(".")
        assert any(tag["phrase"] + "." == pair.caption.caption for example in train for tag in example.caption.tags)

    config = replace(TINY, epochs=1, batch_size=4, component_pairs_share=0.2, wise_ft_alpha=0.0)
    run = train_clip(examples, components, config, tmp_path / "run")
    assert run.steps == 5  # (16 token pairs + 4 component pairs) / 4
    assert run.fine_tuned["global"]["count"] == 3  # the test split is tokens only
    assert run.interpolated == run.zero_shot  # alpha 0: the starting weights, evaluated the same way
    start, saved = state_dict_of(tmp_path / "run" / "base"), state_dict_of(run.model_dir)
    assert all(torch.equal(start[name], saved[name]) for name in start)


def test_auto_keeps_the_store_while_it_fits_the_disk_budget(nouns, tmp_path):
    examples, components = nouns
    sources = image_sources(examples[:3])
    preprocessing = ImagePreprocessing(32, 32, (0.5,) * 3, (0.5,) * 3)
    needed = store_bytes(sources, preprocessing)
    store = build_prepared_store(sources, components, preprocessing, (255,) * 3, tmp_path / "store", 0)
    on_disk = (store.directory / "images.npy").stat().st_size + (store.directory / "masks.npy").stat().st_size
    assert 0 < on_disk - needed <= 2 * 128  # the two arrays, less their .npy headers
    budget_gib = needed / 2**30
    assert choose_image_source("auto", needed, budget_gib) == "store"
    assert choose_image_source("auto", needed + 1, budget_gib) == "stream"
    assert choose_image_source("store", needed + 1, budget_gib) == "store"


def test_configs_recorded_before_a_field_was_retired_still_load():
    recorded = {**TINY.to_dict(), "tiny_vocab_size": 2048}  # run.json of a run from before CLIP's own tokenizer
    assert TrainConfig.from_dict(json.loads(json.dumps(recorded))) == TINY
    with pytest.raises(ValueError, match="unknown config fields"):
        TrainConfig.from_dict({**TINY.to_dict(), "tiny_vocab": 1})


def test_caption_phrasings_vary_the_training_text_per_epoch_and_evaluation_keeps_the_canonical(nouns):
    examples, components = nouns
    preprocessing = ImagePreprocessing(32, 32, (0.5,) * 3, (0.5,) * 3)
    images = StreamingImages(image_sources(examples[:8]), components, preprocessing, (255,) * 3)
    canonical = {index: example.caption.caption for index, example in enumerate(examples[:8])}
    config = replace(TINY, batch_size=8, num_workers=0, masking_probability=0.0)

    def texts(phrasings: bool, epoch: int) -> dict[int, str]:
        loader = training_loader(examples[:8], images, PairCollator(clip_tokenizer(), 77, preprocessing), replace(config, caption_phrasings=phrasings), 1, 0)
        loader.sampler.set_epoch(epoch)
        dataset = loader.dataset
        return {index: dataset[(epoch, index)].text for index in range(8)}

    assert texts(False, 0) == canonical == texts(False, 1)
    phrased = [texts(True, epoch) for epoch in range(3)]
    assert phrased[0] == texts(True, 0)  # reproducible per (token, epoch)
    assert all(p != canonical for p in phrased) and phrased[0] != phrased[1]
