"""Augmentation of training batches (agf.training.augment): off is the identity, each augmentation does what its
setting says and nothing more, and the draws depend on (run seed, epoch) only. Training-level checks (validation
never augmented, resume, net keys) are in test_training.py."""

from __future__ import annotations

import pytest
import torch

from agf.config import TrainConfig
from agf.training.augment import (
    augment_batch,
    augment_rng,
    mask_spans,
    mixup,
    random_gain,
)

ALL_ON = TrainConfig(gain_db=6.0, time_mask_frames=5, freq_mask_bins=7, mixup_alpha=0.4)


def batch(size: int = 16, frames: int = 20, bands: int = 32, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Random log-mel-like crops (distinct values) and one-hot targets."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(size, 1, frames, bands, generator=generator) * 10 - 40
    y = torch.nn.functional.one_hot(torch.arange(size) % classes, classes).float()
    return x, y


def test_off_returns_the_same_tensors_and_draws_nothing() -> None:
    x, y = batch()
    rng = augment_rng(0, 1)
    state = rng.bit_generator.state
    out_x, out_y = augment_batch(x, y, TrainConfig(), rng)
    assert out_x is x and out_y is y
    assert rng.bit_generator.state == state


def test_gain_shifts_each_crop_by_one_constant_within_bounds() -> None:
    x, _ = batch()
    shift = random_gain(x, 6.0, augment_rng(0, 1)) - x
    per_crop = shift.flatten(1)
    assert torch.allclose(per_crop, per_crop[:, :1].expand_as(per_crop), atol=1e-4)
    gains = per_crop[:, 0]
    assert gains.abs().max() <= 6.0 and gains.std() > 1.0


@pytest.mark.parametrize("time_frames,freq_bins", [(5, 7), (0, 7), (5, 0), (100, 0)])
def test_masks_cover_at_most_the_configured_spans_and_fill_with_the_crop_minimum(time_frames, freq_bins) -> None:
    x, _ = batch()
    out = mask_spans(x, time_frames, freq_bins, augment_rng(0, 1))
    minimum = x.amin(dim=(1, 2, 3), keepdim=True)
    changed = out != x
    assert torch.equal(out[changed], minimum.expand_as(x)[changed])
    at_minimum = x == minimum  # the minimum itself may or may not lie under a mask
    frames = x.shape[2]
    widths = {"time": [], "freq": []}
    for crop, free in zip((changed | at_minimum)[:, 0], at_minimum[:, 0]):
        rows = crop.all(dim=1).nonzero().flatten()  # frames masked over every band
        columns = crop.all(dim=0).nonzero().flatten()  # bands masked over every frame
        covered = crop & ~free
        covered[rows, :] = False
        covered[:, columns] = False
        assert not covered.any()  # nothing masked outside one time span and one band span
        if len(rows) >= frames - 1:  # (nearly) the whole crop: its band span cannot be told apart
            columns = columns[:0]
        for name, span in (("time", rows), ("freq", columns)):
            if len(span):
                assert torch.equal(span, torch.arange(int(span[0]), int(span[0]) + len(span)))  # contiguous
            widths[name].append(len(span))
    assert max(widths["time"]) <= min(time_frames, frames) and max(widths["freq"]) <= freq_bins
    assert (max(widths["time"]) > 0) == (time_frames > 0) and (max(widths["freq"]) > 0) == (freq_bins > 0)


def test_mixup_rows_are_convex_combinations_and_targets_stay_distributions() -> None:
    x, y = batch()
    out_x, out_y = mixup(x, y, 0.4, augment_rng(0, 1))
    assert torch.allclose(out_y.sum(dim=1), torch.ones(len(y)))
    flat, flat_out = x.flatten(1).double(), out_x.flatten(1).double()
    mixed = 0
    for i in range(len(x)):
        if torch.allclose(flat_out[i], flat[i], atol=1e-4):  # its own partner, or weight 1
            assert torch.allclose(out_y[i], y[i], atol=1e-5)
            continue
        direction = flat[i] - flat  # (B, D): the weight w of out = w x_i + (1 - w) x_j, fitted for every j
        w = ((flat_out[i] - flat) * direction).sum(dim=1) / (direction * direction).sum(dim=1).clamp_min(1e-12)
        residual = (flat_out[i] - flat - w[:, None] * direction).abs().amax(dim=1)
        j = int(residual.argmin())
        assert residual[j] < 1e-3 and 0.0 <= w[j] <= 1.0
        assert torch.allclose(out_y[i], w[j].float() * y[i] + (1 - w[j].float()) * y[j], atol=1e-5)
        mixed += 1
    assert mixed > len(x) // 2


def test_same_seed_and_epoch_give_the_same_augmentation() -> None:
    x, y = batch()
    first = augment_batch(x, y, ALL_ON, augment_rng(3, 5))
    again = augment_batch(x, y, ALL_ON, augment_rng(3, 5))
    other_epoch = augment_batch(x, y, ALL_ON, augment_rng(3, 6))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other_epoch[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_batches_are_augmented_on_the_device_as_on_the_cpu() -> None:
    x, y = batch()
    on_cpu = augment_batch(x, y, ALL_ON, augment_rng(0, 1))
    on_cuda = augment_batch(x.cuda(), y.cuda(), ALL_ON, augment_rng(0, 1))
    assert on_cuda[0].is_cuda and on_cuda[1].is_cuda
    assert torch.allclose(on_cuda[0].cpu(), on_cpu[0], atol=1e-4) and torch.allclose(on_cuda[1].cpu(), on_cpu[1])
