"""The completion-marker and reuse protocol of agf.workdir, checked once for every stage that writes a directory.

One contract for all (as mirdata checks one contract for all loaders): a finished directory holds a marker with
the key of its inputs; the same call again reuses it and rewrites nothing; a directory without its marker (a
stage killed before its last write) is rebuilt; other inputs never silently reuse a finished directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from store_fixtures import toy_collection

from agf.config import Config, FactorConfig, RunConfig, TrainConfig, TransferConfig
from agf.errors import AgfError
from agf.evaluation import evaluate
from agf.factors import build_factors
from agf.models import load_net
from agf.training import NetSpec, task_targets, train_net
from agf.transfer import fit_transfer, net_window_features
from agf.workdir import (
    MARKER,
    WorkDir,
    clear_done,
    is_done,
    locked,
    read_marker,
    require_done,
)

TRAIN = TrainConfig(epochs=1, batch_size=8, patch_frames=16, loader_workers=0, amp=False, channels_last=False)
TRANSFER = TransferConfig(epochs=1, hidden=8, batch_size=64, window_hop=8, amp=False)


@dataclasses.dataclass(frozen=True)
class Env:
    """A toy collection with MFCCs, a trained genre net and a transfer over it: the inputs of later stages."""

    tracks: object
    store: object
    net_dir: Path
    transfer_dir: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    root = tmp_path_factory.mktemp("contract")
    toy = toy_collection(root)
    targets = {"g": task_targets(toy.tracks, "g", None)}
    net_dir = root / "net"
    train_net(NetSpec("stn", ("g",), 0.25), toy.store, toy.tracks, targets, TRAIN, 0, net_dir, "cpu", False)
    transfer_dir = root / "transfer"
    fit_transfer([net_dir], toy.store, toy.tracks, TRANSFER, 0, transfer_dir, "cpu", False)
    return Env(toy.tracks, toy.store, net_dir, transfer_dir)


def run_factors(env: Env, out: Path, variant: int) -> Path:
    config = FactorConfig(tasks=("m",), n_words=8, n_topics=3, seed=variant)
    build_factors(env.tracks, env.store, config, out, workers=1, progress=False)
    return out / "m"


def run_net(env: Env, out: Path, variant: int) -> Path:
    targets = {"g": task_targets(env.tracks, "g", None)}
    train_net(NetSpec("stn", ("g",), 0.25), env.store, env.tracks, targets, TRAIN, variant, out, "cpu", False)
    return out


def run_windows(env: Env, out: Path, variant: int) -> Path:
    net, _ = load_net(env.net_dir)
    net_window_features(net, env.store, env.tracks["track_id"], 16, 8 + variant, "cpu", cache_path=out)
    return out


def run_transfer(env: Env, out: Path, variant: int) -> Path:
    fit_transfer([env.net_dir], env.store, env.tracks, TRANSFER, variant, out, "cpu", False)
    return out


def run_evaluation(env: Env, out: Path, variant: int) -> Path:
    evaluate([env.transfer_dir], env.tracks, out, store=env.store, seed=variant)
    return out


STAGES: dict[str, Callable[[Env, Path, int], Path]] = {
    "factors": run_factors,
    "net": run_net,
    "windows": run_windows,
    "transfer": run_transfer,
    "evaluation": run_evaluation,
}


def stamps(directory: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in directory.rglob("*") if path.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_honours_the_completion_marker(env: Env, tmp_path: Path, stage: str) -> None:
    run = STAGES[stage]
    out = run(env, tmp_path / stage, 0)
    marker = read_marker(out)
    assert marker is not None and isinstance(marker["key"], str) and is_done(out, marker["key"])
    # The same inputs again: reused, nothing rewritten.
    before = stamps(out)
    assert run(env, tmp_path / stage, 0) == out and stamps(out) == before
    # Killed before its last write (no marker): redone, and finished for the same key.
    clear_done(out)
    assert not is_done(out)
    run(env, tmp_path / stage, 0)
    assert read_marker(out)["key"] == marker["key"]
    assert stamps(out)[out / MARKER] != before[out / MARKER]
    # Other inputs never reuse the finished directory: rebuilt under another key, or refused by name.
    try:
        run(env, tmp_path / stage, 1)
    except AgfError as exc:
        assert "other settings" in str(exc)
    else:
        assert read_marker(out)["key"] != marker["key"]


def test_unreadable_marker_means_unfinished(tmp_path: Path) -> None:
    (tmp_path / MARKER).write_text("{half")
    assert read_marker(tmp_path) is None and not is_done(tmp_path)
    with pytest.raises(AgfError, match="not finished"):
        require_done(tmp_path, "the thing")
    assert WorkDir(tmp_path).nets == tmp_path / "nets"


@contextlib.contextmanager
def held_by_another_process(workdir: WorkDir) -> Iterator[None]:
    """Another agf process holding the work directory's lock while the block runs."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from agf.workdir import WorkDir, locked\n"
        f"with locked(WorkDir({str(workdir.root)!r})):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_a_second_command_on_a_locked_work_directory_is_refused(tmp_path: Path) -> None:
    """Two agf processes in one work directory: the second one stops at once, naming the first."""
    workdir = WorkDir(tmp_path / "work")
    with held_by_another_process(workdir):
        with pytest.raises(AgfError, match=r"agf \(pid \d+ on .*\) is working in this work directory"):
            with locked(workdir):
                pass


def test_the_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    """run_pipeline holds the lock and calls stages that take it too: the nested use passes, the outer one
    releases it."""
    from agf.workdir import holds_lock

    workdir = WorkDir(tmp_path / "work")
    with locked(workdir):
        with locked(WorkDir(tmp_path / "." / "work")):  # the same directory, spelled otherwise
            assert holds_lock(workdir)
        assert holds_lock(workdir)
    assert not holds_lock(workdir)
    with held_by_another_process(workdir):  # released for other processes too
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path / "work")
    with held_by_another_process(workdir):
        with pytest.raises(AgfError, match="is working in this work directory"):
            with locked(workdir):
                pass
    with locked(workdir):
        pass


def _stage_config(workdir: WorkDir) -> Config:
    """The default config working in `workdir`."""
    return dataclasses.replace(Config(), run=RunConfig(workdir=str(workdir.root), threads=1))


LOCK_ERROR = r"^\S+work: agf \(pid \d+ on .*\) is working in this work directory; wait for it to finish"


def test_a_stage_called_from_python_is_locked(tmp_path: Path) -> None:
    """A stage_* function called from Python, not through `agf`, works in the run context: while another process
    holds the work directory, it stops with the one-line lock error before doing anything."""
    import pandas as pd

    from agf.errors import PipelineError
    from agf.pipeline import Prepared, stage_factors, stage_transfer

    workdir = WorkDir(tmp_path / "work")
    config = _stage_config(workdir)
    prepared = Prepared(workdir, pd.DataFrame(), None)  # never read: the lock comes first
    with held_by_another_process(workdir):
        with pytest.raises(PipelineError, match=LOCK_ERROR):
            stage_factors(config, prepared, "g", progress=False)
        with pytest.raises(PipelineError, match=LOCK_ERROR):
            stage_transfer(config, prepared, [], seed=0, progress=False)


def test_the_run_context_locks_saves_the_config_and_nests(tmp_path: Path) -> None:
    import pandas as pd
    import torch

    from agf.errors import PipelineError
    from agf.pipeline import Prepared, run_context, stage_factors
    from agf.workdir import holds_lock

    workdir = WorkDir(tmp_path / "work")
    config = _stage_config(workdir)
    with held_by_another_process(workdir):
        with pytest.raises(PipelineError, match=LOCK_ERROR):
            with run_context(config):
                pass
    threads = torch.get_num_threads()
    try:
        with run_context(config, save=True):
            assert holds_lock(workdir) and workdir.config.is_file()  # where `agf run` saves it
            assert torch.get_num_threads() == 1
            # A stage inside (as run_pipeline calls them) passes the lock it holds.
            assert stage_factors(config, Prepared(workdir, pd.DataFrame(), None), "g", progress=False).results == {}
        assert not holds_lock(workdir)
    finally:
        torch.set_num_threads(threads)


def test_a_full_disk_is_one_line_and_the_rerun_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full while writing an array (NumPy's OSError without errno) or a checkpoint (torch's RuntimeError):
    a WriteError that says so, no temporary file left, and the same write succeeds once there is space."""
    import collections
    import errno as errno_codes
    import shutil

    import torch

    from agf.errors import WriteError
    from agf.fileio import write_npy_atomic

    def no_space(*args, **kwargs):
        raise OSError(errno_codes.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", no_space)
    with pytest.raises(WriteError, match="no space left on the device; free some space and run the same command"):
        write_npy_atomic(tmp_path / "a.npy", np.zeros(3))
    monkeypatch.undo()
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 4032))

    def torch_full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 27648 vs 4032")

    monkeypatch.setattr(torch, "save", torch_full)
    from agf.training.checkpoint import RunState, save_checkpoint

    with pytest.raises(WriteError, match="checkpoint.pt: no space left"):
        save_checkpoint(tmp_path / "checkpoint.pt", RunState(), "key", torch.nn.Linear(2, 2), {})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no half-written or temporary file
    write_npy_atomic(tmp_path / "a.npy", np.zeros(3))
    assert np.load(tmp_path / "a.npy").shape == (3,)


def test_agf_prepare_refuses_a_work_directory_another_command_holds(tmp_path: Path, capsys) -> None:
    """Two `agf prepare` on one work directory: the second stops before touching the store."""
    from agf.cli import main

    manifest = tmp_path / "m.csv"
    manifest.write_text("path,artist,genre\nmissing.wav,a,pop\n")
    workdir = WorkDir(tmp_path / "work")
    with held_by_another_process(workdir):
        assert main(["prepare", "--manifest", str(manifest), "-w", str(workdir.root), "--quiet"]) == 1
    assert "is working in this work directory" in capsys.readouterr().err
    assert not (workdir.root / "features").exists()


def test_check_creatable_finds_what_create_refuses_and_writes_nothing(tmp_path: Path) -> None:
    from agf.errors import ConfigError
    from agf.workdir import check_creatable, create

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for path, message in ((a_file, "is a file, not a folder"), (a_file / "under", "lies under a file")):
        for check in (check_creatable, create):
            with pytest.raises(ConfigError, match=message):
                check(WorkDir(path))
    check_creatable(WorkDir(tmp_path / "new" / "work"))
    check_creatable(WorkDir(tmp_path))
    assert sorted(tmp_path.iterdir()) == [a_file]
