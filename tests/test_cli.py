"""The command line's grammar: -w/--workdir wherever a command has a work directory (old spellings accepted with a
note), -j/--workers, --threads and --device wherever they mean something, errors naming the flag that set a
value, and the commands that must create nothing (`agf check`, `agf run --dry-run`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import agf.pipeline
from agf.cli import build_parser, main
from agf.config import Config
from agf.errors import PipelineError

# Every command that works in a work directory, with the arguments it needs besides it.
WORKDIR_COMMANDS = {
    "prepare": [], "factors": [], "train": [], "transfer": ["NET"], "evaluate": ["TRANSFER"], "run": [], "grid": [],
    "check": [], "study": [], "report": [], "export": ["OUT"], "demo": [],
}


@pytest.mark.parametrize("command", sorted(WORKDIR_COMMANDS))
def test_every_command_with_a_work_directory_takes_w(command: str) -> None:
    for flag in ("-w", "--workdir"):
        args = build_parser().parse_args([command, *WORKDIR_COMMANDS[command], flag, "somewhere"])
        assert args.workdir == "somewhere"


@pytest.mark.parametrize("command", sorted(set(WORKDIR_COMMANDS) - {"report", "export"}))
def test_workers_threads_and_device_wherever_they_mean_something(command: str) -> None:
    """Every command that computes takes them (`agf report` and `agf export` compute nothing)."""
    args = build_parser().parse_args([command, *WORKDIR_COMMANDS[command], "-j", "3", "--threads", "1",
                                      "--device", "cpu"])
    assert (args.workers, args.threads, args.device) == (3, 1, "cpu")


def _stop_run_pipeline(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Make agf.pipeline.run_pipeline record its config and stop (no run); the recorded configs."""
    seen: list[Config] = []

    def record(config: Config, **kwargs: object) -> None:
        seen.append(config)
        raise PipelineError("stopped by the test")

    monkeypatch.setattr(agf.pipeline, "run_pipeline", record)
    return seen


def test_demo_takes_w_threads_workers_and_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    seen = _stop_run_pipeline(monkeypatch)
    assert main(["demo", "-w", str(tmp_path / "d"), "-j", "1", "--threads", "1", "--device", "cpu", "-q"]) == 1
    assert (seen[0].run.workdir, seen[0].run.workers, seen[0].run.threads, seen[0].run.device) == \
        (str(tmp_path / "d"), 1, 1, "cpu")
    assert capsys.readouterr().err == "agf demo: error: stopped by the test\n"
    assert main(["demo", "-q"]) == 1 and seen[1].run.workdir == "demo"  # the default


def test_old_spellings_work_with_one_note(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    seen = _stop_run_pipeline(monkeypatch)
    assert main(["demo", "--out", str(tmp_path / "d"), "-q"]) == 1
    assert seen[0].run.workdir == str(tmp_path / "d")
    assert capsys.readouterr().err == ("agf demo: note: --out is deprecated; use -w/--workdir\n"
                                       "agf demo: error: stopped by the test\n")
    nowhere = tmp_path / "nowhere"
    cases = [
        (["report", str(nowhere)], "`agf report WORKDIR` is deprecated; use `agf report -w WORKDIR`"),
        (["export", str(nowhere), str(tmp_path / "model")],
         "`agf export WORKDIR OUT` is deprecated; use `agf export -w WORKDIR OUT`"),
        (["evaluate", "T", "-w", str(nowhere), "--out", str(tmp_path / "e")], "--out is deprecated; use -o/--output"),
    ]
    for argv, note in cases:
        assert main([*argv, "-q"]) == 1
        command = argv[0]
        note_line, error_line = capsys.readouterr().err.splitlines()
        assert note_line == f"agf {command}: note: {note}"
        assert error_line.startswith(f"agf {command}: error: {nowhere / 'config.toml'} not found")
    assert not nowhere.exists() and not (tmp_path / "model").exists()
    args = build_parser().parse_args(["export", "-w", "work", "OUT"])
    assert (args.workdir, args.out, args.old_workdir) == ("work", "OUT", None)


def test_old_and_new_spelling_together_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["demo", "--out", str(tmp_path / "a"), "-w", str(tmp_path / "b"), "-q"]) == 1
    assert capsys.readouterr().err == ("agf demo: error: --out is the old spelling of -w/--workdir: give only "
                                       "-w/--workdir\n")
    assert main(["report", str(tmp_path / "a"), "-w", str(tmp_path / "b")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_errors_name_the_flag_that_set_the_value(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert main(["check", "-c", "demo", "-w", str(a_file), "--split-seed", "-1", "--seeds", "0,-1", "-j", "0",
                 "--quiet"]) == 1
    assert sorted(capsys.readouterr().err.splitlines()) == sorted([
        "agf check: problem: --seeds: -1 must be in [0, 4294967296)",
        "agf check: problem: --split-seed -1: must be in [0, 4294967296)",
        "agf check: problem: --workers 0: must be at least 1",
        f"agf check: problem: --workdir {a_file}: is a file, not a folder; choose another --workdir",
    ])
    cases = [
        (["run", "-c", "demo", "-w", str(tmp_path / "w"), "--seeds", "0,-1"], "--seeds: -1 must be in"),
        (["prepare", "-c", "demo", "-w", str(a_file)], f"--workdir {a_file}: is a file, not a folder"),
        (["synth", str(tmp_path / "corpus"), "--seed", "-1"], "--seed -1: must be in [0, 4294967296)"),
        (["synth", str(tmp_path / "corpus"), "-j", "0"], "--workers 0: must be at least 1"),
        (["train", "-c", "demo", "-w", str(tmp_path / "w"), "--epochs", "0"], "--epochs 0: must be at least 1"),
    ]
    for argv, message in cases:
        assert main([*argv, "--quiet"]) == 1, argv
        err = capsys.readouterr().err
        assert f"agf {argv[0]}: error: {message}" in err and err.count("\n") == 1, (argv, err)
    # A value from a config file keeps its setting's name.
    config = tmp_path / "c.toml"
    config.write_text("[grid]\nseeds = [-1]\n")
    assert main(["run", str(config), "-w", str(tmp_path / "w"), "--quiet"]) == 1
    assert "agf run: error: grid.seeds: -1 must be in" in capsys.readouterr().err
    assert not (tmp_path / "w").exists() and not (tmp_path / "corpus").exists()


def test_predict_threads_and_top_k_below_range_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Refused before the bundle is loaded: `-k 0` is an error, never one genre."""
    for flags, message in [(["-k", "0"], "--top-k 0: must be at least 1"), (["--threads", "0"],
                                                                              "--threads 0: must be at least 1")]:
        assert main(["predict", str(tmp_path / "no-bundle"), str(tmp_path / "a.wav"), *flags, "-q"]) == 1
        assert capsys.readouterr().err == f"agf predict: error: {message}\n"


def _tree(root: Path) -> dict[str, int]:
    """Every path under root with its modification time."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture
def collection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A manifest of 48 empty audio files in tmp_path/music, tmp_path the current directory."""
    from test_datasets_manifest import rows_for, write_manifest

    monkeypatch.chdir(tmp_path)
    genres = [genre for genre in ("rock", "jazz", "folk") for _ in range(8)]
    return write_manifest(tmp_path / "music", rows_for(genres, tracks_per_artist=2))


@pytest.mark.slow
def test_dry_run_and_check_create_nothing(collection: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """No work directory, lock file or config.toml, whether the check passes or fails, with -w or the default."""
    before = _tree(tmp_path)
    manifest = str(collection)
    for argv in (["run", "--manifest", manifest, "-w", "work", "--dry-run"], ["run", "--manifest", manifest,
                                                                             "--dry-run"],
                 ["check", "--manifest", manifest], ["check", "--manifest", manifest, "-w", "new/work"]):
        assert main([*argv, "--threads", "1", "--quiet"]) == 0, argv
    assert "plan:" in capsys.readouterr().out
    for argv in (["check", "--manifest", manifest, "--seeds", "-1"], ["check", "--manifest", "none.csv"],
                 ["run", "--manifest", manifest, "-w", "work", "--dry-run", "-j", "0"], ["check", "-c", "demo"],
                 ["check", "-c", "demo", "-w", str(collection.parent / "audio" / "a0_0.wav" / "under")]):
        assert main([*argv, "--threads", "1", "--quiet"]) in (0, 1), argv
    assert _tree(tmp_path) == before


def test_dry_run_on_a_stale_store_writes_nothing(collection: Path, tmp_path: Path) -> None:
    from store_fixtures import make_store

    from agf.config import load_config
    from agf.store import features_key

    config = load_config("small-collection")
    make_store(tmp_path / "work" / "features" / features_key(config.features),
               {"t000001": np.zeros((100, config.features.n_mels), np.float16)}, config.features)
    for journal in (tmp_path / "work").rglob("*.jsonl"):
        journal.touch()  # newer than index.parquet, as after a killed prepare
    before = _tree(tmp_path)
    assert main(["run", "--manifest", str(collection), "-w", "work", "--dry-run", "--threads", "1", "-q"]) == 0
    assert _tree(tmp_path) == before
