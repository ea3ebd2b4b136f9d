"""The one training loss of the source nets (cross-entropy against a target distribution) and the authors' L2
term, which nets and the transfer MLP may add to their losses."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

# The layers whose weight the authors' L2 term covers: Lasagne's regularizable parameters are convolution and dense
# weights and batch-norm scales (gammas); biases and batch-norm shifts (betas) are not.
L2_LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


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


def l2_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of `module` the authors' L2 term covers: every convolution, dense and batch-norm weight."""
    return [layer.weight for layer in module.modules() if isinstance(layer, L2_LAYERS) and layer.weight is not None]


def l2_term(params: Iterable[torch.Tensor], beta: float) -> torch.Tensor:
    """beta x the sum of the squares of every value of `params`, in float32: what the authors added to the loss."""
    squares = [param.float().square().sum() for param in params]
    return beta * torch.stack(squares).sum() if squares else torch.zeros(())
