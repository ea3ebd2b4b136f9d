"""Save and load source nets without code execution: weights as safetensors, architecture as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from agf.errors import ModelFileError
from agf.fileio import atomic_path, write_json_atomic
from agf.models.nets import MTN, STN

WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "net.json"
FORMAT = "agf-net/1"
RETRAIN = "train the net again (`agf train`) or delete its folder"


def save_net(directory: str | Path, net: STN | MTN, meta: dict[str, Any]) -> None:
    """Write directory/model.safetensors (state dict, band-norm buffers included) then directory/net.json.

    Both writes are atomic; net.json holds the architecture and the JSON-ready `meta`.
    """
    directory = Path(directory)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in net.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    write_json_atomic(directory / SPEC_FILE, {"format": FORMAT, **net.spec(), "meta": meta})


def build_net(spec: dict[str, Any]) -> STN | MTN:
    """An untrained net from the architecture part of net.json (kind 'stn' or 'mtn')."""
    if spec["kind"] == "stn":
        return STN(int(spec["n_out"]), float(spec["width"]), int(spec["n_mels"]))
    if spec["kind"] == "mtn":
        task_outputs = {str(task): int(n) for task, n in spec["task_outputs"].items()}
        return MTN(task_outputs, float(spec["width"]), int(spec["n_mels"]))
    raise ValueError(f"unknown net kind {spec['kind']!r} (expected 'stn' or 'mtn')")


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
    if spec.get("format") != FORMAT:
        raise ModelFileError(f"{path}: format {spec.get('format')!r}, expected {FORMAT!r}; {RETRAIN}")
    return spec


def load_net(directory: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a net from directory/net.json, load its safetensors weights; return (net in eval mode, meta)."""
    directory = Path(directory)
    spec_path, weights_path = directory / SPEC_FILE, directory / WEIGHTS_FILE
    spec = read_spec(spec_path)
    try:
        net = build_net(spec)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{spec_path}: invalid architecture ({exc!r}); {RETRAIN}") from exc
    if not weights_path.is_file():
        raise ModelFileError(f"{weights_path}: no such file; the save was interrupted; {RETRAIN}")
    try:
        state = load_file(str(weights_path))
        net.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelFileError(
            f"{weights_path}: does not match the architecture in {spec_path} ({exc}); {RETRAIN}"
        ) from exc
    return net.to(map_location).eval(), spec.get("meta", {})
