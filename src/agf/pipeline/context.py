"""The run context every entry point works in: the work directory's lock, the saved config, the threads.

`agf` commands that work in a work directory and the library's entry points (run_pipeline, run_study, every
stage_* function) enter it, so a stage called from Python is locked as the command that calls it is. Nested
use in one process (run_pipeline calling its stages) passes through the lock (agf.workdir.locked is reentrant
within a process) and leaves the threads as the outermost context set them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agf.config import Config
from agf.device import use_threads
from agf.training import distributed
from agf.workdir import WorkDir, holds_lock, locked, save_config


@contextmanager
def run_context(config: Config, workdir: WorkDir | None = None, save: bool = False) -> Iterator[WorkDir]:
    """Hold the lock of `workdir` (default: run.workdir), set this process's threads to run.threads when it is
    the outermost context there, and with `save` record the config in WORKDIR/config.toml (`agf run`, `agf
    prepare`); yield the work directory. Under torchrun, rank 0 alone holds the lock and writes."""
    workdir = workdir or WorkDir(Path(config.run.workdir))
    if not distributed.is_main():
        use_threads(config.run.threads)
        yield workdir
        return
    outermost = not holds_lock(workdir)
    with locked(workdir):
        if outermost:
            use_threads(config.run.threads)
        if save:
            save_config(config, workdir)
        yield workdir
