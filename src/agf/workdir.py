"""The work directory: where each stage writes, the one completion-marker protocol, the saved config.

WORKDIR/
  config.toml                 the resolved config of the last run (the values really used)
  corpus/                     the synthetic corpus (dataset kind 'synth')
  tracks.parquet              the track table; missing.parquet: listed tracks whose audio file does not exist
  features/<key>/             the feature store (agf.store)
  factors/<key>/<task>/       artist group factors (agf.factors)
  nets/<arch>-<tasks>-<key>/  trained source nets (agf.training)
  transfer/<key>/             transfer MLPs and predictions; transfer/windows/: cached window features
  evaluation/seed<N>-<key>/   metrics.json and plots of every model of one seed (agf.evaluation)
  report/                     results.csv, tables.md, figure3.png, report.html (agf.report)
  model/                      the model bundle `agf demo` exports (agf.predict; `agf export` writes anywhere)

Keys hash settings and the content of inputs, never a path: the same directory reached by a relative or an
absolute path, or moved elsewhere, reuses everything. A stage's output directory is finished when its marker
(done.json) exists and records the key the stage computed for its inputs now; the marker is written last and
removed before a rebuild, so a killed stage is simply redone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agf.config import Config, config_to_toml
from agf.errors import ConfigError, PipelineError
from agf.fileio import read_json, write_json_atomic, write_text_atomic

MARKER = "done.json"
LOCK_FILE = ".agf.lock"


@dataclass(frozen=True)
class WorkDir:
    """Paths of one work directory."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def tracks(self) -> Path:
        return self.root / "tracks.parquet"

    @property
    def missing(self) -> Path:
        return self.root / "missing.parquet"

    @property
    def factors(self) -> Path:
        return self.root / "factors"

    @property
    def nets(self) -> Path:
        return self.root / "nets"

    @property
    def transfer(self) -> Path:
        return self.root / "transfer"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def model(self) -> Path:
        return self.root / "model"


def _refused(workdir: WorkDir, why: str) -> ConfigError:
    """The error of a work directory that cannot be used, and why."""
    return ConfigError(f"run.workdir {workdir.root}: {why}; choose another --workdir")


def create(workdir: WorkDir) -> None:
    """Create the work directory; ConfigError when its path is a file or lies under one, or cannot be written."""
    try:
        workdir.root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise _refused(workdir, "is a file, not a folder") from None
    except NotADirectoryError:
        raise _refused(workdir, "lies under a file") from None
    except PermissionError:
        raise _refused(workdir, "not allowed to create it") from None


def _nearest_existing(path: Path) -> Path:
    """`path`, or the nearest of its parents that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_creatable(workdir: WorkDir) -> None:
    """The ConfigError create() would raise, found without creating or writing anything (`agf check`)."""
    existing = _nearest_existing(workdir.root)
    if not existing.is_dir():
        raise _refused(workdir, "is a file, not a folder" if existing == workdir.root.absolute() else
                       "lies under a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _refused(workdir, "not allowed to write in it" if existing == workdir.root.absolute() else
                       "not allowed to create it")


def free_bytes(workdir: WorkDir) -> int:
    """Free bytes on the file system that holds (or will hold) the work directory."""
    return shutil.disk_usage(_nearest_existing(workdir.root)).free


# The resolved roots of the work directories whose lock this process holds (agf.workdir.locked).
_HELD: set[Path] = set()


def holds_lock(workdir: WorkDir) -> bool:
    """Whether this process holds the work directory's lock."""
    return workdir.root.resolve() in _HELD


@contextlib.contextmanager
def locked(workdir: WorkDir) -> Iterator[None]:
    """Hold the work directory's lock while a command works in it; PipelineError naming the holder when another
    agf process holds it. Reentrant within a process: where this process holds it already (run_pipeline calling
    a stage), it passes. The kernel releases the lock when its holder dies (even by SIGKILL), so a killed run
    leaves no stale lock, and the next run's clean-up of temporary files never touches a live run's files."""
    if holds_lock(workdir):
        yield
        return
    create(workdir)
    handle = open(workdir.root / LOCK_FILE, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise PipelineError(f"{workdir.root}: {holder} is working in this work directory; wait for it to finish "
                            "or stop it, then run the command again") from None
    root = workdir.root.resolve()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"agf (pid {os.getpid()} on {socket.gethostname()})")
        handle.flush()
        _HELD.add(root)
        yield
    finally:
        _HELD.discard(root)
        handle.close()  # closing the file releases the lock


def save_config(config: Config, workdir: WorkDir) -> None:
    """Create the work directory and record the resolved config of this run in it."""
    create(workdir)
    write_text_atomic(workdir.config, config_to_toml(config))


# -- the completion marker ------------------------------------------------------------------------


def read_marker(directory: Path) -> dict[str, Any] | None:
    """The marker of a stage's output directory; None when absent or unreadable (then the stage is redone)."""
    try:
        marker = read_json(Path(directory) / MARKER)
    except (FileNotFoundError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def is_done(directory: Path, key: str | None = None) -> bool:
    """Whether the directory holds finished output (of the inputs `key` names, when given)."""
    marker = read_marker(directory)
    return marker is not None and (key is None or marker.get("key") == key)


def clear_done(directory: Path) -> None:
    """Remove the marker before rewriting a directory's outputs (a kill midway then leaves it unfinished)."""
    (Path(directory) / MARKER).unlink(missing_ok=True)


def mark_done(directory: Path, key: str, **record: Any) -> None:
    """Write the marker, last: the outputs of `directory` answer the inputs `key` names."""
    write_json_atomic(Path(directory) / MARKER, {"key": key, **record})


def require_done(directory: Path, what: str) -> None:
    """PipelineError when a stage that should be finished is not (e.g. for `agf report`)."""
    if not is_done(directory):
        raise PipelineError(f"{what} is not finished ({directory}); run `agf run` on this work directory first")
