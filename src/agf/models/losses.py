"""The one training loss of the source nets: cross-entropy against a target distribution."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k p_k log softmax(z)_k.

    Works for soft targets (artist-group topic distributions) and one-hot targets (genres) alike.
    Computed in float32 even under bf16 autocast.
    """
    if logits.shape != target_probs.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target probabilities {tuple(target_probs.shape)} must have "
            "the same (batch, classes) shape: one-hot encode class indices with F.one_hot(y, n_classes)"
        )
    log_probs = F.log_softmax(logits.float(), dim=-1)
    return -(target_probs.float() * log_probs).sum(dim=-1).mean()
