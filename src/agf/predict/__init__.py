"""Prediction for anyone's audio: model bundles (export, checked loading) and the GenreClassifier.

bundle.py      Bundle (one or more BundleMembers: a seed ensemble of transfers, genre heads or blends), save_bundle,
               load_bundle, bundle_from_transfers (MemberSource), bundle_from_transfer: one self-contained model
               directory
classifier.py  GenreClassifier: load once, predict files or waveforms, predict_many streams a batch of files
decoding.py    a file or waveform -> its log-mel a block at a time (long ones spooled to a file): memory independent
               of its length
inputs.py      expand_inputs: files, directories, globs, stdin -> the list of files to classify
output.py      the table, challenge CSV and JSON-lines writers, the output-path check, the file_id clash
               warning, the failure summary

The names below are imported on first use, so that `agf.predict.output` (which the CLI's parser reads) does
not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "BUNDLE_FORMAT": "bundle", "Bundle": "bundle", "BundleMember": "bundle", "BundleNet": "bundle",
    "MemberSource": "bundle", "bundle_from_transfer": "bundle", "bundle_from_transfers": "bundle",
    "load_bundle": "bundle", "save_bundle": "bundle", "untrained_bundle": "bundle", "untrained_member": "bundle",
    "GenreClassifier": "classifier", "Prediction": "classifier",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"agf.predict.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'agf.predict' has no attribute {name!r}")
