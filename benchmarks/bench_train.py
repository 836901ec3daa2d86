"""Training throughput of a preset: the model step against the data pipeline that must feed it.

The model step (forward, backward, AdamW, with masking on) runs on the device the run would use
(a GPU when there is one: bf16 autocast, TF32, fused AdamW, pinned memory, optionally
torch.compile) on batches already in memory, so it is timed alone; the data pipeline is timed per
worker (one process, one torch thread) in its two forms (nft_pipeline/train/prepared.py):

- store: decode + components + resize once per run (`prepare`), then per epoch read the
  memory-mapped store, draw and apply the masking, normalise, tokenize, collate;
- stream: all of that every epoch, in the DataLoader workers (no store).

Then the stream through real DataLoaders with several workers, and the workers the model step
needs (model samples/s over one worker's stream samples/s). Inputs are the bundled sample art
standardized like the pipeline does (512 px PNGs; Nouns with ground-truth components, punks
without), generated into a temporary directory. Needs torch, transformers, tokenizers, pillow,
numpy and pyarrow only (no Dagster, DuckDB or LanceDB), so it runs on a bare GPU machine.
Prints markdown tables and one JSON line (`RESULT {...}`).

    python benchmarks/bench_train.py --preset vit-b-32 --steps 30 --batch-size 64 --workers 1 2 4 8
    python benchmarks/bench_train.py --preset tiny --steps 2 --batch-size 4 --tokens 8 --workers 0   # smoke
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from nft_pipeline.train.config import PRESETS, TrainConfig
from nft_pipeline.train.data import PairCollator, PairDataset, image_sources, training_loader
from nft_pipeline.train.distributed import start_runtime
from nft_pipeline.train.loop import forward_backward
from nft_pipeline.train.optim import build_optimizer, build_scheduler, optimizer_step
from nft_pipeline.train.masking import MaskingSettings
from nft_pipeline.train.model import PRESET_BUILDERS
from nft_pipeline.train.prepared import StreamingImages, build_prepared_store
from nft_pipeline.train.sample_data import nouns_inputs, punks_inputs

IMAGE_SIZE = 224


def per_worker_rate(dataset: PairDataset, collator: PairCollator, batch_size: int, samples: int) -> float:
    """Samples/s of one worker: items fetched and collated in this process, one torch thread."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    for first in range(0, samples, batch_size):
        collator([dataset[(0, index % len(dataset))] for index in range(first, min(first + batch_size, samples))])
    return samples / (time.perf_counter() - started)


def loader_rate(loader: DataLoader, batches: int, batch_size: int) -> float:
    """Samples/s out of a DataLoader (workers started and first batch excluded)."""
    iterator = iter(loader)
    next(iterator)
    started = time.perf_counter()
    count = sum(1 for _ in itertools.islice(iterator, batches))
    return count * batch_size / (time.perf_counter() - started)


def train_steps(config: TrainConfig, bundle, batches: list[dict], steps: int) -> dict:
    """`steps` timed optimizer steps after 2 warm-up steps; the loss of every step, peak GPU memory."""
    runtime = start_runtime(config)
    model = bundle.model.to(runtime.device).train()
    trained = runtime.wrap(model)
    optimizer = build_optimizer(model, config, fused=runtime.on_gpu)
    scheduler = build_scheduler(optimizer, config, total_steps=steps + 2)
    if runtime.on_gpu:
        torch.cuda.reset_peak_memory_stats()
    losses = []
    for step in range(steps + 2):
        if step == 2:
            if runtime.on_gpu:
                torch.cuda.synchronize()
            started = time.perf_counter()
        losses.append(forward_backward(trained, model, batches[step % len(batches)], 1, runtime))
        optimizer_step(model, optimizer, scheduler, config)
    if runtime.on_gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {
        "device": torch.cuda.get_device_name() if runtime.on_gpu else "cpu",
        "accelerations": runtime.accelerations(),
        "model_samples_per_s": steps * config.batch_size / seconds,
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if runtime.on_gpu else None,
        "losses": losses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default="tiny")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps (after 2 warm-up steps)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per collection (Nouns and CryptoPunks)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="DataLoader workers to try (stream)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    arguments = parser.parse_args()
    config = TrainConfig(
        model_name_or_path=arguments.preset,
        tiny_image_size=IMAGE_SIZE,
        tiny_patch_size=32,
        batch_size=arguments.batch_size,
        masking_mode="each",
        masking_probability=0.5,
        learning_rate=5e-4 if arguments.preset == "tiny" else 5e-5,
        warmup_fraction=0.0,
        num_workers=0,
        device=arguments.device,
        compile=arguments.compile,
    )
    bundle = PRESET_BUILDERS[arguments.preset](config)
    preprocessing = bundle.preprocessing
    collator = PairCollator(bundle.tokenizer, config.context_length, preprocessing)
    masking = MaskingSettings.from_config(config)
    threads = torch.get_num_threads()

    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        nouns, noun_components = nouns_inputs(range(arguments.tokens), directory / "images")
        punks, punk_components = punks_inputs(range(arguments.tokens), directory / "images")
        examples, components = nouns + punks, {**noun_components, **punk_components}
        sources = image_sources(examples)
        samples = min(len(examples), 4 * arguments.batch_size)

        streaming = StreamingImages(sources, components, preprocessing, config.matte_rgb)
        stream = per_worker_rate(PairDataset(examples, streaming, masking, config.seed), collator, arguments.batch_size, samples)
        torch.set_num_threads(1)
        started = time.perf_counter()
        store = build_prepared_store(sources, components, preprocessing, config.matte_rgb, directory / "store", 0)
        prepare = len(sources) / (time.perf_counter() - started)
        store_bytes = sum(path.stat().st_size for path in (directory / "store").iterdir())
        from_store = per_worker_rate(PairDataset(examples, store, masking, config.seed), collator, arguments.batch_size, samples)

        loader_rates = {}
        for workers in arguments.workers:
            loader = training_loader(examples, streaming, collator, replace(config, num_workers=workers), 1, 0)
            batches = max(1, len(loader) - 1)
            loader_rates[workers] = loader_rate(loader, batches, arguments.batch_size)

        torch.set_num_threads(threads)
        loader = training_loader(examples, store, collator, config, 1, 0, pin_memory=torch.cuda.is_available())
        batches = []
        for epoch in itertools.count():  # each epoch draws new masks
            loader.sampler.set_epoch(epoch)
            batches += list(loader)
            if len(batches) >= arguments.steps + 2:
                break
        model = train_steps(config, bundle, batches, arguments.steps)

    rate = model["model_samples_per_s"]
    workers_needed = math.ceil(rate / stream)
    result = {
        "preset": arguments.preset,
        "image_size": preprocessing.crop_size,
        "batch_size": arguments.batch_size,
        "pairs": len(examples),
        **model,
        "stream_per_worker": stream,
        "store_read_per_worker": from_store,
        "store_prepare_per_worker": prepare,
        "store_kib_per_image": store_bytes / 1024 / len(examples),
        "stream_with_workers": loader_rates,
        "stream_workers_needed": workers_needed,
    }
    print(
        f"\n{arguments.preset} at {preprocessing.crop_size} px, batch {arguments.batch_size}, masking `each` p=0.5, "
        f"{len(examples)} pairs; model on {model['device']} ({threads} threads), data per worker on 1 thread\n"
    )
    print("| stage | samples/s | vs model step |")
    print("|---|---:|---:|")
    rows = [
        (f"model training step ({arguments.steps} steps)", rate),
        ("data per worker, stream: decode + components + resize + mask + collate", stream),
        ("data per worker, store: read + mask + collate (per epoch)", from_store),
        ("data per worker, store: prepare pass (once per run)", prepare),
        *((f"data, stream through a DataLoader, {w} worker(s)", value) for w, value in loader_rates.items()),
    ]
    for name, value in rows:
        print(f"| {name} | {value:,.1f} | {value / rate:.3g}x |" if value >= 10 else f"| {name} | {value:.3g} | {value / rate:.3g}x |")
    memory = model["peak_gpu_memory_gib"]
    print(f"\nstream workers needed to feed the model step: {workers_needed}")
    print(f"store on disk: {result['store_kib_per_image']:.0f} KiB per image")
    print(f"peak GPU memory: {f'{memory:.2f} GiB' if memory is not None else 'n/a (no GPU)'}")
    print(f"accelerations: {model['accelerations']}")
    print("loss per step: " + " ".join(f"{loss:.3f}" for loss in model["losses"]))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
