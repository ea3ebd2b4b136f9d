"""End to end: a tiny synthetic corpus through `agf run` (every stage), the reuse of a rerun, `agf report`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiny_config import TINY_CORPUS, TINY_TRAINING

from agf.cli import main
from agf.config import GridConfig, load_config
from agf.fileio import read_json
from agf.grid import Case, grid_cases, grid_subsets

TINY = TINY_CORPUS + """
[grid]
tasks = ["g", "m", "s"]
archs = ["stn", "mtn", "wstn"]
subsets = ["g", "m", "gm", "gms"]
seeds = [0]
""" + TINY_TRAINING.replace("[factors]\n", '[factors]\ntasks = ["m", "s"]\n')


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    config = root / "tiny.toml"
    config.write_text(TINY)
    assert main(["run", str(config), "--workdir", str(root / "work"), "--quiet"]) == 0
    return root


def test_the_run_records_each_stage_s_wall_time(finished_run: Path) -> None:
    times = read_json(finished_run / "work" / "stage-times.json")
    stages = ["plan", "tracks (renders the corpus)", "prepare", "factors", "nets", "transfers", "evaluation", "report"]
    assert [row["stage"] for row in times["stages"]] == stages
    assert all(row["seconds"] > 0 for row in times["stages"])
    assert times["total"] == pytest.approx(sum(row["seconds"] for row in times["stages"]), abs=0.05)


def test_every_report_file(finished_run: Path) -> None:
    work = finished_run / "work"
    report = work / "report"
    for name in ("results.csv", "tables.md", "figure3.png", "report.html"):
        assert (report / name).stat().st_size > 0, name
    results = pd.read_csv(report / "results.csv")
    cases = set(zip(results["arch"], results["tasks"], results["n_tasks"]))
    assert cases == {
        ("stn", "g", 1), ("stn", "m", 1), ("stn", "gm", 2), ("stn", "gms", 3),
        ("mtn", "gm", 2), ("mtn", "gms", 3), ("wstn", "g", 2), ("wstn", "g", 3),
    }
    assert set(results["metric"]) == {"log_loss", "macro_f1", "accuracy", "ece"}
    assert set(results["labels"]) == {"given", "true"}
    assert results["value"].notna().all()
    tables = (report / "tables.md").read_text()
    for title in ("Table 3", "Table 4", "Table 5", "Baselines", "Dataset"):
        assert title in tables
    html = (report / "report.html").read_text()
    assert "<img" in html and "src=\"http" not in html
    assert (report / "curves.png").stat().st_size > 0 and "Training curves of the best transfer setup" in html
    assert "true labels." in html  # the best model's confusion matrix against the synthetic corpus's true genres
    assert "Reliability diagram of the best transfer setup" in html and "Calibration (split test" in tables
    assert "STN accuracy" in tables and "highest mean validation accuracy" in tables
    # The chosen model (validation protocol): its validation numbers flagged as the ones that chose it, then test.
    assert "## The chosen model" in tables and "artists; it chose the model)" in tables and "test (" in tables
    record = json.loads((work / "selection" / "selection.json").read_text())
    assert record["mode"] == "validation" and record["selection"]["split"] == "val"
    # Nets are trained once per (arch, tasks): STN g, m, s; MTN gm, gms; two wSTNs.
    nets = sorted(p.name.rsplit("-", 1)[0] for p in (work / "nets").iterdir())
    assert nets == ["mtn-gm", "mtn-gms", "stn-g", "stn-m", "stn-s", "wstn-g", "wstn-g"]
    for task in ("m", "s"):
        assert list(work.glob(f"factors/*/{task}/heatmap.png"))
        # On the synthetic corpus, each task's artist groups say more about genre than shuffled genres do.
        [summary] = [json.loads(p.read_text()) for p in work.glob(f"factors/*/{task}/summary.json")]
        assert summary["nmi_genre"] > summary["nmi_shuffled_p95"], summary
    assert (work / "config.toml").exists()


def test_rerun_reuses_every_stage_and_report_rebuilds(finished_run: Path, capsys: pytest.CaptureFixture) -> None:
    work = finished_run / "work"
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("nets/*/model.safetensors")}
    stamps |= {p: p.stat().st_mtime_ns for p in work.glob("transfer/*/mlp.safetensors")}
    capsys.readouterr()
    assert main(["run", str(finished_run / "tiny.toml"), "--workdir", str(work), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert ": training" not in out and ": fitting" not in out
    last = out.strip().splitlines()
    assert last[-1].startswith("report: ") and " vs STN g: test accuracy" in last[-2]  # the result, then where
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    (work / "report" / "report.html").unlink()
    assert main(["report", "-w", str(work), "--quiet"]) == 0
    assert (work / "report" / "report.html").exists()


def test_workdir_reused_by_relative_path_and_after_a_move(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys never hash a path: the run's directory by a relative path, and a moved copy, reuse every stage."""
    config = str(finished_run / "tiny.toml")
    work = finished_run / "work"
    outputs = ("nets/*/model.safetensors", "transfer/*/mlp.safetensors", "factors/*/*/done.json",
               "evaluation/*/done.json", "features/*/packs/*.jsonl")

    def stamps(root: Path) -> dict[str, int]:
        found = {str(p.relative_to(root)): p.stat().st_mtime_ns for pattern in outputs for p in root.glob(pattern)}
        assert len(found) > 10 and any(name.startswith("features/") for name in found)
        return found

    before = stamps(work)
    monkeypatch.chdir(finished_run)
    capsys.readouterr()
    assert main(["run", config, "--workdir", "work", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "newly prepared: 0" in out and ": training" not in out and ": fitting" not in out
    assert stamps(work) == before
    moved = tmp_path / "elsewhere" / "moved-work"
    shutil.copytree(work, moved)  # copy2 keeps every file's modification time, as a move does
    assert main(["run", config, "--workdir", str(moved), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "newly prepared: 0" in out and ": training" not in out and ": fitting" not in out
    assert stamps(moved) == before


def test_report_refuses_unfinished_work(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`agf report` trains nothing: an empty work directory, or one whose transfers are not finished, is an error."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.toml").write_text(TINY)
    assert main(["report", "-w", str(empty), "--quiet"]) == 1
    assert "tracks.parquet not found" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(finished_run / "work", other)
    (other / "config.toml").write_text(TINY.replace("epochs = 2", "epochs = 3"))  # the MLPs' epochs
    assert main(["report", "-w", str(other), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "transfer STN g seed 0 is not finished" in err and "run `agf run` on this work directory first" in err
    finished_transfers = len(list((finished_run / "work").glob("transfer/*/done.json")))
    assert len(list(other.glob("transfer/*/done.json"))) == finished_transfers  # nothing was fitted


def test_exported_model_predicts_what_the_evaluation_scored(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`agf export` ships the model chosen on validation (selection.json); `agf predict`, the Python API and the
    evaluation stage's predictions agree on the same files; `--case` exports one seed of a named case."""
    from agf import GenreClassifier

    work = finished_run / "work"
    bundle = tmp_path / "model"
    assert main(["export", "-w", str(work), str(bundle), "-q"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    record = json.loads((work / "selection" / "selection.json").read_text())
    assert record["mode"] == "validation" and manifest["name"] == record["chosen"]["name"]
    assert "Chosen on the validation split" in manifest["selection"] and set(manifest["metrics"]["test"]) == {
        "given", "true"}
    capsys.readouterr()

    import dataclasses

    from agf.pipeline import open_chosen
    from agf.selection import apply_choice

    config = load_config(work / "config.toml")
    _, chosen = open_chosen(dataclasses.replace(config, run=dataclasses.replace(config.run, workdir=str(work))))
    tracks = pd.read_parquet(work / "tracks.parquet").set_index("track_id")
    test = tracks[tracks["split"] == "test"]
    members = [m.probs.loc[test.index.astype(str)] for m in chosen.selection.members]
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(bundle), *test["audio_path"], "-o", str(out), "-q"]) == 0
    predicted = pd.read_csv(out, dtype={"file_id": str}).set_index("file_id")
    genres = manifest["genres"]
    # The bundle carries the temperature chosen on validation, and applies it.
    temperature = manifest["calibration"]["temperature"]
    assert temperature == pytest.approx(record["chosen"]["temperature"]) and temperature != 1.0
    expected = apply_choice(members, record["chosen"]["combination"], temperature)[genres].to_numpy()
    assert np.abs(predicted.loc[[Path(p).stem for p in test["audio_path"]], genres].to_numpy() - expected).max() < 1e-5
    classifier = GenreClassifier.load(bundle)
    from_api = [classifier.predict(path) for path in test["audio_path"]]
    assert np.abs(np.array([[p[g] for g in genres] for p in from_api]) - expected).max() < 1e-5

    assert main(["export", "-w", str(work), str(tmp_path / "mtn"), "--case", "mtn GMS", "-q"]) == 0
    assert json.loads((tmp_path / "mtn" / "manifest.json").read_text())["case"]["arch"] == "mtn"
    assert main(["export", "-w", str(work), str(tmp_path / "x"), "--case", "STN q", "-q"]) == 1
    assert "no trained case called 'STN q'; the work directory has 'STN g'" in capsys.readouterr().err


def test_demo_ends_by_exporting_and_predicting(finished_run: Path) -> None:
    import dataclasses

    from agf.pipeline import demo_predictions, run_pipeline

    work = finished_run / "work"
    config = load_config(work / "config.toml")
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, workdir=str(work)))
    text = demo_predictions(config, run_pipeline(config, progress=False, log=lambda _: None, must_be_done=True))
    assert (work / "model" / "manifest.json").is_file()
    lines = text.splitlines()
    assert lines[0].startswith("exported ") and "test files" in lines[0]
    assert len([line for line in lines if line.startswith("  ") and ".mp3  given " in line]) >= 1
    assert f"agf predict {work / 'model'}" in lines[-1]


def test_grid_cases_follow_the_paper() -> None:
    grid = GridConfig()
    subsets = grid_subsets(grid)
    assert len(subsets) == 31 and subsets[0] == "g" and subsets[-1] == "gmdes"
    cases = grid_cases(grid, subsets)
    assert sum(c.arch == "stn" for c in cases) == 31
    assert sum(c.arch == "mtn" for c in cases) == 26  # N = 1 is the same net as the STN
    assert [c.n_tasks for c in cases if c.arch == "wstn"] == [2, 3, 4, 5]
    seeds = grid_cases(GridConfig(seeds=(0, 1, 2)), subsets)
    assert len(seeds) == 3 * len(cases)
    assert Case("mtn", "gm", 2, 0) in cases


def test_bad_grid_subset_is_named() -> None:
    from agf.errors import ConfigError

    with pytest.raises(ConfigError, match="gx"):
        grid_subsets(GridConfig(subsets=("gx",)))


def test_config_toml_records_the_run(finished_run: Path) -> None:
    recorded = load_config(finished_run / "work" / "config.toml")
    assert recorded.grid.subsets == ("g", "m", "gm", "gms")
    assert json.loads(json.dumps(recorded.factors.tasks)) == ["m", "s"]


def test_stage_commands_on_the_finished_workdir(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """agf factors / train / transfer / evaluate one at a time, on the work directory `agf run` left."""
    work = str(finished_run / "work")
    config = str(finished_run / "tiny.toml")
    common = ["-c", config, "-w", work, "--quiet"]
    assert main(["factors", *common, "--tasks", "m"]) == 0
    assert "artist group factors:" in capsys.readouterr().out
    assert main(["train", *common, "--tasks", "g,s", "--arch", "mtn", "--epochs", "1", "--seed", "5"]) == 0
    [net] = [line.split("net: ")[1] for line in capsys.readouterr().out.splitlines() if line.startswith("net: ")]
    assert (Path(net) / "model.safetensors").exists()
    assert main(["transfer", *common, net, "--epochs", "1"]) == 0
    transfer = capsys.readouterr().out.split("predictions in ")[1].strip()
    assert main(["evaluate", *common, transfer, "-o", str(tmp_path / "ev")]) == 0
    assert "classical: logreg on MFCC stats" in capsys.readouterr().out
    assert (tmp_path / "ev" / "metrics.json").exists()
    assert main(["train", *common, "--tasks", "x"]) == 1
    assert "use letters of g,m,d,e,s" in capsys.readouterr().err


def test_user_errors_are_one_line_and_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                finished_run: Path) -> None:
    common = ["-c", str(finished_run / "tiny.toml"), "-w", str(finished_run / "work"), "--quiet"]
    not_a_net = tmp_path / "not-a-net"
    not_a_net.mkdir()
    assert main(["transfer", *common, str(not_a_net)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "net.json" in err and "Traceback" not in err
    assert main(["transfer", *common, str(not_a_net), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("agf ")


def test_headline_chooses_on_validation_and_compares_with_the_seed_spread() -> None:
    """The headline's best model is the pipeline's best case, chosen on validation: poisoned test numbers change no
    choice; `agf demo`'s summary after it says where the report is."""
    from agf.pipeline import Factors, GridRun, PipelineRun, best_case, demo_summary
    from agf.report import headline

    cases = [Case(arch, tasks, len(tasks), seed) for seed in (0, 1, 2) for arch, tasks in
             (("stn", "g"), ("stn", "gm"), ("stn", "e"), ("mtn", "gm"))]
    rng = np.random.default_rng(0)
    rows = []
    for case in cases:
        # On validation, 'STN gm' has the best accuracy, 'STN e' the best (hedging) log loss.
        val_accuracy = {"g": 0.8, "gm": 0.9, "e": 0.7}[case.tasks] - (0.05 if case.arch == "mtn" else 0.0)
        val_loss = {"g": 1.0, "gm": 1.2, "e": 0.6}[case.tasks]
        for split, labels in (("val", "given"), ("test", "given"), ("test", "true")):
            values = {"accuracy": val_accuracy, "log_loss": val_loss, "macro_f1": 0.5, "ece": 0.1}
            if split == "test":
                values = {m: float(rng.uniform(0.1, 1.0)) for m in values}
            rows += [{"tasks": case.tasks, "arch": case.arch, "n_tasks": case.n_tasks,
                      "includes_genre": "g" in case.tasks, "seed": case.seed, "split": split, "labels": labels,
                      "metric": metric, "value": value} for metric, value in values.items()]
    results = pd.DataFrame(rows)
    grid = GridRun({case: Path(f"/t/{i}") for i, case in enumerate(cases)}, {}, Factors(None, None))
    chosen = best_case(grid, results)
    assert (chosen.arch, chosen.tasks, chosen.seed) == ("stn", "gm", 0)
    lead = headline(results)
    assert lead.best == chosen.label
    assert "best: STN gm" in lead.text() and "genre only: STN g" in lead.text()
    assert "highest mean validation accuracy" in lead.text() and "spread over 3 seeds" in lead.verdict
    poisoned = results.copy()
    test = poisoned["split"] == "test"
    poisoned.loc[test, "value"] = rng.permutation(poisoned.loc[test, "value"].to_numpy())
    assert best_case(grid, poisoned) == chosen and headline(poisoned).best == chosen.label
    run = PipelineRun(None, grid, results, pd.DataFrame(), {"html": "report.html"})
    assert demo_summary(run).endswith(": report.html")


def test_new_run_and_report_end_with_the_headline_and_record_provenance(finished_run: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    """`agf report` (and `agf run`: the same run_pipeline) ends with the headline, then the report's path; the report
    opens with it and says how the results were made."""
    import html

    from agf.report import headline, read_results_csv

    work = finished_run / "work"
    capsys.readouterr()
    assert main(["report", "-w", str(work), "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    lead = headline(read_results_csv(work / "report" / "results.csv"))
    assert lines[-1] == f"report: {work / 'report' / 'report.html'}"
    assert lines[-2] == lead.verdict and lead.verdict.startswith(f"{lead.best} vs STN g: test accuracy (true labels)")
    assert lines[-1 - len(lead.text().splitlines())] == lead.table.title
    page = (work / "report" / "report.html").read_text()
    assert page.index('<section id="headline">') < page.index("Table 3:")
    assert page.index(html.escape(lead.verdict)) < page.index("Table 3:")
    provenance = page[page.index('<section id="provenance">'):]
    assert "the synthetic corpus of the [synth] settings; split: " in provenance
    assert "torch device " in provenance and "git commit " in provenance
    assert html.escape((work / "config.toml").read_text()) in provenance
    recorded = read_json(work / "stage-times.json")
    assert "by the run that wrote stage-times.json" in provenance and recorded["measured"] in provenance
    for row in recorded["stages"]:
        assert f"<td>{html.escape(row['stage'])}</td>" in provenance


def test_dataset_problems_are_found_before_any_training() -> None:
    from agf.pipeline import dataset_problems

    tracks = pd.DataFrame({"genre": ["pop", "pop", "rock", "rock", "jazz"],
                           "split": ["train", "val", "train", "test", "val"], "track_id": list("abcde")})
    # Every training track of jazz failed to decode: found now, not at evaluation after hours of training.
    assert dataset_problems(tracks) == ["genre(s) jazz have usable tracks but none in the training split (their "
                                        "training tracks failed or are missing: see the prepare summary)"]
    only_train = tracks.assign(split="train")
    assert dataset_problems(only_train) == ["no usable track in the validation or test split: nothing to select or "
                                            "report on"]


def test_commands_without_a_dataset_or_config_say_so(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     finished_run: Path) -> None:
    assert main(["prepare", "-w", str(tmp_path / "w"), "--quiet"]) == 1
    assert "no dataset: give a config" in capsys.readouterr().err and not (tmp_path / "w").exists()
    assert main(["train", "-w", str(tmp_path / "w"), "--quiet"]) == 1
    assert "config.toml not found" in capsys.readouterr().err
    # Stage commands read the work directory's saved config: no second feature store appears.
    work = finished_run / "work"
    stores = sorted(p.name for p in (work / "features").iterdir())
    assert main(["factors", "-w", str(work), "--tasks", "m", "--quiet"]) == 0
    assert sorted(p.name for p in (work / "features").iterdir()) == stores
    capsys.readouterr()
    assert main(["check", str(finished_run / "tiny.toml"), "-w", str(work), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "dataset: 27 tracks" in out and "prepared: 27 of 27 tracks usable" in out and "ok: no problem" in out


def test_report_never_computes(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    other = tmp_path / "other"
    shutil.copytree(finished_run / "work", other)
    for marker in other.glob("factors/*/m/done.json"):
        marker.unlink()
    before = sorted(str(p) for p in other.rglob("*"))
    assert main(["report", "-w", str(other), "--quiet"]) == 1
    assert "artist group factors of task m are not finished" in capsys.readouterr().err
    assert sorted(str(p) for p in other.rglob("*")) == before


def test_a_run_made_on_a_gpu_cluster_is_reported_and_exported_on_a_cpu(finished_run: Path, tmp_path: Path) -> None:
    """config.toml of a run made with device cuda and a dask scheduler: report and export read files only (they
    failed on the device and scheduler checks on a machine without either)."""
    other = tmp_path / "other"
    shutil.copytree(finished_run / "work", other)
    saved = (other / "config.toml").read_text()
    assert 'device = "auto"' in saved and 'scheduler = ""' in saved
    (other / "config.toml").write_text(saved.replace('device = "auto"', 'device = "cuda:7"').replace(
        'scheduler = ""', 'scheduler = "tcp://127.0.0.1:1"'))
    assert main(["report", "-w", str(other), "--quiet"]) == 0
    assert main(["export", "-w", str(other), str(tmp_path / "model"), "--quiet"]) == 0
    assert (tmp_path / "model").is_dir()


def test_bad_paths_and_encodings_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes("[train]\nepochs = 3 # café\n".encode("latin-1"))
    cases = [
        (["prepare", "-c", "demo", "-w", str(a_file)], "is a file, not a folder"),
        (["prepare", "-c", "demo", "-w", str(a_file / "under")], "lies under a file"),
        (["synth", str(a_file)], "is a file, not a folder"),
        (["run", str(latin1), "-w", str(tmp_path / "w")], "not UTF-8 text"),
    ]
    for argv, message in cases:
        assert main([*argv, "--quiet"]) == 1, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)


def test_a_run_that_would_fill_the_disk_stops_before_prepare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import collections

    from agf.config import Config
    from agf.pipeline import space_problem
    from agf.plan import store_bytes
    from agf.workdir import WorkDir

    tracks = pd.DataFrame({"track_id": ["a", "b"], "declared_duration": [30.0, 600.0]})
    per_track = store_bytes(tracks.iloc[:1], Config())[0]
    assert 300_000 < per_track < 700_000  # 30 s of 128 float16 mel bands + 25 float32 MFCCs, 43 frames/s
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - per_track, per_track))
    assert "needs about" in space_problem(Config(), WorkDir(tmp_path), tracks)
    assert space_problem(Config(), WorkDir(tmp_path), tracks.iloc[:1]) is None


def test_the_plan_counts_what_the_run_does(finished_run: Path, tmp_path: Path) -> None:
    """The plan made before anything ran (an unrendered corpus) and the one made on the finished work directory
    both count the nets, epochs, transfers and windows that the run made."""
    import dataclasses

    from agf.pipeline import plan_run, run_pipeline

    work = finished_run / "work"
    config = load_config(finished_run / "tiny.toml")
    finished = dataclasses.replace(config, run=dataclasses.replace(config.run, workdir=str(work)))
    grid = run_pipeline(finished, progress=False, log=lambda _: None, must_be_done=True).grid
    specs = [json.loads((d / "mlp.json").read_text()) for d in grid.transfers.values()]
    nets = {source["path"] for spec in specs for source in spec["sources"]}
    epochs = sum(int(pd.read_csv(Path(net) / "curves.csv")["epoch"].max()) for net in nets)
    windows = {len(pd.read_parquet(d)) for d in work.glob("transfer/windows/*/hop*/windows.parquet")}
    before = dataclasses.replace(config, run=dataclasses.replace(config.run, workdir=str(tmp_path / "new")))
    for plan, _ in (plan_run(finished, measure=False), plan_run(before, measure=False)):
        assert plan.transfers == len(grid.transfers)
        assert len(plan.nets) == len(nets)
        assert sum(net.epochs for net in plan.nets) == epochs
        assert {plan.windows_per_net} == windows
        assert {plan.mlp_windows_per_epoch} == {spec["n_train_windows"] for spec in specs}
        assert plan.factors.n_topics == 4 and plan.factor_tasks == "ms"
    assert plan_run(finished, measure=False)[0].to_prepare == 0
    assert plan_run(before, measure=False)[0].to_prepare == sum(plan.tracks.values())
    assert not (tmp_path / "new" / "corpus").exists()  # planning renders nothing


def test_the_plan_leaves_out_an_unavailable_task_as_the_run_does(finished_run: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Task e where Essentia cannot be imported: the run drops the subsets that use it (and matches the wSTN to the
    available tasks); the plan made before it counts the same nets and transfers, and says why."""
    import dataclasses

    from agf.pipeline import plan_run, run_pipeline

    def no_essentia() -> str:
        return "essentia cannot be imported (ImportError: a test)"

    monkeypatch.setattr("agf.factors.build.essentia_unavailable_reason", no_essentia)
    monkeypatch.setattr("agf.plan.essentia_unavailable_reason", no_essentia, raising=False)
    work = tmp_path / "work"
    shutil.copytree(finished_run / "work", work)  # moved: every finished stage is reused
    config = load_config(finished_run / "tiny.toml")
    config = dataclasses.replace(
        config, factors=dataclasses.replace(config.factors, tasks=("m", "e")),
        grid=GridConfig(tasks=("g", "m", "e"), archs=("stn", "mtn", "wstn"), subsets=("g", "e", "ge", "gm", "gme"),
                        seeds=(0,)),
        run=dataclasses.replace(config.run, workdir=str(work)))
    plan = plan_run(config, measure=False)[0]
    lines: list[str] = []
    run = run_pipeline(config, progress=False, log=lines.append)
    sources = {source["path"] for d in run.grid.transfers.values()
               for source in json.loads((d / "mlp.json").read_text())["sources"]}
    assert sorted(case.label for case in run.grid.transfers) == ["MTN gm", "STN g", "STN gm", "WSTN g (N=2)"]
    assert (plan.transfers, len(plan.nets)) == (len(run.grid.transfers), len(sources)) == (4, 4)
    assert plan.factor_tasks == "m"
    assert any("task e unavailable (essentia cannot be imported" in warning for warning in plan.warnings)
    assert any("task(s) e unavailable; dropping the subsets that use them" in line for line in lines)


def test_dry_run_prints_the_plan_and_runs_nothing(finished_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    work = tmp_path / "dry"
    assert main(["run", str(finished_run / "tiny.toml"), "--workdir", str(work), "--dry-run", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "plan:" in out and "estimated time:" in out and "nets: 7 (" in out
    assert not (work / "corpus").exists() and not (work / "features").exists()


def test_a_manifest_without_a_config_gets_the_small_collection_preset(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    from test_datasets_manifest import rows_for, write_manifest

    genres = [genre for genre in ("rock", "jazz", "folk") for _ in range(8)]
    manifest = write_manifest(tmp_path / "music", rows_for(genres, tracks_per_artist=2))  # empty audio files
    work = tmp_path / "work"
    assert main(["run", "--manifest", str(manifest), "-w", str(work), "--dry-run", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    # 24 artists, about 70 % of them training: m and d groups sized to them (8 words each, a quarter as topics).
    assert "factors: tasks md; 128 words, 4 topics" in out
    assert "nets: 15 (" in out  # STN g, m, d, MTN gm, gmd over 3 seeds
    assert "transfers: 15 MLPs x 30 epochs" in out
    assert "warning" not in out
    assert main(["run", "-c", "paper", "--manifest", str(manifest), "-w", str(work), "--dry-run", "-q"]) == 0
    out = capsys.readouterr().out
    assert "2048 words, 40 topics" in out and "warning: factors.n_words = 2048" in out


def _tree(root: Path) -> dict[str, int]:
    """Every path under root with its modification time."""
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_check_is_read_only(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`agf check` creates and writes nothing: not a new work directory, not the store's index (stale here, as after
    a killed prepare), not a lock file."""
    work = tmp_path / "work"
    shutil.copytree(finished_run / "work", work)
    for journal in work.glob("features/*/packs/*.jsonl"):
        journal.touch()  # newer than index.parquet
    before = _tree(work)
    assert main(["check", str(finished_run / "tiny.toml"), "-w", str(work), "--quiet"]) == 0
    assert "prepared: 27 of 27 tracks usable" in capsys.readouterr().out
    assert _tree(work) == before
    new = tmp_path / "new" / "work"
    assert main(["check", str(finished_run / "tiny.toml"), "-w", str(new), "--quiet"]) == 0
    assert not (tmp_path / "new").exists()


def test_check_lists_every_problem_of_every_section_at_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    config = tmp_path / "bad.toml"
    config.write_text('[dataset]\nkind = "manifest"\nmanifest = "none.csv"\n[train]\nlr = inf\nepochs = "many"\n'
                      "[grid]\narchs = ['cnn']\n[synth]\nn_genres = 0\n")
    argv = ["check", str(config), "-w", str(a_file), "--split-seed", "-1", "--seeds", "-1", "-j", "0", "--quiet"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    problems = [line.removeprefix("agf check: problem: ").split(":")[0].split(" =")[0]
                for line in captured.err.splitlines()]
    assert sorted(problems) == sorted(["train.epochs", "train.lr", "--split-seed -1", "synth.n_genres", "--seeds",
                                       "grid.archs", "--workers 0", f"--workdir {a_file}"]), captured.err
    assert "dataset: not checked until the settings of [dataset] are fixed" in captured.out
    config.write_text('[dataset]\nkind = "manifest"\nmanifest = "none.csv"\n[train]\nlr = inf\n')
    assert main(["check", str(config), "-w", str(a_file), "--quiet"]) == 1
    err = capsys.readouterr().err  # with the dataset section right, its problem is listed beside the others
    assert "train.lr = inf" in err and "is a file" in err and "none.csv: not found" in err


def test_seeds_out_of_range_from_the_command_line_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = [
        (["synth", str(tmp_path / "corpus"), "--seed", "-1"], "--seed -1: must be in [0, 4294967296)"),
        (["synth", str(tmp_path / "corpus"), "-j", "-1", "--genres", "2", "--seconds", "1"],
         "--workers -1: must be at least 1"),
        (["prepare", "-c", "demo", "-w", str(tmp_path / "w"), "--split-seed", "-1"], "--split-seed -1"),
        (["run", "-c", "demo", "-w", str(tmp_path / "w"), "--seeds", "0,-1"], "--seeds: -1 must be in"),
        (["train", "-c", "demo", "-w", str(tmp_path / "w"), "--seed", "-1"], "--seed -1: a run seed must be in"),
    ]
    for argv, message in cases:
        assert main([*argv, "--quiet"]) == 1, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "w").exists()


def test_predict_refuses_top_k_and_workers_below_their_range(finished_run: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    clip = next((finished_run / "work" / "corpus").rglob("*.mp3"))
    assert main(["export", "-w", str(finished_run / "work"), str(tmp_path / "model"), "--quiet"]) == 0
    for flags, message in [(["-k", "0"], "--top-k 0: must be at least 1"), (["-k", "-1"], "--top-k -1"),
                           (["-j", "-1"], "--workers -1: must be at least 0"), (["-j", "-3"], "--workers -3")]:
        assert main(["predict", str(tmp_path / "model"), str(clip), *flags, "--quiet"]) == 1, flags
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (flags, err)


def test_a_failing_dry_run_prints_its_problem_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "none.csv"
    assert main(["run", "--manifest", str(missing), "-w", str(tmp_path / "w"), "--dry-run", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("none.csv") == 1 and "plan:" not in captured.out, captured


def test_free_space_counts_only_what_is_left_to_store(finished_run: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    """A complete store needs nothing more; a new one is sized in a unit that fits, and `agf prepare` refuses it
    before decoding anything."""
    import collections

    from agf.pipeline import space_problem, stage_tracks
    from agf.workdir import WorkDir

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 2000, 2000))
    config = load_config(finished_run / "tiny.toml")
    loaded = pd.read_parquet(finished_run / "work" / "tracks.parquet")
    assert space_problem(config, WorkDir(finished_run / "work"), loaded) is None
    assert main(["check", str(finished_run / "tiny.toml"), "-w", str(finished_run / "work"), "--quiet"]) == 0
    assert "0 bytes of it for the 0 tracks not yet prepared" in capsys.readouterr().out
    work = tmp_path / "work"
    shutil.copytree(finished_run / "work" / "corpus", work / "corpus")  # the corpus is rendered; no track prepared
    assert main(["prepare", "-c", str(finished_run / "tiny.toml"), "-w", str(work), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert " MB more for 27 tracks not yet prepared but " in err and "has 2.0 KB free" in err, err
    assert err.count("\n") == 1 and not (work / "features").exists()
    assert space_problem(config, WorkDir(work), stage_tracks(config, WorkDir(work), progress=False).tracks)


def test_check_and_run_stop_at_a_split_that_cannot_be_scored(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Three artists per genre and val = test = 0.15: the artist-disjoint split leaves test empty; before any
    decoding (the audio files here are empty: decoding them would fail differently)."""
    rows = [{"path": f"{genre}{a}_{n}.wav", "artist": f"{genre}{a}", "genre": genre}
            for genre, count in (("rock", 3), ("jazz", 3), ("folk", 1)) for a in range(count) for n in range(2)]
    for row in rows:
        (tmp_path / row["path"]).touch()
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    config = tmp_path / "c.toml"
    config.write_text(f'[dataset]\nkind = "manifest"\nmanifest = "{tmp_path / "m.csv"}"\nval_fraction = 0.15\n'
                      "test_fraction = 0.15\n")
    assert main(["check", str(config), "-w", str(tmp_path / "w"), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "the test split has no track" in captured.err
    assert "warning: the val split has no track of 1 of 3 genres (folk)" in captured.out
    assert main(["run", str(config), "-w", str(tmp_path / "w"), "--quiet"]) == 1
    assert "the test split has no track" in capsys.readouterr().err
    assert not (tmp_path / "w" / "features").exists()


def test_device_is_a_flag_of_run_and_demo_and_fma_without_data_names_the_flag(tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture) -> None:
    from agf.cli import build_parser

    for argv in (["run", "demo", "--device", "cpu"], ["check", "demo", "--device", "cpu"],
                 ["demo", "--device", "cpu"], ["train", "--device", "cpu"]):
        assert build_parser().parse_args(argv).device == "cpu"
    argv = ["check", "fma-medium", "-w", str(tmp_path / "w"), "--fma-metadata", str(tmp_path), "--fma-audio",
            str(tmp_path), "--quiet"]
    assert main(argv) == 1
    assert "with --fma-metadata" in capsys.readouterr().err
