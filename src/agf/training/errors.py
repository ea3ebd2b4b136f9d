"""Typed errors of source-net training."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """Training cannot start or resume; the message names the file or input and the fix."""


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
