"""WiSE-FT (Wortsman et al., 2022): fine-tuned weights interpolated with the starting model's.

Fine-tuning on NFT captions teaches the model a narrow world and makes it forget some of what the
starting model knew (the "forgetting" NFT1000 measures on unseen collections). Averaging the two
weight sets, theta = (1 - alpha) * theta_start + alpha * theta_fine_tuned, keeps most of the gain
on the fine-tuning data and much of the starting model's robustness; alpha = 1 is plain
fine-tuning, alpha = 0 the starting model.
"""

from __future__ import annotations

import torch


def interpolate_weights(model: torch.nn.Module, start_state: dict[str, torch.Tensor], alpha: float) -> None:
    """Move `model`'s floating-point weights and buffers, in place, to (1 - alpha) * start + alpha * current."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.lerp(start_state[name].to(tensor), tensor, alpha))
