"""The source nets of the paper: the DCNN encoder, the single-task net (STN, wSTN) and the multi-task net (MTN).

Input layout is (batch, 1, frames, n_mels): time-major, so a (1, 2) pooling pools frequency only.
Layer sizes follow the implementation notes' table (paper Table 2); every filter count and the dense
width are multiplied by `width` (1.0 = the paper; a wSTN uses a larger factor). Where batch-norm follows
a convolution or dense layer, that layer has no bias (it would be redundant, as in the authors' Lasagne
code); every other layer has a zero-initialised bias. Weights are Glorot-uniform.
"""

from __future__ import annotations

import torch
from torch import nn

from agf.config import MIN_MELS
from agf.config import MIN_PATCH_FRAMES as MIN_FRAMES

FEATURE_WIDTH = 256


class BandNorm(nn.Module):
    """Per-mel-band standardisation (x - mean) / std with the statistics stored as buffers."""

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the per-band mean and std (each of shape (n_mels,), std > 0), e.g. fitted on training tracks."""
        mean = torch.as_tensor(mean, dtype=self.mean.dtype)
        std = torch.as_tensor(std, dtype=self.std.dtype)
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(
                f"band statistics must have shape {tuple(self.mean.shape)}; got mean {tuple(mean.shape)}, "
                f"std {tuple(std.shape)}: fit them on (frames, n_mels) log-mel arrays of the same n_mels"
            )
        if not bool(torch.all(std > 0)):
            raise ValueError("band std must be positive in every band: clamp it (e.g. std.clamp_min(1e-5))")
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise the last (mel) axis."""
        return (x - self.mean) / self.std


def scaled(channels: int, width: float) -> int:
    """A layer size multiplied by the width factor, rounded, at least 1."""
    return max(1, round(channels * width))


def conv_layer(in_channels: int, out_channels: int, kernel: int, batch_norm: bool) -> list[nn.Module]:
    """A stride-1 'same' convolution, optional batch-norm, then ELU."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding="same", bias=not batch_norm)
    layers: list[nn.Module] = [conv]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ELU())
    return layers


def first_block(width: float = 1.0) -> nn.Sequential:
    """conv1 (16, 5x5) + ELU + max-pool (1, 2) over frequency + dropout 0.1: the block an MTN shares."""
    return nn.Sequential(
        *conv_layer(1, scaled(16, width), 5, batch_norm=False),
        nn.MaxPool2d((1, 2)),
        nn.Dropout(0.1),
    )


class Trunk(nn.Module):
    """Everything after the first block up to the penultimate feature: conv2..conv7, pooling, dense 256."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3, c4, c5, c6, c7 = (scaled(c, width) for c in (16, 32, 64, 64, 128, 256, 256))
        self.feature_dim = scaled(FEATURE_WIDTH, width)
        self.convs = nn.Sequential(
            *conv_layer(c1, c2, 3, batch_norm=True),
            nn.MaxPool2d(2),
            nn.Dropout(0.1),
            *conv_layer(c2, c3, 3, batch_norm=False),
            nn.MaxPool2d(2),
            *conv_layer(c3, c4, 3, batch_norm=True),
            nn.MaxPool2d(2),
            nn.Dropout(0.1),
            *conv_layer(c4, c5, 3, batch_norm=False),
            nn.MaxPool2d(2),
            *conv_layer(c5, c6, 3, batch_norm=False),
            *conv_layer(c6, c7, 1, batch_norm=False),
        )
        self.dense = nn.Sequential(
            nn.BatchNorm1d(c7),
            nn.Dropout(0.5),
            nn.Linear(c7, self.feature_dim, bias=False),
            nn.BatchNorm1d(self.feature_dim),
            nn.ELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c1, T, F) first-block output -> (B, feature_dim) penultimate activation."""
        pooled = self.convs(x).mean(dim=(2, 3))
        return self.dense(pooled)


def head(feature_dim: int, n_out: int) -> nn.Sequential:
    """Dropout 0.5 + dense n_out: the logits (softmax lives in the loss)."""
    return nn.Sequential(nn.Dropout(0.5), nn.Linear(feature_dim, n_out))


def init_weights(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every convolution and dense layer of `module`."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def check_input(x: torch.Tensor, n_mels: int) -> None:
    """Raise ValueError unless x is (B, 1, T >= MIN_FRAMES, n_mels)."""
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] < MIN_FRAMES or x.shape[3] != n_mels:
        raise ValueError(
            f"net input must be (batch, 1, frames >= {MIN_FRAMES}, {n_mels}); got {tuple(x.shape)}: "
            "add the channel axis with x.unsqueeze(1) and use patches of at least that many frames"
        )


def check_architecture(width: float, n_mels: int) -> None:
    """Raise ValueError for a width or mel count the encoder cannot be built with."""
    if not width > 0:
        raise ValueError(f"width factor must be positive, got {width}")
    if n_mels < MIN_MELS:
        raise ValueError(f"n_mels must be at least {MIN_MELS} (five frequency poolings), got {n_mels}")


class STN(nn.Module):
    """Single-task net: band-norm, first block, trunk, head. A wSTN is an STN with width > 1."""

    def __init__(self, n_out: int, width: float = 1.0, n_mels: int = 128) -> None:
        super().__init__()
        check_architecture(width, n_mels)
        self.n_out = n_out
        self.width = width
        self.n_mels = n_mels
        self.band_norm = BandNorm(n_mels)
        self.first_block = first_block(width)
        self.trunk = Trunk(width)
        self.feature_dim = self.trunk.feature_dim
        self.head = head(self.feature_dim, n_out)
        init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, n_mels) -> (B, feature_dim) penultimate activation (call eval() first for transfer)."""
        check_input(x, self.n_mels)
        return self.trunk(self.first_block(self.band_norm(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, n_mels) -> (B, n_out) logits."""
        return self.head(self.features(x))

    def spec(self) -> dict:
        """The constructor arguments, as JSON-ready data."""
        return {"kind": "stn", "n_out": self.n_out, "width": self.width, "n_mels": self.n_mels}


class MTN(nn.Module):
    """Multi-task net: one shared band-norm and first block, then a trunk and head per task."""

    def __init__(self, task_outputs: dict[str, int], width: float = 1.0, n_mels: int = 128) -> None:
        super().__init__()
        check_architecture(width, n_mels)
        if not task_outputs:
            raise ValueError("an MTN needs at least one task in task_outputs")
        self.task_outputs = dict(sorted(task_outputs.items()))
        self.width = width
        self.n_mels = n_mels
        self.band_norm = BandNorm(n_mels)
        self.first_block = first_block(width)
        self.trunks = nn.ModuleDict({task: Trunk(width) for task in self.task_outputs})
        branch_dim = scaled(FEATURE_WIDTH, width)
        self.heads = nn.ModuleDict({task: head(branch_dim, n) for task, n in self.task_outputs.items()})
        self.feature_dim = branch_dim * len(self.task_outputs)
        init_weights(self)

    def shared(self, x: torch.Tensor) -> torch.Tensor:
        """The shared part: band-norm and first block."""
        check_input(x, self.n_mels)
        return self.first_block(self.band_norm(x))

    def check_task(self, task: str) -> None:
        """Raise KeyError naming the known tasks if `task` is not one of them."""
        if task not in self.task_outputs:
            raise KeyError(f"unknown task {task!r}; this MTN has tasks {', '.join(self.task_outputs)}")

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """(B, 1, T, n_mels) -> (B, n_out of `task`) logits of one task."""
        self.check_task(task)
        return self.heads[task](self.trunks[task](self.shared(x)))

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of every task, the shared block computed once."""
        shared = self.shared(x)
        return {task: self.heads[task](trunk(shared)) for task, trunk in self.trunks.items()}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, n_mels) -> (B, 256 * width * n_tasks): the tasks' penultimate vectors in sorted task order."""
        shared = self.shared(x)
        return torch.cat([trunk(shared) for trunk in self.trunks.values()], dim=1)

    def spec(self) -> dict:
        """The constructor arguments, as JSON-ready data."""
        return {"kind": "mtn", "task_outputs": self.task_outputs, "width": self.width, "n_mels": self.n_mels}


def count_params(module: nn.Module) -> int:
    """The number of trainable parameters (buffers such as band and batch-norm statistics excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def stn_params(n_out: int, width: float, n_mels: int) -> int:
    """The parameter count of an STN, built on the meta device (no memory, no initialisation cost)."""
    with torch.device("meta"):
        return count_params(STN(n_out, width, n_mels))


def width_for_params(target_params: int, n_out: int, n_mels: int = 128) -> float:
    """The width factor whose STN (n_out outputs) has the parameter count closest to target_params (bisection)."""
    low, high = 1.0 / 64, 1.0
    if stn_params(n_out, low, n_mels) >= target_params:
        return low
    while stn_params(n_out, high, n_mels) < target_params:
        low, high = high, high * 2
    for _ in range(40):
        middle = (low + high) / 2
        if stn_params(n_out, middle, n_mels) < target_params:
            low = middle
        else:
            high = middle
    return min((low, high), key=lambda w: abs(stn_params(n_out, w, n_mels) - target_params))
