"""`agf study`: cells, paired gains, the statistics tables, a tiny study end to end and its resume."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tiny_config import TINY_TRAINING

from agf.cli import main
from agf.config import Config, StudyConfig, SynthConfig, load_config
from agf.datasets.noise import round_half_up
from agf.errors import ConfigError, PipelineError
from agf.statistics import MIN_PERMUTATION_UNITS, units_needed
from agf.study import (
    CLEAN,
    TARGET_GAINS,
    UNCALIBRATED_LOG_LOSS,
    Cell,
    _grid_config,
    cell_config,
    check_held_out_artists,
    corpus_config,
    comparisons,
    paired_gains,
    power_analysis,
    study_cells,
    with_uncalibrated_log_loss,
)

TINY = """
[dataset]
kind = "synth"
split = "artist"
val_fraction = 0.25
test_fraction = 0.25
[synth]
n_genres = 3
artists_per_genre = 8
albums_per_artist = 1
tracks_per_album = 2
clip_seconds = 3.0
label_noise = 0.0
confusable_pairs = 1
[grid]
seeds = [0, 1]
[study]
noise_rates = [0.0, 0.3]
noise_kinds = ["symmetric"]
corpus_seeds = [0]
models = ["genre", "stn", "stn-random-groups"]
min_artists = 2
""" + TINY_TRAINING


def _results(gain: float, corpora: int = 1) -> pd.DataFrame:
    """Scores of genre-only and 'stn' on 2 splits of each corpus x 2 seeds, clean and at noise 0.2 / 0.4 (symmetric
    and structured); 'stn' gains `gain` x rate in accuracy and loses nothing in log loss."""
    rows = []
    rng = np.random.default_rng(0)
    cells = [(CLEAN, 0.0)] + [(k, r) for k in ("symmetric", "structured") for r in (0.2, 0.4)]
    for corpus_seed, split_seed in itertools.product(range(corpora), (0, 1)):
        for kind, rate in cells:
            for seed in (0, 1):
                base = 0.7 - rate + rng.normal(0, 0.01)
                for model, accuracy in (("genre", base), ("stn", base + gain * rate)):
                    for split in ("val", "test"):
                        rows += [{"corpus_seed": corpus_seed, "split_seed": split_seed, "noise_kind": kind, "noise_rate": rate,
                                  "model": model, "seed": seed, "split": split, "labels": "true", "metric": metric,
                                  "value": value}
                                 for metric, value in (("accuracy", accuracy), ("log_loss", 1.0), ("macro_f1", 0.5))]
    return pd.DataFrame(rows)


def test_cells_share_the_clean_cell_and_follow_the_config() -> None:
    config = Config(study=StudyConfig(noise_rates=(0.0, 0.2), noise_kinds=("symmetric", "structured"),
                                      corpus_seeds=(3, 4), split_seeds=(0, 1)))
    cells = study_cells(config)
    assert cells[:3] == [Cell(3, 0, CLEAN, 0.0), Cell(3, 0, "symmetric", 0.2), Cell(3, 0, "structured", 0.2)]
    assert cells[3] == Cell(3, 1, CLEAN, 0.0) and cells[-1] == Cell(4, 1, "structured", 0.2) and len(cells) == 12
    assert len({cell.name for cell in cells}) == 12
    split = corpus_config(config, cells[3], Path("root"))
    assert (split.synth.seed, split.dataset.seed, split.run.workdir) == (3, 1, str(Path("root") / "corpus3"))
    with pytest.raises(ConfigError, match="must include 'genre'"):
        StudyConfig(models=("stn",))
    with pytest.raises(ConfigError, match="study.noise_rates: 1.0"):
        StudyConfig(noise_rates=(0.0, 1.0))


def test_structured_cells_flip_within_the_corpus_pairs_and_need_some() -> None:
    config = Config(synth=SynthConfig(n_genres=6, confusable_pairs=2))
    noisy = cell_config(config, Cell(0, 0, "structured", 0.3)).noise
    assert noisy.kind == "structured" and len(noisy.confusable) == 2 and noisy.subgenre_rate == 0.3
    assert cell_config(config, Cell(0, 0, CLEAN, 0.0)).noise.rate == 0
    with pytest.raises(PipelineError, match="confusable"):
        cell_config(Config(), Cell(0, 0, "structured", 0.3))


def test_the_grids_hold_the_baseline_the_models_and_the_controls() -> None:
    config = Config(study=StudyConfig(artist_tasks=("m",)))
    real = _grid_config(config, "none")
    assert real.grid.subsets == ("g", "gm") and set(real.grid.archs) == {"stn", "mtn", "wstn"}
    assert real.factors.control == "none" and real.factors.tasks == ("m",)
    for control in ("random-groups", "per-track"):
        grid = _grid_config(config, control)
        assert grid.grid.subsets == ("gm",) and set(grid.grid.archs) == {"stn", "mtn"}
        assert grid.factors.control == control
    only_genre = dataclasses.replace(config, study=StudyConfig(models=("genre", "wstn")))
    assert _grid_config(only_genre, "random-groups") is None and _grid_config(only_genre, "per-track") is None


def test_paired_gains_pair_runs_and_count_the_clean_cell_for_every_kind() -> None:
    gains = paired_gains(_results(0.5), "accuracy")
    assert set(gains["noise_kind"]) == {"symmetric", "structured"}
    assert len(gains) == 2 * 3 * 2 * 2  # kinds x rates (with the clean one) x splits x seeds
    expected = 0.5 * gains["noise_rate"]
    assert np.allclose(gains["gain"], expected)
    log_loss = _results(0.0)
    log_loss.loc[(log_loss["model"] == "stn") & (log_loss["metric"] == "log_loss"), "value"] = 0.9
    assert np.allclose(paired_gains(log_loss, "log_loss")["gain"], 0.1)  # lower log loss is a gain


def test_comparisons_find_a_gain_that_grows_with_noise_and_no_trend_without_one() -> None:
    table, trends = comparisons(_results(0.5, corpora=MIN_PERMUTATION_UNITS))
    accuracy = trends[trends["metric"] == "accuracy"].set_index("noise_kind")
    assert accuracy.loc["symmetric", "slope"] == pytest.approx(0.5)
    assert accuracy.loc["symmetric", "ci_low"] > 0.4 and accuracy.loc["symmetric", "p_permutation"] < 0.05
    assert accuracy.loc["symmetric", "units"] == MIN_PERMUTATION_UNITS and accuracy.loc["symmetric", "unit"] == "corpus"
    at_04 = table[(table["metric"] == "accuracy") & (table["noise_rate"] == 0.4)]
    assert list(at_04["mean_gain"]) == pytest.approx([0.2, 0.2])
    assert (at_04["units"] == MIN_PERMUTATION_UNITS).all() and (at_04["pairs"] == 4 * MIN_PERMUTATION_UNITS).all()
    assert (table["p_holm"] >= table["p_permutation"] - 1e-12).all()
    flat_trends = comparisons(_results(0.0))[1]
    assert (flat_trends.loc[flat_trends["metric"] == "accuracy", "slope"].abs() < 1e-9).all()


def test_with_few_corpora_the_unit_is_the_split_and_runs_are_never_units() -> None:
    """One corpus, 2 splits x 2 run seeds: 2 independent units, so no test can reach 5 % (the old code counted
    4 pairs per rate and reported p < 0.01)."""
    table, trends = comparisons(_results(0.5))
    assert set(table["unit"]) == set(trends["unit"]) == {"split"}
    assert (table["units"] == 2).all() and (table.loc[table["noise_rate"] > 0, "pairs"] == 4).all()
    assert (table["p_permutation"] >= 0.5).all() and (trends["p_permutation"] >= 0.5).all()


def test_power_comes_from_the_spread_of_the_gains_between_splits() -> None:
    """One corpus, 8 splits, one run seed: the gain's spread between splits sets the power and the splits needed."""
    rows = []
    gains = np.random.default_rng(5).normal(0.01, 0.03, size=8)
    for split_seed, gain in enumerate(gains):
        for kind, rate in ((CLEAN, 0.0), ("symmetric", 0.4)):
            for model, value in (("genre", 0.6), ("stn", 0.6 + (gain if rate else 0.0))):
                rows.append({"corpus_seed": 0, "split_seed": split_seed, "noise_kind": kind, "noise_rate": rate,
                             "model": model, "seed": 0, "split": "test", "labels": "true", "metric": "accuracy",
                             "value": value})
    per_comparison, pooled = power_analysis(pd.DataFrame(rows))
    found = per_comparison.set_index("noise_rate").loc[0.4]
    sd = gains.std(ddof=1)
    assert np.sqrt(found["var_split"]) == pytest.approx(sd) and np.isnan(found["var_seed"])
    assert found["units"] == 8 and found["unit"] == "split" and found["corpus_assumed"]
    assert found["splits_needed"] == units_needed(TARGET_GAINS["accuracy"], sd) > 8 > found["power"] * 10
    # A corpus unit averages its 8 splits but adds the corpus variance, assumed equal to the split variance
    # (one corpus measured): sd sqrt(1 + 1/8) x the split sd.
    assert found["corpora_needed"] == units_needed(TARGET_GAINS["accuracy"], sd * np.sqrt(1 + 1 / 8))
    assert found["corpora_needed"] >= max(MIN_PERMUTATION_UNITS, found["splits_needed"])
    # Pooled over the two comparisons (the clean cell's gain is 0 in every split: no spread), weighted by their
    # 7 degrees of freedom each: half the noisy cell's variance.
    accuracy = pooled.set_index("metric").loc["accuracy"]
    assert accuracy["comparisons"] == 2 and accuracy["var_split"] == pytest.approx(sd ** 2 / 2)
    assert accuracy["units"] == 8 and accuracy["splits_needed"] == units_needed(TARGET_GAINS["accuracy"], sd / np.sqrt(2))


def test_the_uncalibrated_log_loss_is_kept_beside_the_calibrated_one() -> None:
    calibrated = _results(0.0)
    uncalibrated = calibrated.assign(value=calibrated["value"] + 1.0)
    both = with_uncalibrated_log_loss(calibrated, uncalibrated)
    extra = both[both["metric"] == UNCALIBRATED_LOG_LOSS]
    assert len(extra) == (calibrated["metric"] == "log_loss").sum() and np.allclose(extra["value"], 2.0)
    assert both[both["metric"] != UNCALIBRATED_LOG_LOSS].equals(calibrated)


def test_new_the_study_s_gains_take_each_metric_s_direction_from_the_registry() -> None:
    """Every metric of the registry, and the uncalibrated log loss (log loss's entry), is compared; a model that
    scores 0.1 above genre-only gains 0.1 where the registry says higher is better and loses 0.1 where lower is."""
    from agf.metrics import METRIC_REGISTRY

    metrics = {**{name: metric.higher_is_better for name, metric in METRIC_REGISTRY.items()},
               UNCALIBRATED_LOG_LOSS: METRIC_REGISTRY["log_loss"].higher_is_better}
    rows = [{"corpus_seed": 0, "split_seed": split_seed, "noise_kind": kind, "noise_rate": rate, "model": model,
             "seed": 0, "split": "test", "labels": "true", "metric": metric, "value": value}
            for metric in metrics for split_seed in (0, 1) for kind, rate in ((CLEAN, 0.0), ("symmetric", 0.3))
            for model, value in (("genre", 0.5), ("stn", 0.6))]
    results = pd.DataFrame(rows)
    for metric, higher_is_better in metrics.items():
        assert np.allclose(paired_gains(results, metric)["gain"], 0.1 if higher_is_better else -0.1), metric
    table, trends = comparisons(results)
    assert set(table["metric"]) == set(trends["metric"]) == set(metrics)
    assert np.allclose(table.set_index("metric")["mean_gain"].groupby("metric").first()[list(metrics)],
                       [0.1 if higher else -0.1 for higher in metrics.values()])


def test_held_out_splits_need_enough_artists_per_genre() -> None:
    tracks = pd.DataFrame({"artist_id": ["a", "b", "c", "d"], "genre": ["Rock"] * 4,
                           "split": ["val", "val", "test", "train"]})
    check_held_out_artists(tracks, 1)
    with pytest.raises(PipelineError, match="test split has fewer than study.min_artists = 2"):
        check_held_out_artists(tracks, 2)


@pytest.mark.slow
def test_a_tiny_study_runs_end_to_end_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    work = tmp_path / "work"
    assert main(["study", str(config), "-w", str(work), "-q"]) == 0
    out = capsys.readouterr().out
    assert "symmetric" in out and "report:" in out
    study = work / "study"
    for name in ("results.csv", "noise.csv", "comparisons.csv", "trends.csv", "power.csv", "power-pooled.csv",
                 "gain.png", "report.html", "report.md"):
        assert (study / name).stat().st_size > 0, name
    noise = pd.read_csv(study / "noise.csv")  # the noisy cell's realised rate per genre and split
    assert set(noise["noise_rate"]) == {0.3} and set(noise["split"]) == {"train", "val", "test"}
    assert noise["flipped"].sum() == round_half_up(0.3 * noise["albums"].sum())  # symmetric: every album eligible
    report = (study / "report.md").read_text()
    assert "Realised label noise" in report and "no temperature" in report and "Power" in report
    results = pd.read_csv(study / "results.csv")
    assert (results["metric"] == UNCALIBRATED_LOG_LOSS).any()  # beside the calibrated log loss, per model
    assert set(results["model"]) == {"genre", "stn", "stn-random-groups"}
    assert set(results["noise_kind"]) == {CLEAN, "symmetric"} and set(results["seed"]) == {0, 1}
    table = pd.read_csv(study / "comparisons.csv")
    assert set(table["model"]) == {"stn", "stn-random-groups"} and (table["units"] == 1).all()
    assert (table["pairs"] == 2).all() and set(table["unit"]) == {"split"}  # 2 run seeds of one split: one unit
    tracks = pd.read_parquet(work / "corpus0" / "tracks.parquet")
    assert tracks["genre_flipped"].any()  # the last cell's labels are noisy, the truth kept
    assert (tracks["true_genre"] == tracks["clean_genre"]).all()
    # Genre nets are shared by the real and the control grid; nets of artist groups (no label in their targets)
    # by the noise cells too: per seed one STN g per cell, one STN m and one STN m of random groups.
    assert len(list((work / "corpus0" / "nets").iterdir())) == 2 * (2 + 2)

    killed = next(p for p in (study / "cells").glob("corpus0-split0-symmetric-*.csv") if ".noise" not in p.suffixes)
    killed.unlink()
    assert main(["study", str(config), "-w", str(work), "-q"]) == 0
    assert (study / "cells" / killed.name).exists()
    assert len(list((work / "corpus0" / "nets").iterdir())) == 2 * (2 + 2)  # the rerun trained nothing new
    assert pd.read_csv(study / "results.csv").equals(results)


def test_study_presets_load() -> None:
    for preset in ("study-quick", "study", "study-powered"):
        config = load_config(preset)
        assert config.dataset.kind == "synth" and config.synth.confusable_pairs > 0
        assert "genre" in config.study.models


def test_the_powered_preset_has_the_splits_the_measured_spread_asks_for() -> None:
    """study-powered's split count is what the quick profile's measured variance gives (docs/data/study-quick)."""
    pooled = pd.read_csv(Path(__file__).resolve().parents[1] / "docs" / "data" / "study-quick" / "power-pooled.csv")
    accuracy = pooled.set_index("metric").loc["accuracy"]
    needed = units_needed(TARGET_GAINS["accuracy"], float(np.sqrt(accuracy["var_split"])))
    assert needed == accuracy["splits_needed"] == len(load_config("study-powered").study.split_seeds)
