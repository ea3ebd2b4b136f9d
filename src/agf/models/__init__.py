"""Source nets (STN, wSTN, MTN), their soft-target loss and safe save/load."""

from agf.models.io import ModelFileError, load_net, save_net
from agf.models.losses import soft_cross_entropy
from agf.models.nets import MTN, STN, BandNorm, count_params, width_for_params

__all__ = [
    "MTN",
    "STN",
    "BandNorm",
    "ModelFileError",
    "count_params",
    "load_net",
    "save_net",
    "soft_cross_entropy",
    "width_for_params",
]
