"""Data-parallel training across the processes torchrun starts (torch.distributed, DistributedDataParallel).

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in every process it starts; `session`
joins them into one process group (NCCL on CUDA, Gloo on CPU). Without a process group every helper here is
the single-process identity (rank 0 of 1), so callers use them unconditionally.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")


def launched() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def active() -> bool:
    """Whether this process is in a process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the group (0 without one)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The processes in the group (1 without one)."""
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    """This process's rank on its machine (torchrun's LOCAL_RANK; 0 without one): the GPU it uses."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes files and prints."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """A CUDA device without an index becomes this process's own GPU (cuda:LOCAL_RANK) in a group."""
    if device.type == "cuda" and device.index is None and active():
        return torch.device("cuda", local_rank())
    return device


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[None]:
    """Join torchrun's process group for the block when launched by it (NCCL when `device` is CUDA, else Gloo),
    and leave it after; without torchrun, or when a group already exists, do nothing."""
    if not launched() or active():
        yield
        return
    if device.type == "cuda":
        own = torch.device("cuda", local_rank())
        torch.cuda.set_device(own)
        dist.init_process_group("nccl", device_id=own)
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process of the group gets here."""
    if active():
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first, the others after it finished (e.g. rank 0 builds, the others load)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def agree(value: T) -> T:
    """Rank 0's value, on every process (a decision all processes must share)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _collective_device() -> torch.device:
    """Where the group's tensors live: the current GPU for NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sum_floats(values: Sequence[float]) -> list[float]:
    """Each value summed over the processes (float64); the values themselves without a group."""
    if not active():
        return list(values)
    total = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(total)
    return total.tolist()


def shard(items: Sequence[T], rank: int, world: int) -> Sequence[T]:
    """Process `rank`'s share of `items`: every world-th item from position `rank` on."""
    return items[rank::world]


def wrap(net: torch.nn.Module, device: torch.device, find_unused: bool) -> torch.nn.Module:
    """The net in DistributedDataParallel when in a group (gradients averaged over the processes; parameters and
    buffers start as rank 0's); the net itself without. `find_unused`: a step may leave parameters without a
    gradient (an MTN's other task branches)."""
    if not active():
        return net
    device_ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=find_unused)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The net inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def sync_buffers(net: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (batch-norm running statistics, which each process updates itself)."""
    if not active():
        return
    for buffer in net.buffers():
        dist.broadcast(buffer, src=0)
