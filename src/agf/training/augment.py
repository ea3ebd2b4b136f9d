"""Augmentation of training batches for small collections (train.gain_db, time_mask_frames, freq_mask_bins,
mixup_alpha; 0 = off). Validation crops are never augmented.

A batch is x float32 (B, 1, frames, n_mels), log-mel in dB, and y float32 (B, K) soft targets. A gain adds one
constant (dB) to a crop; a mask fills a span of frames or of mel bands with the crop's minimum, its silence level
(the net standardises each band afterwards, `BandNorm`); mixup mixes crops and targets alike.

Every draw comes from a numpy Generator seeded by (run seed, epoch) only, separate from the crop plan's and from
torch's, so a resumed run augments exactly as an uninterrupted one, CPU and CUDA draw the same numbers, and a
setting that is off draws nothing. Only O(B) numbers are drawn per batch; the work on x is vectorised on its device.
"""

from __future__ import annotations

import numpy as np
import torch

from agf.config import TrainConfig

# The third entry of the seed sequence; the crop plan uses [seed, epoch], dropout [seed, epoch, 1].
AUGMENT_STREAM = 2


def augment_rng(seed: int, epoch: int, rank: int = 0) -> np.random.Generator:
    """The epoch's augmentation Generator of data-parallel process `rank` (rank 0's is the single-process one),
    from (run seed, epoch, rank) only."""
    return np.random.default_rng([seed, epoch, AUGMENT_STREAM] + ([rank] if rank else []))


def per_crop(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """(B,) numbers as a (B, 1, 1, 1) tensor of x's dtype on x's device."""
    return torch.as_tensor(values, dtype=like.dtype).to(like.device).view(-1, 1, 1, 1)


def random_gain(x: torch.Tensor, gain_db: float, rng: np.random.Generator) -> torch.Tensor:
    """Each crop plus one gain drawn uniformly from [-gain_db, +gain_db] dB; x itself when gain_db is 0."""
    if gain_db == 0:
        return x
    return x + per_crop(rng.uniform(-gain_db, gain_db, size=len(x)), x)


def span_mask(size: int, max_width: int, batch: int, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    """(batch, size) bool: per row one span of a width drawn from 0..max_width (at most size) at a uniform start."""
    widths = rng.integers(0, min(max_width, size) + 1, size=batch)
    starts = rng.integers(0, size - widths + 1)
    positions = torch.arange(size, device=device)
    starts_t, ends_t = (torch.as_tensor(v, device=device).view(-1, 1) for v in (starts, starts + widths))
    return (positions >= starts_t) & (positions < ends_t)


def mask_spans(x: torch.Tensor, time_frames: int, freq_bins: int, rng: np.random.Generator) -> torch.Tensor:
    """SpecAugment-style: per crop one time mask of up to time_frames frames and one frequency mask of up to
    freq_bins mel bands, filled with the crop's minimum; x itself when both are 0."""
    if time_frames == 0 and freq_bins == 0:
        return x
    batch, _, frames, bands = x.shape
    masked = torch.zeros(batch, 1, frames, bands, dtype=torch.bool, device=x.device)
    if time_frames:
        masked = masked | span_mask(frames, time_frames, batch, rng, x.device).view(batch, 1, frames, 1)
    if freq_bins:
        masked = masked | span_mask(bands, freq_bins, batch, rng, x.device).view(batch, 1, 1, bands)
    return torch.where(masked, x.amin(dim=(1, 2, 3), keepdim=True), x)


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each crop and its target mixed with those of a random partner in the batch, weight w ~ Beta(alpha, alpha)
    per crop: w * own + (1 - w) * partner's; (x, y) themselves when alpha is 0."""
    if alpha == 0:
        return x, y
    weights = rng.beta(alpha, alpha, size=len(x))
    partners = torch.as_tensor(rng.permutation(len(x)), device=x.device)
    w = per_crop(weights, x)
    return w * x + (1 - w) * x[partners], w.view(-1, 1) * y + (1 - w.view(-1, 1)) * y[partners]


def augment_batch(
    x: torch.Tensor, y: torch.Tensor, config: TrainConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch with the config's augmentations: gain, then masks, then mixup."""
    x = mask_spans(random_gain(x, config.gain_db, rng), config.time_mask_frames, config.freq_mask_bins, rng)
    return mixup(x, y, config.mixup_alpha, rng)
