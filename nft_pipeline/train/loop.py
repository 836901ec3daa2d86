"""Fine-tune CLIP on NFT pairs with dynamic masking: the run the `clip_model` asset asks for.

`train_clip` is the whole run: split the examples (or reuse the split of the checkpoint being
resumed), prepare the base model and the decoded images, evaluate zero-shot, train with AdamW,
warmup + cosine, gradient clipping and accumulation, checkpoint after every epoch, evaluate the
fine-tuned model (and, with WiSE-FT, its interpolation with the starting weights, which is then
what is saved) and save it like a hub model. Component pairs (NFT1000's fork) join the training
part when asked for. Launched by `torchrun`, the same function runs on
every rank (see distributed.py); rank 0 alone writes files and evaluates.

Resuming is exact: a checkpoint holds the model, optimizer, scheduler, RNG states, the epoch and
step reached and the split, and every random draw of an epoch (shuffle, masking) is keyed by
(seed, epoch), so N epochs + resume + M epochs produce the same weights as N + M straight.
An output directory belongs to one run id, which digests every config field that changes what
is trained and every example's key and caption. `resume=True` continues the run found there (and
refuses to touch a different run's directory); `resume=False` wipes it and starts over. Image and
component *content* is not in the id: when those change under the same keys, start over.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader
from transformers import CLIPModel

from nft_pipeline.train.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from nft_pipeline.train.component_pairs import component_examples
from nft_pipeline.train.config import RUN_FILE, TrainConfig
from nft_pipeline.train.data import (
    SPLIT_PARTS,
    PairCollator,
    Split,
    TrainingExample,
    evaluation_loader,
    image_sources,
    split_examples,
    training_loader,
)
from nft_pipeline.train.distributed import Runtime, main_first, start_runtime, stop_runtime, weights_digest
from nft_pipeline.train.evaluate import chunked_clip_loss, embed_pairs, retrieval_metrics
from nft_pipeline.train.loss import clip_loss
from nft_pipeline.train.masking import MaskingSettings
from nft_pipeline.train.optim import build_optimizer, build_scheduler, optimizer_step
from nft_pipeline.train.model import ClipBundle, load_clip, prepare_base_model
from nft_pipeline.train.prepared import (
    ComponentLookup,
    StreamingImages,
    build_prepared_store,
    choose_image_source,
    store_bytes,
)
from nft_pipeline.train.wise_ft import interpolate_weights

log = logging.getLogger(__name__)

CHECKPOINT_FILE = Path("checkpoints") / "last.pt"
OWNER_FILE = "run_id"
RUN_STATE = ("base", "prepared", "component_pairs", "checkpoints", "model", RUN_FILE)  # what a fresh start wipes


@dataclass
class TrainingRun:
    """What a run did and produced; `to_dict` is JSON-ready (the asset's metadata, run.json)."""

    run_id: str
    base_model: str
    config: TrainConfig
    masking: MaskingSettings
    split: Split
    epochs: int  # completed
    steps: int  # optimizer steps
    samples_per_second: float  # training throughput over all completed epochs
    epoch_metrics: list[
        dict[str, float | None]
    ]  # epoch, step, train_loss, val_loss (None: no val pairs), lr, samples/s
    zero_shot: dict[str, Any]
    fine_tuned: dict[str, Any] | None  # None while the run is unfinished
    model_dir: Path | None  # the trained model, loadable with from_pretrained; None while unfinished
    world_size: int
    precision: str
    replica_digests: list[str] = field(default_factory=list)  # one weights digest per rank; all equal
    accelerations: dict[str, bool] = field(default_factory=dict)  # Runtime.accelerations() of rank 0
    data_source: str = "store"  # where images came from: the prepared store or streamed
    interpolated: dict[str, Any] | None = None  # the WiSE-FT model's metrics (config.wise_ft_alpha < 1)

    @property
    def finished(self) -> bool:
        return self.model_dir is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "base_model": self.base_model,
            "config": self.config.to_dict(),
            "masking": self.masking.to_dict(),
            "split": self.split.to_dict(),
            "epochs": self.epochs,
            "steps": self.steps,
            "samples_per_second": self.samples_per_second,
            "epoch_metrics": self.epoch_metrics,
            "zero_shot": self.zero_shot,
            "fine_tuned": self.fine_tuned,
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "world_size": self.world_size,
            "precision": self.precision,
            "replica_digests": self.replica_digests,
            "accelerations": self.accelerations,
            "data_source": self.data_source,
            "interpolated": self.interpolated,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingRun:
        return cls(
            **{
                **values,
                "config": TrainConfig.from_dict(values["config"]),
                "masking": MaskingSettings(**values["masking"]),
                "split": Split.from_dict(values["split"]),
                "model_dir": Path(values["model_dir"]) if values["model_dir"] else None,
            }
        )


def run_identity(config: TrainConfig, examples: Sequence[TrainingExample]) -> str:
    """Same experiment (config fields that shape training, same keys and captions) <=> same id."""
    digest = hashlib.sha256(config.experiment_digest().encode())
    digest.update(json.dumps(sorted((*example.key, example.caption.caption) for example in examples)).encode())
    return digest.hexdigest()[:16]


def claim_output_dir(output_dir: Path, run_id: str, resume: bool) -> bool:
    """Make `output_dir` this run's; True when there is earlier progress of this run to resume."""
    owner_file = output_dir / OWNER_FILE
    owner = owner_file.read_text().strip() if owner_file.exists() else None
    if resume and owner == run_id:
        return True
    if resume and owner is not None:
        raise ValueError(
            f"{output_dir} holds run {owner}, not {run_id} (config or examples changed); "
            "use another output_dir, or resume=False to replace it"
        )
    for name in RUN_STATE:
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    owner_file.write_text(run_id)
    return False


@dataclass
class _Data:
    parts: dict[str, list[TrainingExample]]
    train_loader: DataLoader
    eval_loaders: dict[str, DataLoader]


def _build_data(
    bundle: ClipBundle,
    split: Split,
    examples: Sequence[TrainingExample],
    components: ComponentLookup,
    config: TrainConfig,
    runtime: Runtime,
    output_dir: Path,
    data_source: str,
    extra_train: Sequence[TrainingExample],
) -> _Data:
    """Loaders over a store built now (or found from before) or over images streamed by the workers.

    `extra_train`: pairs that join the training part only (component pairs).
    """
    parts = {part: split.select(examples, part) for part in SPLIT_PARTS}
    parts["train"] += extra_train
    preprocessing = bundle.preprocessing
    collator = PairCollator(bundle.tokenizer, config.context_length, preprocessing)
    if data_source == "stream":
        stores = {
            part: StreamingImages(image_sources(parts[part]), components, preprocessing, config.matte_rgb)
            for part in SPLIT_PARTS
        }
    else:
        with main_first(runtime):  # rank 0 decodes; the others then find the finished stores
            stores = {
                part: build_prepared_store(
                    image_sources(parts[part]),
                    components,
                    preprocessing,
                    config.matte_rgb,
                    output_dir / "prepared" / part,
                    config.num_workers,
                )
                for part in SPLIT_PARTS
            }
    return _Data(
        parts=parts,
        train_loader=training_loader(
            parts["train"], stores["train"], collator, config, runtime.world_size, runtime.rank, runtime.on_gpu
        ),
        eval_loaders={part: evaluation_loader(parts[part], stores[part], collator, config) for part in ("val", "test")},
    )


def _evaluate_test(model: CLIPModel, data: _Data, config: TrainConfig, runtime: Runtime) -> dict[str, Any]:
    images, texts = embed_pairs(model, data.eval_loaders["test"], runtime)
    return retrieval_metrics(
        images,
        texts,
        [example.collection for example in data.parts["test"]],
        config.eval_top_k,
        config.eval_query_chunk,
        config.eval_candidate_chunk,
    )


def _validation_loss(model: CLIPModel, data: _Data, config: TrainConfig, runtime: Runtime) -> float | None:
    if not data.parts["val"]:
        return None
    images, texts = embed_pairs(model, data.eval_loaders["val"], runtime)
    with torch.no_grad():
        return chunked_clip_loss(images, texts, model.logit_scale.float(), config.batch_size)


def forward_backward(
    trained: torch.nn.Module, model: CLIPModel, batch: dict[str, torch.Tensor], accumulation: int, runtime: Runtime
) -> float:
    """Loss and gradients of one micro-batch (contrastive over the global micro-batch); returns the loss.

    `trained` is what to call (DDP or the model itself), `model` the CLIPModel underneath.
    """
    with runtime.autocast():
        output = trained(
            input_ids=runtime.to_device(batch["input_ids"]),
            attention_mask=runtime.to_device(batch["attention_mask"]),
            pixel_values=runtime.to_device(batch["pixel_values"]),
        )
    loss = clip_loss(
        runtime.gather_with_grad(output.image_embeds.float()),
        runtime.gather_with_grad(output.text_embeds.float()),
        model.logit_scale,
    )
    (loss / accumulation).backward()
    return float(loss.detach())


def _train_one_epoch(
    trained: torch.nn.Module,
    model: CLIPModel,
    data: _Data,
    optimizer: AdamW,
    scheduler: LambdaLR,
    steps_per_epoch: int,
    config: TrainConfig,
    runtime: Runtime,
) -> dict[str, float]:
    """One pass; a trailing run of micro-batches too short for a full accumulation is skipped."""
    trained.train()
    accumulation = config.grad_accumulation_steps
    micro_batches = steps_per_epoch * accumulation
    loss_total = 0.0
    started = time.perf_counter()
    for micro_batch, batch in enumerate(itertools.islice(data.train_loader, micro_batches)):
        steps_now = (micro_batch + 1) % accumulation == 0
        # Between optimizer steps, DDP need not average gradients: only the last micro-batch syncs.
        sync = contextlib.nullcontext() if steps_now or not runtime.is_distributed else trained.no_sync()
        with sync:
            loss_total += forward_backward(trained, model, batch, accumulation, runtime)
        if steps_now:
            optimizer_step(model, optimizer, scheduler, config)
    seconds = time.perf_counter() - started
    samples = micro_batches * config.batch_size * runtime.world_size
    return {
        "train_loss": runtime.mean_across_ranks(loss_total / micro_batches),
        "lr": scheduler.get_last_lr()[0],
        "samples": samples,
        "seconds": seconds,
        "samples_per_second": samples / seconds,
    }


def train_clip(
    examples: Sequence[TrainingExample],
    components: ComponentLookup,
    config: TrainConfig,
    output_dir: Path,
    resume: bool = True,
    stop_after_epoch: int | None = None,
) -> TrainingRun:
    """Train (or resume) one run in `output_dir`; returns the same `TrainingRun` on every rank.

    `stop_after_epoch` ends this call once that many epochs are done (a time-boxed job); calling
    again with `resume=True` continues exactly where it stopped.
    """
    runtime = start_runtime(config)
    try:
        return _train(runtime, examples, components, config, Path(output_dir), resume, stop_after_epoch)
    finally:
        stop_runtime(runtime)


def _train(
    runtime: Runtime,
    examples: Sequence[TrainingExample],
    components: ComponentLookup,
    config: TrainConfig,
    output_dir: Path,
    resume: bool,
    stop_after_epoch: int | None,
) -> TrainingRun:
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    run_id = run_identity(config, examples)
    resuming = runtime.broadcast_from_main(claim_output_dir(output_dir, run_id, resume) if runtime.is_main else None)
    checkpoint_path = output_dir / CHECKPOINT_FILE
    checkpoint = load_checkpoint(checkpoint_path, runtime.device) if resuming else None
    split = (
        Split.from_dict(checkpoint["split"])
        if checkpoint
        else split_examples(examples, config.split, config.split_ratios, config.seed)
    )
    with main_first(runtime):  # rank 0 builds a preset and writes component pairs; every rank then reads the files
        base_source = prepare_base_model(config, output_dir / "base")
        bundle = load_clip(base_source)
        extra_train = component_examples(
            split.select(examples, "train"), components, config.component_pairs_share, output_dir / "component_pairs"
        )
    all_sources = image_sources([*examples, *extra_train])
    data_source = choose_image_source(
        config.data_source, store_bytes(all_sources, bundle.preprocessing), config.max_store_gib
    )
    data = _build_data(bundle, split, examples, components, config, runtime, output_dir, data_source, extra_train)
    model = bundle.model.to(runtime.device)
    steps_per_epoch = len(data.train_loader) // config.grad_accumulation_steps
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training split ({len(data.parts['train'])} examples) is smaller than one optimizer step "
            f"({config.batch_size} x {config.grad_accumulation_steps} accumulation x {runtime.world_size} ranks)"
        )
    total_steps = steps_per_epoch * config.epochs
    optimizer = build_optimizer(model, config, fused=runtime.on_gpu)
    scheduler = build_scheduler(optimizer, config, total_steps)
    if checkpoint:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        restore_rng_states(checkpoint["rng"])
        start_epoch, step = checkpoint["epoch"], checkpoint["step"]
        epoch_metrics, zero_shot = checkpoint["epoch_metrics"], checkpoint["zero_shot"]
    else:
        start_epoch, step, epoch_metrics = 0, 0, []
        zero_shot = _evaluate_test(model, data, config, runtime) if runtime.is_main else {}
    trained = runtime.wrap(model)
    last_epoch = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)
    for epoch in range(start_epoch, last_epoch):
        data.train_loader.sampler.set_epoch(epoch)
        metrics = _train_one_epoch(trained, model, data, optimizer, scheduler, steps_per_epoch, config, runtime)
        step += steps_per_epoch
        metrics = {"epoch": epoch + 1, "step": step, **metrics}
        if runtime.is_main:
            metrics["val_loss"] = _validation_loss(model, data, config, runtime)
            epoch_metrics.append(metrics)
            log.info("run %s epoch %d: %s", run_id, epoch + 1, metrics)
            save_checkpoint(
                checkpoint_path,
                {
                    "run_id": run_id,
                    "config": config.to_dict(),
                    "split": split.to_dict(),
                    "epoch": epoch + 1,
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": rng_states(),
                    "epoch_metrics": epoch_metrics,
                    "zero_shot": zero_shot,
                },
            )
        runtime.barrier()
    finished = last_epoch == config.epochs
    replica_digests = runtime.gather_to_all(weights_digest(model))
    run = None
    if runtime.is_main:
        model_dir = output_dir / "model" if finished else None
        fine_tuned = _evaluate_test(model, data, config, runtime) if finished else None
        interpolated = None
        if finished and config.wise_ft_alpha < 1.0:
            interpolate_weights(model, load_clip(base_source).model.state_dict(), config.wise_ft_alpha)
            interpolated = _evaluate_test(model, data, config, runtime)
        if model_dir:
            bundle.save(model_dir)  # the interpolated weights when WiSE-FT is on
        total_samples = sum(m["samples"] for m in epoch_metrics)
        total_seconds = sum(m["seconds"] for m in epoch_metrics)
        run = TrainingRun(
            run_id=run_id,
            base_model=config.model_name_or_path,
            config=config,
            masking=MaskingSettings.from_config(config),
            split=split,
            epochs=len(epoch_metrics),
            steps=step,
            samples_per_second=total_samples / total_seconds if total_seconds else 0.0,
            epoch_metrics=epoch_metrics,
            zero_shot=zero_shot,
            fine_tuned=fine_tuned,
            model_dir=model_dir,
            world_size=runtime.world_size,
            precision=runtime.precision_name,
            replica_digests=replica_digests,
            accelerations=runtime.accelerations(),
            data_source=data_source,
            interpolated=interpolated,
        )
        (output_dir / RUN_FILE).write_text(json.dumps(run.to_dict(), indent=2))
    return runtime.broadcast_from_main(run)
