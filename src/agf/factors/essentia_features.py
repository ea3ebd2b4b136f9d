"""Task e's song-level descriptors: Essentia's MusicExtractor, flattened to one vector per track.

`flatten_pool` turns the extractor's Pool into {name: value}: metadata.*, the variable-length beat
positions and covariance matrices (.cov, .icov) are dropped; vectors become one entry per element
(`name.007`); the key and scale strings become one-hot entries (`tonal.key_edma.key=F#`,
`tonal.key_edma.scale=minor`); other strings are dropped.

`extract_many` runs the extractor over many files in worker processes (one thread each, spawned).
Each worker analyses one file at a time, so a file that raises is reported with its reason, and a
worker that hangs past the timeout or crashes (Essentia is C++) is killed and replaced: a single
bad file is never fatal. concurrent.futures cannot stop a running task, hence the small supervisor.

On a dask cluster (run.scheduler) each file is one task that runs the extractor in the worker process itself
(built once per process): a file that crashes Essentia kills its worker, the scheduler retries it on others and
then reports it failed. The timeout is not enforced there (a task cannot be stopped): a hanging file holds its
worker until the run is stopped. In a process that may not start processes (a dask worker running a study
corpus), files are analysed in order in that process, likewise without a timeout.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agf.parallel import (
    can_start_processes,
    die_with_parent,
    map_unordered,
    worker_env,
)

DROPPED_PREFIXES = ("metadata.",)
DROPPED_NAMES = frozenset({"rhythm.beats_position"})
DROPPED_SUFFIXES = (".cov", ".icov")
KEY_NAMES = frozenset({"tonal.key_edma.key", "tonal.key_krumhansl.key", "tonal.key_temperley.key", "tonal.chords_key"})
SCALE_NAMES = frozenset(
    {"tonal.key_edma.scale", "tonal.key_krumhansl.scale", "tonal.key_temperley.scale", "tonal.chords_scale"}
)
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FLAT_TO_SHARP = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}
SCALES = ("major", "minor")
# Seconds a worker waits for its previous job to finish before it is killed at shutdown.
STOP_GRACE_S = 5.0


def essentia_unavailable_reason() -> str | None:
    """None when essentia.standard imports; otherwise why it cannot (the exception, in words)."""
    try:
        import essentia

        essentia.log.infoActive = False
        import essentia.standard  # noqa: F401
    except Exception as exc:  # ImportError, or OSError from a broken binary
        return f"essentia cannot be imported ({type(exc).__name__}: {exc})"
    return None


def flatten_pool(pool: Any) -> dict[str, float]:
    """Flatten an Essentia Pool (anything with descriptorNames() and [name]) to {name: float}."""
    features: dict[str, float] = {}
    for name in pool.descriptorNames():
        if name.startswith(DROPPED_PREFIXES) or name.endswith(DROPPED_SUFFIXES) or name in DROPPED_NAMES:
            continue
        value = pool[name]
        if isinstance(value, str):
            features.update(_one_hot(name, value))
            continue
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            continue
        if array.ndim == 0:
            features[name] = float(array)
        else:
            width = len(str(array.size - 1))
            features.update({f"{name}.{i:0{width}d}": float(v) for i, v in enumerate(array.ravel())})
    return features


def _one_hot(name: str, value: str) -> dict[str, float]:
    """One-hot entries for a key (12 pitch classes) or scale (major/minor) string; {} for other strings."""
    if name in KEY_NAMES:
        key = FLAT_TO_SHARP.get(value, value)
        return {f"{name}={pitch}": float(pitch == key) for pitch in PITCH_CLASSES}
    if name in SCALE_NAMES:
        return {f"{name}={scale}": float(scale == value) for scale in SCALES}
    return {}


@dataclass(frozen=True)
class Outcome:
    """The result of analysing one file: features, or the reason it failed."""

    track_id: str
    features: dict[str, float] | None
    error: str | None


@functools.cache
def _music_extractor() -> Any:
    """This process's Essentia MusicExtractor, built once (logging off)."""
    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    import essentia.standard as es

    return es.MusicExtractor()


def extract_here(job: tuple[str, str]) -> Outcome:
    """Analyse one (track_id, path) in this process."""
    track_id, path = job
    try:
        pool, _frames = _music_extractor()(path)
        return Outcome(track_id, flatten_pool(pool), None)
    except Exception as exc:  # Essentia raises RuntimeError for unreadable or odd files
        return Outcome(track_id, None, f"{type(exc).__name__}: {exc}")


def _lost(job: tuple[str, str], error: Exception) -> Outcome:
    """The outcome of a file whose task failed on the cluster (its worker died each time it was tried)."""
    return Outcome(job[0], None, f"worker crashed ({type(error).__name__}: {error})")


def _serve(connection: Connection) -> None:
    """Worker process: analyse each (track_id, path) received until None arrives."""
    die_with_parent()
    _music_extractor()
    while (job := connection.recv()) is not None:
        connection.send(extract_here(job))


class _Worker:
    """One worker process, its pipe, and the job it is busy with."""

    def __init__(self, context: multiprocessing.context.SpawnContext):
        self.connection, child_end = context.Pipe()
        with worker_env():
            self.process = context.Process(target=_serve, args=(child_end,), daemon=True)
            self.process.start()
        child_end.close()
        self.job: tuple[str, str] | None = None
        self.deadline = 0.0

    def give(self, job: tuple[str, str], timeout_s: float) -> None:
        """Send a job and start its clock."""
        self.job = job
        self.deadline = time.monotonic() + timeout_s
        self.connection.send(job)

    def stop(self) -> None:
        """Ask the process to finish, killing it if it does not."""
        if self.process.is_alive():
            try:
                self.connection.send(None)
            except OSError:
                pass
            self.process.join(STOP_GRACE_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()


def extract_many(
    jobs: Sequence[tuple[str, str]], workers: int, timeout_s: float, progress: bool = True, scheduler: str = ""
) -> Iterator[Outcome]:
    """Yield an Outcome per (track_id, audio path) job, in completion order, from `workers` processes.

    A job running longer than `timeout_s` seconds, or whose worker dies, yields a failed Outcome
    and its worker is replaced. With a scheduler, the jobs are tasks of its cluster (see the module docstring).
    """
    if scheduler or not can_start_processes():
        absolute = [(track_id, os.path.abspath(path)) for track_id, path in jobs]
        yield from map_unordered(extract_here, absolute, workers, desc="e: essentia", progress=progress,
                                 unit="track", scheduler=scheduler, on_error=_lost)
        return
    queue = deque(jobs)
    context = multiprocessing.get_context("spawn")
    pool: list[_Worker] = []
    bar = tqdm(total=len(jobs), desc="e: essentia", unit="track", disable=not progress, dynamic_ncols=True)
    try:
        for _ in range(min(max(workers, 1), len(queue))):
            pool.append(_Worker(context))
            pool[-1].give(queue.popleft(), timeout_s)
        while any(worker.job for worker in pool):
            busy = [worker for worker in pool if worker.job]
            next_deadline = min(worker.deadline for worker in busy)
            ready = wait([worker.connection for worker in busy], timeout=max(0.0, next_deadline - time.monotonic()))
            for index, worker in enumerate(pool):
                outcome = _collect(worker, ready, timeout_s) if worker.job else None
                if outcome is None:
                    continue
                yield outcome
                bar.update(1)
                if queue:
                    if not worker.process.is_alive():
                        worker = pool[index] = _Worker(context)
                    worker.give(queue.popleft(), timeout_s)
    finally:
        for worker in pool:
            worker.stop()
        bar.close()


def _collect(worker: _Worker, ready: list[Any], timeout_s: float) -> Outcome | None:
    """The outcome of a busy worker if it has one; a worker that hung or died is stopped."""
    assert worker.job is not None
    track_id = worker.job[0]
    if worker.connection in ready:
        try:
            outcome = worker.connection.recv()
        except (EOFError, OSError):
            worker.process.join(STOP_GRACE_S)
            outcome = Outcome(track_id, None, f"worker crashed (exit code {worker.process.exitcode})")
            worker.stop()
    elif time.monotonic() >= worker.deadline:
        worker.process.kill()
        worker.stop()
        outcome = Outcome(track_id, None, f"timeout: no result after {timeout_s:g} s")
    else:
        return None
    worker.job = None
    return outcome
