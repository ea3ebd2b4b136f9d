"""Transfer to genre: window features of trained source nets -> an MLP -> track probabilities.

windows.py   window_starts, window_batch, net_window_features (cached per net)
sources.py   load_source: a trained net directory, the input it takes, its tasks and its genre-head baseline
mlp.py       fit_transfer, load_transfer, load_mlp (the MLP, trained on training tracks' windows only)
"""

from agf.transfer.mlp import (
    Baseline,
    TransferResult,
    build_mlp,
    check_train_only,
    fit_transfer,
    load_mlp,
    load_transfer,
    transfer_dir,
)
from agf.transfer.sources import MTN_BASELINE, STN_BASELINE, SourceNet, load_source
from agf.transfer.windows import (
    WindowFeatures,
    net_window_features,
    window_batch,
    window_starts,
)

__all__ = [
    "MTN_BASELINE",
    "STN_BASELINE",
    "Baseline",
    "SourceNet",
    "TransferResult",
    "WindowFeatures",
    "build_mlp",
    "check_train_only",
    "fit_transfer",
    "load_mlp",
    "load_source",
    "load_transfer",
    "net_window_features",
    "transfer_dir",
    "window_batch",
    "window_starts",
]
