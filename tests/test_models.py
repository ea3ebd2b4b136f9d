"""Tests of the source nets, the soft-target loss and safe save/load."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from agf.models import (
    MTN,
    STN,
    ModelFileError,
    count_params,
    load_net,
    save_net,
    soft_cross_entropy,
    width_for_params,
)

N_MELS = 128


def patches(batch: int, frames: int = 43, seed: int = 0) -> torch.Tensor:
    """Random (batch, 1, frames, 128) inputs."""
    return torch.randn(batch, 1, frames, N_MELS, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def seeded_single_thread() -> Iterator[None]:
    """Seed torch and use one thread: the small nets run faster so on a shared CPU."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("frames", [16, 43, 100])
def test_output_shapes(batch: int, frames: int) -> None:
    stn, mtn = STN(16).eval(), MTN({"g": 16, "m": 40}).eval()
    x = patches(batch, frames)
    with torch.no_grad():
        assert stn(x).shape == (batch, 16)
        assert stn.features(x).shape == (batch, 256) and stn.feature_dim == 256
        assert mtn(x, "m").shape == (batch, 40)
        logits = mtn.forward_all(x)
        assert {task: out.shape for task, out in logits.items()} == {"g": (batch, 16), "m": (batch, 40)}
        assert mtn.features(x).shape == (batch, 512) and mtn.feature_dim == 512


def test_mtn_features_are_task_features_in_sorted_order() -> None:
    mtn = MTN({"s": 40, "g": 16, "e": 40}).eval()
    x = patches(3)
    with torch.no_grad():
        shared = mtn.first_block(mtn.band_norm(x))
        expected = torch.cat([mtn.trunks[task](shared) for task in ("e", "g", "s")], dim=1)
        torch.testing.assert_close(mtn.features(x), expected)


def test_rejects_bad_input_and_unknown_task() -> None:
    stn, mtn = STN(4, width=0.25), MTN({"g": 4}, width=0.25)
    with pytest.raises(ValueError, match="frames >= 16"):
        stn(patches(2, frames=15))
    with pytest.raises(ValueError, match="unsqueeze"):
        stn(patches(2).squeeze(1))
    with pytest.raises(KeyError, match="tasks g"):
        mtn(patches(2), "m")


def test_band_norm_standardises_each_band() -> None:
    stn = STN(4, width=0.25)
    mean, std = torch.linspace(-5, 5, N_MELS), torch.linspace(0.5, 3, N_MELS)
    stn.band_norm.set_stats(mean, std)
    x = mean + std * patches(2)
    torch.testing.assert_close(stn.band_norm(x), patches(2))
    with pytest.raises(ValueError, match="positive"):
        stn.band_norm.set_stats(mean, torch.zeros(N_MELS))


def test_stn_parameter_count_matches_the_table() -> None:
    def conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
        return c_in * c_out * k * k + (c_out if bias else 0)

    def batch_norm(channels: int) -> int:
        return 2 * channels  # gamma and beta

    expected = (
        conv(1, 16, 5)  # conv1
        + conv(16, 32, 3, bias=False) + batch_norm(32)  # conv2 (BN replaces the bias)
        + conv(32, 64, 3)  # conv3
        + conv(64, 64, 3, bias=False) + batch_norm(64)  # conv4
        + conv(64, 128, 3)  # conv5
        + conv(128, 256, 3)  # conv6
        + conv(256, 256, 1)  # conv7
        + batch_norm(256)  # after global average pooling
        + 256 * 256 + batch_norm(256)  # dense 256 (BN replaces the bias)
        + 256 * 16 + 16  # dense n_out
    )
    assert count_params(STN(16)) == expected
    assert abs(expected - 570_000) / 570_000 < 0.01
    assert abs(count_params(STN(16, width=2.0)) - 2_250_000) / 2_250_000 < 0.01


def test_mtn_shares_exactly_the_first_block() -> None:
    mtn = MTN({"a": 3, "b": 5}, width=0.25).double().eval()
    x = patches(4).double()
    targets = {task: F.one_hot(torch.arange(4) % n, n).double() for task, n in mtn.task_outputs.items()}

    def shared_grads(tasks: tuple[str, ...]) -> list[torch.Tensor]:
        mtn.zero_grad(set_to_none=True)
        sum(soft_cross_entropy(mtn(x, task), targets[task]) for task in tasks).backward()
        return [p.grad.clone() for p in mtn.first_block.parameters()]

    grads_a = shared_grads(("a",))
    assert all(g.abs().sum() > 0 for g in grads_a)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mtn.trunks["a"].parameters())
    assert all(p.grad is not None for p in mtn.heads["a"].parameters())
    branch_b = [*mtn.trunks["b"].parameters(), *mtn.heads["b"].parameters()]
    assert all(p.grad is None or not p.grad.any() for p in branch_b)

    grads_b = shared_grads(("b",))
    grads_both = shared_grads(("a", "b"))
    for g_a, g_b, g_both in zip(grads_a, grads_b, grads_both, strict=True):
        assert not torch.allclose(g_a, g_both)
        torch.testing.assert_close(g_both, g_a + g_b)


@settings(max_examples=50, deadline=None)
@given(
    batch=st.integers(1, 6),
    classes=st.integers(2, 40),
    scale=st.floats(0.1, 30.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_soft_cross_entropy_is_kl_plus_entropy(batch: int, classes: int, scale: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(batch, classes, generator=generator, dtype=torch.float64)
    target = torch.distributions.Dirichlet(torch.full((classes,), 0.3, dtype=torch.float64)).sample((batch,))
    target = target.clamp_min(1e-12) / target.clamp_min(1e-12).sum(dim=1, keepdim=True)
    log_q = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    kl = (target * (target.log() - log_q)).sum(dim=1)
    entropy = -(target * target.log()).sum(dim=1)
    expected = (kl + entropy).mean()
    torch.testing.assert_close(soft_cross_entropy(logits, target).double(), expected, rtol=1e-5, atol=1e-5)


def test_soft_cross_entropy_equals_cross_entropy_for_one_hot() -> None:
    logits = 4 * torch.randn(7, 16)
    labels = torch.randint(0, 16, (7,))
    one_hot = F.one_hot(labels, 16).float()
    torch.testing.assert_close(soft_cross_entropy(logits, one_hot), F.cross_entropy(logits, labels))
    with pytest.raises(ValueError, match="one_hot"):
        soft_cross_entropy(logits, labels)


def test_tiny_stn_overfits_a_tiny_batch() -> None:
    """Train-mode accuracy (dropout on, batch statistics) of 8 random patches reaches ~100 %."""
    x = patches(8, seed=1)
    labels = torch.arange(8) % 4
    targets = F.one_hot(labels, 4).float()
    stn = STN(4, width=0.5).train()
    optimiser = torch.optim.Adam(stn.parameters(), lr=1e-3)
    accuracies, losses = [], []
    for _ in range(100):
        optimiser.zero_grad()
        logits = stn(x)
        loss = soft_cross_entropy(logits, targets)
        loss.backward()
        optimiser.step()
        accuracies.append((logits.argmax(dim=1) == labels).float().mean().item())
        losses.append(loss.item())
    assert sum(accuracies[-10:]) / 10 >= 0.95
    assert max(losses[-10:]) < 0.25 < losses[0]


def test_width_for_params_matches_multi_task_setups() -> None:
    two_stns = count_params(STN(16)) + count_params(STN(40))
    mtn = count_params(MTN({"g": 16, "m": 40, "d": 40}))
    for target in (two_stns, mtn):
        width = width_for_params(target, n_out=16)
        assert width > 1
        assert abs(count_params(STN(16, width=width)) - target) / target < 0.02


@pytest.mark.parametrize("kind", ["stn", "mtn"])
def test_save_load_round_trip(tmp_path, kind: str) -> None:
    net = STN(16, width=0.5) if kind == "stn" else MTN({"g": 16, "s": 40}, width=0.5)
    net.band_norm.set_stats(torch.randn(N_MELS), torch.rand(N_MELS) + 0.5)
    net.train()
    with torch.no_grad():  # move the batch-norm running statistics away from their defaults
        net.features(patches(6, seed=3))
    net.eval()
    meta = {"task": kind, "epochs": 3, "curves": [0.5, 0.25]}
    save_net(tmp_path, net, meta)

    loaded, loaded_meta = load_net(tmp_path)
    assert loaded_meta == meta and type(loaded) is type(net) and not loaded.training
    x = patches(3, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(loaded.features(x), net.features(x), rtol=0, atol=0)
        if kind == "mtn":
            for task, logits in net.forward_all(x).items():
                torch.testing.assert_close(loaded(x, task), logits, rtol=0, atol=0)
        else:
            torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)

    weights = load_file(str(tmp_path / "model.safetensors"))
    assert weights.keys() == net.state_dict().keys()
    torch.testing.assert_close(weights["band_norm.std"], net.band_norm.std)
    spec = json.loads((tmp_path / "net.json").read_text())
    assert spec["kind"] == kind and spec["width"] == 0.5 and spec["n_mels"] == N_MELS


def test_load_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="net.json"):
        load_net(tmp_path)
    save_net(tmp_path, STN(4, width=0.25), {})
    spec = json.loads((tmp_path / "net.json").read_text())
    (tmp_path / "net.json").write_text(json.dumps({**spec, "n_out": 5}))
    with pytest.raises(ModelFileError, match="model.safetensors"):
        load_net(tmp_path)


@pytest.mark.parametrize("damage", ["cut in half", "torch.save", "empty"])
def test_unreadable_weights_are_one_line_errors_naming_the_file(tmp_path, damage: str) -> None:
    net = STN(4, width=0.25)
    save_net(tmp_path, net, {})
    weights = tmp_path / "model.safetensors"
    if damage == "torch.save":
        torch.save(net.state_dict(), weights)
    else:
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2 if damage == "cut in half" else 0])
    with pytest.raises(ModelFileError, match=r"model\.safetensors: not a readable safetensors file .*; train the net "
                                             r"again") as caught:
        load_net(tmp_path)
    assert "\n" not in str(caught.value)
    assert ("agf never unpickles" in str(caught.value)) == (damage == "torch.save")


def test_an_architecture_edited_to_a_huge_width_is_refused_without_building_it(tmp_path) -> None:
    save_net(tmp_path, STN(4, width=0.25), {})
    spec = json.loads((tmp_path / "net.json").read_text())
    (tmp_path / "net.json").write_text(json.dumps({**spec, "width": 1e9}))
    with pytest.raises(ModelFileError, match=r"net\.json with .*model\.safetensors: .*architecture"):
        load_net(tmp_path)  # on the meta device: building it would ask for 1.6 TB


def test_bf16_autocast_channels_last_agrees_with_fp32() -> None:
    stn = STN(16).eval()
    x = patches(4)
    with torch.no_grad():
        reference = stn(x)
        fast = stn.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = fast(x.to(memory_format=torch.channels_last))
    assert logits.shape == reference.shape
    relative_error = (logits.float() - reference).norm() / reference.norm()
    assert relative_error < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_forward_and_load(tmp_path) -> None:
    save_net(tmp_path, MTN({"g": 16, "m": 40}, width=0.5), {})
    net, _ = load_net(tmp_path, map_location="cuda")
    net = net.to(memory_format=torch.channels_last)
    x = patches(4).cuda().to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        assert net.features(x).shape == (4, 256)
        assert net(x, "m").device.type == "cuda"
