"""The optimisation of a run: AdamW, the warmup-cosine schedule, and one optimizer step.

Shared by the training loop and the throughput benchmark (benchmarks/bench_train.py), so the
benchmark times exactly the step a run takes.
"""

from __future__ import annotations

import math

import torch
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR
from transformers import CLIPModel

from nft_pipeline.train.config import TrainConfig

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's cap on the inverse temperature


def build_optimizer(model: torch.nn.Module, config: TrainConfig, fused: bool = False) -> AdamW:
    """AdamW with weight decay on matrices only (open_clip's rule: gains, biases and the temperature are exempt).

    `fused`: one CUDA kernel for the whole update (parameters must be on a GPU).
    """
    decayed = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    exempt = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return AdamW(
        [{"params": decayed, "weight_decay": config.weight_decay}, {"params": exempt, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=config.adam_betas,
        eps=config.adam_eps,
        fused=fused or None,
    )


def build_scheduler(optimizer: AdamW, config: TrainConfig, total_steps: int) -> LambdaLR:
    """Linear warmup from 0, then cosine decay to `learning_rate * min_lr_ratio` (transformers' schedule).

    The multiplier of optimizer step s (0-based) is s / warmup during warmup, so the peak comes at
    step `warmup` exactly once; the hand-written schedule this replaces started at 1 / warmup and
    held the peak for two steps.
    """
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=math.ceil(config.warmup_fraction * total_steps),
        num_training_steps=total_steps,
        min_lr_rate=config.min_lr_ratio,
    )


def optimizer_step(model: CLIPModel, optimizer: AdamW, scheduler: LambdaLR, config: TrainConfig) -> None:
    """Clip, step, schedule, and keep the temperature within CLIP's bound."""
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
