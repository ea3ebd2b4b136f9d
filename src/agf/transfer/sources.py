"""Source nets of a transfer: a trained net directory, what it learned, and which baseline its genre head gives.

A net carries the settings its input needs in net.json's meta (written by agf.training.loop.net_meta):
    features      the feature settings of the log-mel it was trained on (must equal the feature store's)
    patch_frames  the length of its input windows
    task_outputs  {task letter: outputs} of the tasks it was trained on (an MTN's come from its architecture)
    genres        the class order of its genre head, required when the tasks include 'g'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from agf.config import FeatureConfig, key_settings
from agf.errors import ModelFileError, TransferError
from agf.models import MTN, load_net
from agf.models.io import SPEC_FILE
from agf.tasks import GENRE_TASK, canonical_tasks
from agf.transfer.windowing import net_fingerprint

STN_BASELINE = "genre STN softmax"
MTN_BASELINE = "MTN genre head"


@dataclass(frozen=True)
class SourceNet:
    """A loaded source net and what the transfer needs to know about it."""

    path: Path
    net: nn.Module
    tasks: tuple[str, ...]
    head_genres: tuple[str, ...] | None  # class order of its genre head; None when it has none
    patch_frames: int
    fingerprint: str

    @property
    def kind(self) -> str:
        """'MTN', 'wSTN' (an STN wider than the paper's) or 'STN'."""
        if isinstance(self.net, MTN):
            return "MTN"
        return "wSTN" if self.net.width != 1.0 else "STN"

    @property
    def label(self) -> str:
        """A plain name: kind and tasks (in the order g, m, d, e, s), a wSTN's width, e.g. 'STN[g]', 'wSTN[g] x1.53'.

        Unique among the nets of one seed; the directory (with its hash) is recorded beside it, not in it.
        """
        width = f" x{self.net.width:.2f}" if self.kind == "wSTN" else ""
        return f"{self.kind}[{canonical_tasks(self.tasks) or '?'}]{width}"

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
        raise ModelFileError(
            f"{path / SPEC_FILE}: the net has a genre task but its meta has no 'genres' list; train it with agf"
        )
    n_out = net.task_outputs[GENRE_TASK] if isinstance(net, MTN) else net.n_out
    if len(genres) != n_out:
        raise ModelFileError(
            f"{path / SPEC_FILE}: meta lists {len(genres)} genres but the genre head has {n_out} outputs"
        )
    return tuple(str(g) for g in genres)


def load_source(path: str | Path, features: FeatureConfig, device: str | torch.device = "cpu") -> SourceNet:
    """Load a trained net directory (model.safetensors + net.json) as a transfer source for log-mels made with
    `features`; TransferError when the net was trained on other features."""
    path = Path(path)
    net, meta = load_net(path, map_location=device)
    if "features" not in meta or "patch_frames" not in meta:
        raise ModelFileError(
            f"{path / SPEC_FILE}: the meta does not record the net's input (features, patch_frames); "
            "train the net with this version of agf"
        )
    if meta["features"] != key_settings(features):
        wanted = key_settings(features)
        differing = sorted(k for k in meta["features"].keys() | wanted.keys() if meta["features"].get(k) != wanted.get(k))
        raise TransferError(
            f"{path / SPEC_FILE}: the net was trained on other features (differing: {', '.join(differing) or 'keys'}) "
            "than the feature store's; use nets trained on this feature store"
        )
    tasks = tuple(net.task_outputs) if isinstance(net, MTN) else tuple(str(t) for t in meta.get("task_outputs", {}))
    return SourceNet(
        path=path,
        net=net,
        tasks=tasks,
        head_genres=_head_genres(path, net, tasks, meta),
        patch_frames=int(meta["patch_frames"]),
        fingerprint=net_fingerprint(net),
    )
