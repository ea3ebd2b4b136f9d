"""Which nets to train and where they live: net specs, wSTN width matching, the settings that key a net.

A net is identified by its spec, the training settings that change what training computes, the run seed and
the key of its inputs (features, factors, track table); nets/<arch>-<tasks>-<key> holds it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from agf.config import TrainConfig, key_settings
from agf.fileio import stable_key
from agf.models import MTN, STN, count_params, width_for_params
from agf.tasks import ARCHS, GENRE_TASK, Arch


@dataclass(frozen=True)
class NetSpec:
    """Which net to train: 'stn' (one task), 'mtn' (tasks share the first block) or 'wstn' (genre only, widened).

    `width` multiplies every layer size. A wSTN's width is matched to another setup's parameter count
    (wstn_spec), which records that count in `matched_params`.
    """

    arch: Arch
    tasks: tuple[str, ...]
    width: float = 1.0
    matched_params: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; use one of {', '.join(ARCHS)}")
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be distinct and not empty, got {self.tasks}")
        if self.arch == "stn" and len(self.tasks) != 1:
            raise ValueError(f"an STN trains one task, got {self.tasks}: train one STN per task or use arch 'mtn'")
        if self.arch == "wstn" and self.tasks != (GENRE_TASK,):
            raise ValueError(f"a wSTN trains the genre task only (tasks=('g',)), got {self.tasks}")

    @property
    def name(self) -> str:
        """arch and task letters, e.g. 'mtn gm'."""
        return f"{self.arch} {''.join(self.tasks)}"


def setup_params(setup: Literal["mtn", "stn"], task_outputs: Mapping[str, int], n_mels: int) -> int:
    """Parameters of a compared setup: one MTN over the tasks, or the set of one STN per task."""
    with torch.device("meta"):
        if setup == "mtn":
            return count_params(MTN(dict(task_outputs), 1.0, n_mels))
        return sum(count_params(STN(n_out, 1.0, n_mels)) for n_out in task_outputs.values())


def wstn_spec(setup: Literal["mtn", "stn"], task_outputs: Mapping[str, int], n_mels: int) -> NetSpec:
    """A genre wSTN whose parameter count matches `setup` over task_outputs' tasks (genre included)."""
    target = setup_params(setup, task_outputs, n_mels)
    width = width_for_params(target, task_outputs[GENRE_TASK], n_mels)
    return NetSpec("wstn", (GENRE_TASK,), width, target)


def net_specs(
    arch: Arch,
    task_outputs: Mapping[str, int],
    n_mels: int,
    match: Literal["mtn", "stn"] = "mtn",
) -> list[NetSpec]:
    """The nets of an architecture over task_outputs' tasks: one STN per task, one MTN, or one wSTN matched to
    the `match` setup over those tasks."""
    if arch == "stn":
        return [NetSpec("stn", (task,)) for task in task_outputs]
    if arch == "mtn":
        return [NetSpec("mtn", tuple(task_outputs))]
    return [wstn_spec(match, task_outputs, n_mels)]


def net_width(spec: NetSpec, config: TrainConfig) -> float:
    """The width a net is built with: config.width_factor for a wSTN when set (> 0), else the spec's."""
    return config.width_factor if spec.arch == "wstn" and config.width_factor > 0 else spec.width


def build_net(spec: NetSpec, task_outputs: dict[str, int], width: float, n_mels: int) -> STN | MTN:
    """An untrained net of the spec's architecture."""
    if spec.arch == "mtn":
        return MTN(task_outputs, width, n_mels)
    return STN(task_outputs[spec.tasks[0]], width, n_mels)


def net_train_config(spec: NetSpec, train: TrainConfig) -> TrainConfig:
    """The training settings of one net: as in the paper, an MTN trains epochs x its number of tasks; its
    patience (early stopping) is scaled alike, as each task trains about one epoch in that many."""
    if spec.arch != "mtn":
        return train
    tasks = len(spec.tasks)
    return dataclasses.replace(train, epochs=train.epochs * tasks, patience=train.patience * tasks)


def training_settings(config: TrainConfig, seed: int) -> dict[str, Any]:
    """The settings that change what training computes (loader workers do not), with the run seed."""
    settings = key_settings(config)
    settings.pop("loader_workers")
    return {**settings, "seed": seed}


def net_dir(nets_root: Path, spec: NetSpec, config: TrainConfig, seed: int, inputs_key: str) -> Path:
    """nets/<arch>-<tasks>-<key>: the key hashes the spec, the training settings, the seed and the inputs' key."""
    key = stable_key("net", dataclasses.asdict(spec), training_settings(config, seed), inputs_key)
    return Path(nets_root) / f"{spec.arch}-{''.join(spec.tasks)}-{key}"
