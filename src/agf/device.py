"""The torch device a stage runs on."""

from __future__ import annotations

import torch

from agf.errors import ConfigError


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' -> cuda when torch sees a GPU, else cpu; any other name as torch spells it ('cpu', 'cuda:1')."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"run.device: unknown device {name!r}; use auto, cpu or cuda") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"run.device: {name!r} requested but torch sees no CUDA GPU; use --device cpu or auto")
    return device
