"""CLIP's symmetric InfoNCE loss, with the model's learnt temperature."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of the image-to-text and text-to-image cross-entropies; row i of each side is pair i.

    Embeddings must be L2-normalised; `logit_scale` is the log of the inverse temperature, as
    CLIPModel stores it.
    """
    logits_per_text = logit_scale.exp() * text_embeds @ image_embeds.T
    targets = torch.arange(len(text_embeds), device=text_embeds.device)
    return (F.cross_entropy(logits_per_text, targets) + F.cross_entropy(logits_per_text.T, targets)) / 2
