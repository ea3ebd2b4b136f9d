"""Source-net training (STN, MTN, wSTN): crops from the feature store, resumable and deterministic per seed."""

from agf.training.errors import TrainingDiverged, TrainingError
from agf.training.loop import NetSpec, TrainResult, resolve_device, train_net
from agf.training.normalization import fit_band_norm
from agf.training.targets import task_targets

__all__ = [
    "NetSpec",
    "TrainResult",
    "TrainingDiverged",
    "TrainingError",
    "fit_band_norm",
    "resolve_device",
    "task_targets",
    "train_net",
]
