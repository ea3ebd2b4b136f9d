"""Transfer to genre: window features of trained source nets -> an MLP -> track probabilities; evaluation runs.

windows.py   window_starts, window_batch, net_window_features (cached per net)
sources.py   load_source: a trained net directory, its tasks and its genre-head baseline
mlp.py       fit_transfer, load_transfer, load_mlp (the MLP, trained on training tracks' windows only)
evaluate.py  evaluate: the MLPs and the baselines on every split, metrics.json, plots, a table
"""

from agf.transfer.evaluate import CLASSICAL, EvaluationRun, evaluate
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
from agf.transfer.sources import MTN_BASELINE, STN_BASELINE, SourceNet, TransferError, load_source
from agf.transfer.windows import WindowFeatures, net_window_features, window_batch, window_starts

__all__ = [
    "CLASSICAL",
    "MTN_BASELINE",
    "STN_BASELINE",
    "Baseline",
    "EvaluationRun",
    "SourceNet",
    "TransferError",
    "TransferResult",
    "WindowFeatures",
    "build_mlp",
    "check_train_only",
    "evaluate",
    "fit_transfer",
    "load_mlp",
    "load_source",
    "load_transfer",
    "net_window_features",
    "transfer_dir",
    "window_batch",
    "window_starts",
]
