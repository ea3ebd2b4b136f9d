"""The transfer MLP as a net: built, or loaded from a transfer directory (agf.transfer.mlp re-exports them)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from agf.errors import ModelFileError
from agf.fileio import read_json
from agf.models.io import read_weights, with_weights
from agf.models.nets import init_weights

RERUN = "run the transfer again (`agf transfer`) or delete its folder"


def build_mlp(n_in: int, n_out: int, hidden: int = 1024, dropout: float = 0.5) -> nn.Sequential:
    """dropout -> dense `hidden` ELU -> dropout -> dense n_out (logits; softmax in the loss). Glorot init."""
    mlp = nn.Sequential(
        nn.Dropout(dropout), nn.Linear(n_in, hidden), nn.ELU(), nn.Dropout(dropout), nn.Linear(hidden, n_out)
    )
    init_weights(mlp)
    return mlp


def load_mlp(out_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Sequential, dict]:
    """The trained transfer MLP (eval mode) and its mlp.json, e.g. for prediction bundles."""
    out_dir = Path(out_dir)
    spec = read_json(out_dir / "mlp.json")
    weights = out_dir / "mlp.safetensors"
    state, _ = read_weights(weights, RERUN)
    try:
        model = with_weights(lambda: build_mlp(spec["input_dim"], len(spec["genres"]), spec["hidden"], spec["dropout"]),
                             state)
    except ValueError as exc:
        raise ModelFileError(f"{weights}: does not fit the MLP in {out_dir / 'mlp.json'} ({exc}); {RERUN}") from None
    return model.to(device).eval(), spec

