"""Every error agf raises on purpose: one base class, one subclass per stage.

The CLI catches `AgfError` and prints its message as one line (`--debug` shows the traceback); anything
else is a bug. Each message names the file, setting or ids at fault and the fix.
"""

from __future__ import annotations

from pathlib import Path


class AgfError(Exception):
    """Base of every error a user can cause: printed as one line by the CLI."""


class WriteError(AgfError):
    """A file could not be written (the disk is full, say); finished work is kept and a rerun resumes."""


class ConfigError(AgfError):
    """A configuration file, setting or command-line value is invalid; the message names the key."""


class DatasetError(AgfError):
    """A dataset (FMA folders, manifest, synthetic corpus) cannot be read or split as asked."""


class SynthError(DatasetError):
    """The synthetic corpus cannot be rendered into or read from a folder."""


class AudioDecodeError(AgfError):
    """A file could not be decoded; `reason` says why in one line."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Pickle by (path, reason), so the error crosses process boundaries intact."""
        return type(self), (self.path, self.reason)


class StoreError(AgfError):
    """The feature store is missing, incomplete or was made with other settings."""


class FactorError(AgfError):
    """Artist group factors cannot be built or loaded."""


class TaskUnavailable(AgfError):
    """An artist-group task cannot be built in this environment (e.g. no Essentia); the other tasks go on."""


class ModelFileError(AgfError):
    """A saved net or MLP is missing, unreadable or does not match its architecture; the message names the file."""


class TrainingError(AgfError):
    """Training cannot start or resume."""


class TrainingDiverged(TrainingError):
    """A loss became NaN or infinite; nothing of that epoch is saved."""

    def __init__(self, epoch: int, task: str, where: str, value: float, lr: float) -> None:
        super().__init__(
            f"training diverged: {where} loss of task {task!r} is {value} in epoch {epoch}; "
            f"no model was saved. Lower the learning rate (train.lr = {lr:g} now, try {lr / 10:g}) "
            "and train into a new output directory"
        )
        self.epoch = epoch
        self.task = task


class TransferError(AgfError):
    """Transfer inputs are inconsistent (nets, genres, splits)."""


class EvaluationError(AgfError):
    """Predictions or labels cannot be scored."""


class ReportError(AgfError):
    """Report inputs are malformed or missing."""


class PipelineError(AgfError):
    """A stage cannot run as asked (e.g. the report of a work directory whose stages are not finished)."""


class PredictError(AgfError):
    """An input cannot be classified (e.g. shorter than one window) or a prediction request is malformed."""
