"""Training throughput on CPU: the tiny preset's steps against the data pipeline that feeds them.

The data pipeline must outrun the model by at least 3x so it never starves an accelerator. It has
two stages (see nft_pipeline/train/prepared.py):

- prepare, once per run: decode the 512 px PNG, match each trait's component, resize image and
  masks to the model's input size, write the memory-mapped store;
- per epoch: read the store, draw and apply the masking, normalise, tokenize, collate.

"Decode every epoch" is what the per-epoch rate would be without the store (prepare + per epoch
for each sample), for comparison. Inputs are real sample art standardized like the pipeline does
(Nouns with ground-truth components, CryptoPunks without). Prints a markdown table.

    python benchmarks/bench_train.py                  # defaults: 256 Nouns + 256 punks, 20 steps
    python benchmarks/bench_train.py --tokens 64 --steps 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from nft_pipeline.train.config import TrainConfig
from nft_pipeline.train.data import PairCollator, image_sources, training_loader
from nft_pipeline.train.distributed import start_runtime
from nft_pipeline.train.loop import build_optimizer, build_scheduler, forward_backward, optimizer_step
from nft_pipeline.train.model import build_tiny_clip
from nft_pipeline.train.prepared import build_prepared_store, prepare_image
from nft_pipeline.train.sample_data import nouns_inputs, punks_inputs


def rate(samples: int, seconds: float) -> float:
    return samples / seconds


def model_rate(config: TrainConfig, batches: list[dict[str, torch.Tensor]], bundle, steps: int, threads: int) -> float:
    """Training steps (forward, backward, AdamW) on batches already in memory."""
    torch.set_num_threads(threads)
    model = bundle.model.train()
    runtime = start_runtime(config)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total_steps=steps + 2)
    for batch in batches[:2]:  # warm-up: allocator, kernels
        forward_backward(model, model, batch, 1, runtime)
        optimizer_step(model, optimizer, scheduler, config)
    started = time.perf_counter()
    for step in range(steps):
        forward_backward(model, model, batches[step % len(batches)], 1, runtime)
        optimizer_step(model, optimizer, scheduler, config)
    return rate(steps * config.batch_size, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256, help="tokens per collection (Nouns and CryptoPunks)")
    parser.add_argument("--steps", type=int, default=20)
    arguments = parser.parse_args()
    config = TrainConfig(num_workers=0, masking_mode="each", masking_probability=0.5)

    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        nouns, noun_components = nouns_inputs(range(arguments.tokens), directory / "images")
        punks, punk_components = punks_inputs(range(arguments.tokens), directory / "images")
        examples, components = nouns + punks, {**noun_components, **punk_components}
        bundle = build_tiny_clip(config, [example.caption.caption for example in examples])
        preprocessing = bundle.preprocessing
        sources = image_sources(examples)
        torch.set_num_threads(1)

        started = time.perf_counter()
        for source in sources:
            prepare_image(source, components, preprocessing, config.matte_rgb)
        prepare = rate(len(sources), time.perf_counter() - started)

        store = build_prepared_store(sources, components, preprocessing, config.matte_rgb, directory / "store", 0)
        collator = PairCollator(bundle.tokenizer, config.context_length, preprocessing)
        loader = training_loader(examples, store, collator, config, num_replicas=1, rank=0)
        loader.sampler.set_epoch(0)
        started = time.perf_counter()
        batches = list(loader)
        per_epoch = rate(len(batches) * config.batch_size, time.perf_counter() - started)
        decode_every_epoch = 1.0 / (1.0 / prepare + 1.0 / per_epoch)

        model_rates = {threads: model_rate(config, batches, bundle, arguments.steps, threads) for threads in (1, 2)}
    fastest_model = max(model_rates.values())

    print(
        f"\ntiny preset: {config.tiny_layers} layers x {config.tiny_width} wide, {config.tiny_image_size} px input, "
        f"batch {config.batch_size}, {len(examples)} pairs (512 px PNGs), masking `each` p=0.5; one process\n"
    )
    print("| stage | samples/s | vs fastest model step |")
    print("|---|---:|---:|")
    for threads, value in model_rates.items():
        print(f"| model training step, {threads} torch thread(s) | {value:,.0f} | {value / fastest_model:.2f}x |")
    print(
        f"| data, per epoch (store + mask + tokenize + collate) | {per_epoch:,.0f} | {per_epoch / fastest_model:.1f}x |"
    )
    print(
        f"| data, prepare once per run (decode + components + resize) | {prepare:,.0f} | {prepare / fastest_model:.2f}x |"
    )
    print(
        f"| data, if decoding every epoch (no store) | {decode_every_epoch:,.0f} | "
        f"{decode_every_epoch / fastest_model:.2f}x |"
    )


if __name__ == "__main__":
    main()
