"""The torch device a stage runs on, and the threads of this process."""

from __future__ import annotations

import threadpoolctl
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


def use_threads(threads: int) -> int:
    """Set this process's torch intra-op and BLAS/OpenMP threads to `threads` (run.threads); 0 leaves torch's
    default (OMP_NUM_THREADS when set, else the cores). Return the torch threads. Worker processes keep one
    thread each (agf.parallel)."""
    if threads:
        torch.set_num_threads(threads)
        threadpoolctl.threadpool_limits(threads)
    return torch.get_num_threads()
