"""Source-net training (STN, MTN, wSTN): crops from the feature store, resumable and deterministic per seed.

spec.py           NetSpec, net_specs / wstn_spec (which nets), net_dir (where a net lives), net_train_config
targets.py        per-task targets: genre one-hot, artist-group distributions
data.py           crop plans per (seed, epoch) and the loader reading crops from the store
normalization.py  per-band statistics of the training tracks
checkpoint.py     RunState and the per-epoch checkpoint
loop.py           train_net: one net into one directory
distributed.py    torchrun's process group: train_net data-parallel (DDP), rank 0 writing
"""

from agf.training.loop import TrainResult, train_net
from agf.training.normalization import fit_band_norm
from agf.training.spec import NetSpec, net_dir, net_specs, net_train_config, wstn_spec
from agf.training.targets import task_targets

__all__ = [
    "NetSpec",
    "TrainResult",
    "fit_band_norm",
    "net_dir",
    "net_specs",
    "net_train_config",
    "task_targets",
    "train_net",
    "wstn_spec",
]
