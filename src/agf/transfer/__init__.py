"""Transfer to genre: window features of trained source nets -> an MLP -> track probabilities.

windows.py   window_starts, window_batch, net_window_features (cached per net)
sources.py   load_source: a trained net directory, the input it takes, its tasks and its genre-head baseline
mlp.py       fit_transfer, load_transfer, load_mlp (the MLP, trained on training tracks' windows only)
"""

import importlib
from typing import Any

_HOMES = {
    "Baseline": "mlp", "TransferResult": "mlp", "build_mlp": "mlp_model", "check_train_only": "mlp",
    "fit_transfer": "mlp", "load_mlp": "mlp_model", "load_transfer": "mlp", "transfer_dir": "mlp",
    "MTN_BASELINE": "sources", "STN_BASELINE": "sources", "SourceNet": "sources", "load_source": "sources",
    "WindowFeatures": "windows", "net_window_features": "windows", "window_batch": "windowing",
    "window_starts": "windowing", "genre_head_logits": "windowing",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"agf.transfer.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'agf.transfer' has no attribute {name!r}")
