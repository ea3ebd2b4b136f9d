"""`agf train` helpers: task lists, the nets an --arch asks for, wSTN width matching and the arguments.

The CLI wires these up: it loads the track table, the feature store and the artist-group targets, then
calls train_command.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import pandas as pd
import torch

from agf.config import Config, TrainConfig
from agf.datasets.table import genre_list
from agf.fileio import stable_key
from agf.models import MTN, STN, count_params, width_for_params
from agf.store import FeatureStore
from agf.training.loop import NetSpec, TrainResult, train_net, training_settings
from agf.training.targets import GENRE_TASK, task_targets

TASKS: tuple[str, ...] = ("g", "m", "d", "e", "s")


def parse_tasks(text: str) -> tuple[str, ...]:
    """'g,m,d' or 'gmd' -> ('g', 'm', 'd'), in the canonical order g, m, d, e, s."""
    letters = set(text.replace(",", "").replace(" ", ""))
    unknown = sorted(letters - set(TASKS))
    if unknown or not letters:
        raise ValueError(
            f"tasks {text!r}: use letters of {','.join(TASKS)} (g genre, m MFCC, d delta-MFCC, e Essentia, s subgenres)"
        )
    return tuple(task for task in TASKS if task in letters)


def setup_params(setup: Literal["mtn", "stn"], task_outputs: Mapping[str, int], n_mels: int) -> int:
    """Parameters of a compared setup: one MTN over the tasks, or the set of one STN per task."""
    with torch.device("meta"):
        if setup == "mtn":
            return count_params(MTN(dict(task_outputs), 1.0, n_mels))
        return sum(count_params(STN(n_out, 1.0, n_mels)) for n_out in task_outputs.values())


def wstn_spec(
    setup: Literal["mtn", "stn"],
    task_outputs: Mapping[str, int],
    n_mels: int,
    report: Callable[[str], None] = print,
) -> NetSpec:
    """A genre wSTN whose parameter count matches `setup` over task_outputs' tasks; reports factor and both counts."""
    target = setup_params(setup, task_outputs, n_mels)
    width = width_for_params(target, task_outputs[GENRE_TASK], n_mels)
    with torch.device("meta"):
        params = count_params(STN(task_outputs[GENRE_TASK], width, n_mels))
    tasks = "".join(task_outputs)
    report(f"wSTN width factor {width:.4f}: {params:,} parameters; the {setup.upper()} over {tasks} has {target:,}")
    return NetSpec("wstn", (GENRE_TASK,), width, target)


def net_specs(
    arch: Literal["stn", "mtn", "wstn"],
    task_outputs: Mapping[str, int],
    n_mels: int,
    match: Literal["mtn", "stn"] = "mtn",
) -> list[NetSpec]:
    """The nets an `agf train` call trains: one STN per task, one MTN, or one wSTN matched to `match`."""
    if arch == "stn":
        return [NetSpec("stn", (task,)) for task in task_outputs]
    if arch == "mtn":
        return [NetSpec("mtn", tuple(task_outputs))]
    return [wstn_spec(match, task_outputs, n_mels)]


def net_dir(nets_root: Path, spec: NetSpec, config: TrainConfig, inputs_key: str) -> Path:
    """nets/<arch>-<tasks>-<key>: the key hashes the spec, the training settings and the inputs' keys."""
    key = stable_key("net", dataclasses.asdict(spec), training_settings(config), inputs_key)
    return nets_root / f"{spec.arch}-{''.join(spec.tasks)}-{key}"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `agf train`."""
    parser.add_argument("--tasks", default="g", help="tasks to train, e.g. g or g,m,d,e,s (default g)")
    parser.add_argument(
        "--arch",
        choices=["stn", "mtn", "wstn"],
        default="stn",
        help="stn: one net per task; mtn: one net sharing the first block; wstn: a genre net as large as --match",
    )
    parser.add_argument(
        "--match", choices=["mtn", "stn"], default="mtn", help="wstn: match the MTN or the STN set of --tasks"
    )
    parser.add_argument("--epochs", type=int, help="epochs (default: the config's train.epochs)")
    parser.add_argument("--seed", type=int, help="training seed (default: the config's train.seed)")
    parser.add_argument("--schedule", choices=["epoch", "batch"], help="MTN task schedule (default: the config's)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the config's run.device)")


def apply_train_arguments(config: Config, args: argparse.Namespace) -> Config:
    """The config with the given --epochs, --seed, --schedule and --device applied."""
    changes = {"epochs": args.epochs, "seed": args.seed, "schedule": args.schedule}
    train = dataclasses.replace(config.train, **{k: v for k, v in changes.items() if v is not None})
    run = dataclasses.replace(config.run, device=args.device) if args.device else config.run
    return dataclasses.replace(config, train=train, run=run)


def train_command(
    config: Config,
    args: argparse.Namespace,
    tracks: pd.DataFrame,
    store: FeatureStore,
    factor_targets: Mapping[str, pd.DataFrame],
    nets_root: Path,
    inputs_key: str,
    progress: bool = True,
) -> list[TrainResult]:
    """Train the nets of --arch over --tasks into nets_root; factor_targets holds each artist-group task's targets.

    A wSTN trains genre only; the other tasks then only set the size it is matched to (40 outputs each).
    """
    tasks = parse_tasks(args.tasks)
    n_outputs = {task: config.factors.n_topics for task in tasks} | {GENRE_TASK: len(genre_list(tracks))}
    task_outputs = {task: n_outputs[task] for task in tasks}
    if args.arch == "wstn":
        task_outputs = {GENRE_TASK: n_outputs[GENRE_TASK]} | task_outputs
    results = []
    for spec in net_specs(args.arch, task_outputs, store.config.n_mels, args.match):
        targets = {task: task_targets(tracks, task, factor_targets.get(task)) for task in spec.tasks}
        out_dir = net_dir(nets_root, spec, config.train, inputs_key)
        print(f"training {spec.arch} {''.join(spec.tasks)} -> {out_dir}")
        result = train_net(spec, store, tracks, targets, config.train, out_dir, config.run.device, progress)
        print(f"  best epoch {result.best_epoch} of {result.epochs_done}, {result.param_count:,} parameters")
        results.append(result)
    return results
