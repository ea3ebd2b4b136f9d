"""Source nets of a transfer: a trained net directory, what it learned, and which baseline its genre head gives.

The net.json meta written by training (agf.training.loop.net_meta) is read for two entries:
    task_outputs  {task letter: outputs} of the tasks the net was trained on (an MTN's come from its architecture)
    genres        the class order of its genre head, required when the tasks include 'g'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from agf.models import MTN, load_net
from agf.models.io import SPEC_FILE
from agf.transfer.windows import GENRE_TASK, net_fingerprint

STN_BASELINE = "genre STN softmax"
MTN_BASELINE = "MTN genre head"


class TransferError(RuntimeError):
    """Transfer inputs are inconsistent (nets, genres, splits); the message names the file or ids and the fix."""


@dataclass(frozen=True)
class SourceNet:
    """A loaded source net and what the transfer needs to know about it."""

    path: Path
    net: nn.Module
    tasks: tuple[str, ...]
    head_genres: tuple[str, ...] | None  # class order of its genre head; None when it has none
    fingerprint: str

    @property
    def kind(self) -> str:
        """'MTN', 'wSTN' (an STN wider than the paper's) or 'STN'."""
        if isinstance(self.net, MTN):
            return "MTN"
        return "wSTN" if self.net.width != 1.0 else "STN"

    @property
    def label(self) -> str:
        """A readable name: kind, tasks (in the paper's order g, m, d, e, s) and directory, e.g. 'STN[g] stn-g-0'."""
        order = "gmdes"
        tasks = sorted(self.tasks, key=lambda t: (order.find(t) if t in order else len(order), t))
        return f"{self.kind}[{''.join(tasks) or '?'}] {self.path.name}"

    @property
    def baseline(self) -> str | None:
        """The baseline its genre head gives: a genre-only STN's softmax, an MTN's genre head, or none."""
        if isinstance(self.net, MTN):
            return MTN_BASELINE if GENRE_TASK in self.tasks else None
        return STN_BASELINE if self.tasks == (GENRE_TASK,) else None


def _head_genres(path: Path, net: nn.Module, tasks: tuple[str, ...], meta: dict) -> tuple[str, ...] | None:
    """The genre head's class order from meta['genres'], checked against the head's width."""
    if GENRE_TASK not in tasks:
        return None
    genres = meta.get("genres")
    if not genres:
        raise TransferError(
            f"{path / SPEC_FILE}: the net has a genre task but its meta has no 'genres' list; "
            "save it with meta['genres'] = the genre list it was trained with"
        )
    n_out = net.task_outputs[GENRE_TASK] if isinstance(net, MTN) else net.n_out
    if len(genres) != n_out:
        raise TransferError(
            f"{path / SPEC_FILE}: meta lists {len(genres)} genres but the genre head has {n_out} outputs; "
            "re-save the net"
        )
    return tuple(str(g) for g in genres)


def load_source(path: str | Path, n_mels: int, device: str | torch.device = "cpu") -> SourceNet:
    """Load a trained net directory (model.safetensors + net.json) as a transfer source for n_mels-band input."""
    path = Path(path)
    net, meta = load_net(path, map_location=device)
    if net.n_mels != n_mels:
        raise TransferError(
            f"{path / SPEC_FILE}: the net takes {net.n_mels} mel bands but the feature store has {n_mels}; "
            "use nets trained on this feature store"
        )
    tasks = tuple(net.task_outputs) if isinstance(net, MTN) else tuple(str(t) for t in meta.get("task_outputs", {}))
    return SourceNet(
        path=path,
        net=net,
        tasks=tasks,
        head_genres=_head_genres(path, net, tasks, meta),
        fingerprint=net_fingerprint(net),
    )
