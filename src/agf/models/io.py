"""Save and load source nets without code execution: weights as safetensors, architecture as JSON.

`read_weights` is the one reader of safetensors weight files (nets, transfer MLPs, bundles): a file that is
missing, cut short, or not safetensors at all (a pickle or torch.save file) is a ModelFileError naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from agf.errors import ModelFileError
from agf.fileio import atomic_path, write_json_atomic
from agf.models.nets import MTN, STN

WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "net.json"
FORMAT = "agf-net/1"
RETRAIN = "train the net again (`agf train`) or delete its folder"
M = TypeVar("M", bound=nn.Module)
# First bytes of files often mistaken for model weights: a pickle, a zip (torch.save).
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")


def save_net(directory: str | Path, net: STN | MTN, meta: dict[str, Any]) -> None:
    """Write directory/model.safetensors (state dict, band-norm buffers included) then directory/net.json.

    Both writes are atomic; net.json holds the architecture and the JSON-ready `meta`.
    """
    directory = Path(directory)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in net.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    write_json_atomic(directory / SPEC_FILE, {"format": FORMAT, **net.spec(), "meta": meta})


def is_pickle(path: Path) -> bool:
    """Whether the file starts like a pickle or a torch.save zip (read, never unpickled)."""
    with open(path, "rb") as handle:
        return handle.read(4).startswith(PICKLE_MAGIC)


def read_weights(path: Path, fix: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors (on the CPU) and its header's metadata; never unpickles. ModelFileError naming
    the file and `fix` (how to make it again) when it is missing, cut short or not safetensors."""
    try:
        with safe_open(str(path), framework="pt") as weights:
            return {name: weights.get_tensor(name) for name in weights.keys()}, weights.metadata() or {}
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file; {fix}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        what = "a pickle or torch.save file, which agf never unpickles" if path.is_file() and is_pickle(path) else exc
        raise ModelFileError(f"{path}: not a readable safetensors file ({what}); {fix}") from None


def build_net(spec: dict[str, Any]) -> STN | MTN:
    """An untrained net from the architecture part of net.json (kind 'stn' or 'mtn')."""
    if spec["kind"] == "stn":
        return STN(int(spec["n_out"]), float(spec["width"]), int(spec["n_mels"]))
    if spec["kind"] == "mtn":
        task_outputs = {str(task): int(n) for task, n in spec["task_outputs"].items()}
        return MTN(task_outputs, float(spec["width"]), int(spec["n_mels"]))
    raise ValueError(f"unknown net kind {spec['kind']!r} (expected 'stn' or 'mtn')")


def with_weights(build: Callable[[], M], state: dict[str, torch.Tensor]) -> M:
    """The module `build()` makes (a net, an MLP), holding the weights `state`; ValueError when they do not fit.
    The shapes are compared on the meta device first, so an edited architecture or manifest (a huge width, say)
    never allocates a module."""
    try:
        with torch.device("meta"):
            shapes = {name: tuple(tensor.shape) for name, tensor in build().state_dict().items()}
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RuntimeError) as exc:
        raise ValueError(f"invalid architecture ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    if shapes != {name: tuple(tensor.shape) for name, tensor in state.items()}:
        raise ValueError("the architecture does not match the weights (other layers or shapes)")
    module = build()
    module.load_state_dict(state, strict=True)  # the shapes fit; load_state_dict casts any other dtype
    return module


def read_spec(path: Path) -> dict[str, Any]:
    """The parsed net.json, or ModelFileError naming the file."""
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelFileError(
            f"{path}: no such file; is {path.parent} a net directory made by `agf train` (WORKDIR/nets/...)?"
        ) from exc
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc}); {RETRAIN}") from exc
    found = spec.get("format") if isinstance(spec, dict) else None
    if found != FORMAT:
        raise ModelFileError(f"{path}: format {found!r}, expected {FORMAT!r}; {RETRAIN}")
    return spec


def load_net(directory: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a net from directory/net.json, load its safetensors weights; return (net in eval mode, meta)."""
    directory = Path(directory)
    spec_path, weights_path = directory / SPEC_FILE, directory / WEIGHTS_FILE
    spec = read_spec(spec_path)
    state, _ = read_weights(weights_path, RETRAIN)
    try:
        net = with_weights(lambda: build_net(spec), state)
    except ValueError as exc:
        raise ModelFileError(f"{spec_path} with {weights_path}: {exc}; {RETRAIN}") from None
    return net.to(map_location).eval(), spec.get("meta", {})
