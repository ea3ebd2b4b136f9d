"""The model a run ends with (agf.selection): its candidates read from the transfers of a run, chosen on the
validation split or on cross-validation's out-of-fold predictions, scored on test; WORKDIR/selection/ keeps
selection.json (the choice, its scores, the cross-validated estimate) and ranking.csv (every candidate)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from agf.calibration import fit_temperature
from agf.config import Config
from agf.datasets.table import TEST, VAL, genre_list, split_mask
from agf.errors import PipelineError
from agf.evaluation import CLASSICAL
from agf.fileio import read_json, write_json_atomic, write_text_atomic
from agf.grid import Case
from agf.metrics import METRICS, accuracy, log_loss, score_against
from agf.pipeline.crossval import FinalFit, Folds, run_final, run_folds
from agf.pipeline.grid_run import GridRun, collect_results, run_grid
from agf.pipeline.stages import Log, Prepared, open_prepared
from agf.pipeline.times import StageTimes
from agf.selection import (
    Choice,
    apply_choice,
    blend,
    blend_name,
    choose,
    class_indices,
    crossval_cost,
    fold_scores,
    selection_mode,
)
from agf.tasks import GENRE_TASK
from agf.transfer import load_transfer
from agf.workdir import WorkDir

SELECTION_FILE = "selection.json"


@dataclass(frozen=True)
class Member:
    """One run seed of a candidate: its track probabilities and what computes them (for the bundle): the transfer
    directory, the output ('transfer', 'head' or 'blend') and, for a head or blend, the position of the net among
    the transfer's sources whose genre head it is."""

    seed: int
    probs: pd.DataFrame
    transfer_dir: Path
    output: str
    head: int | None = None


@dataclass(frozen=True)
class Candidates:
    """Every candidate model by name: its kind and its members (one per seed, in seed order)."""

    kinds: dict[str, str]
    members: dict[str, list[Member]]

    def add(self, name: str, kind: str, member: Member) -> None:
        """Add a seed's member (a genre head shared by several transfers of one seed, once)."""
        self.kinds.setdefault(name, kind)
        members = self.members.setdefault(name, [])
        if all(m.seed != member.seed for m in members):
            members.append(member)

    def frames(self, ids: pd.Index | None = None) -> dict[str, list[pd.DataFrame]]:
        """Each candidate's members' probabilities (of the tracks `ids`, when given)."""
        return {name: [m.probs if ids is None else m.probs.loc[ids] for m in members]
                for name, members in self.members.items()}


def _probs(predictions: pd.DataFrame, genres: Sequence[str], ids: pd.Index | None) -> pd.DataFrame:
    """A predictions table (track_id, split, genre columns) as probabilities indexed by track_id, of the tracks
    `ids` only when given."""
    probs = predictions.set_index(predictions["track_id"].astype(str))[list(genres)]
    return probs if ids is None else probs.loc[ids]


def candidates_of(transfers: Mapping[Case, Path], genres: Sequence[str], ids: pd.Index | None = None,
                  only: str | None = None) -> Candidates:
    """The candidates of a run's transfers: each transfer, each source net's genre head, each transfer blended
    with its sources' (first) genre head; their probabilities of the tracks `ids` only when given (a run's
    candidates over every track of FMA large would hold gigabytes), and only the candidate named `only` when
    given."""
    found = Candidates({}, {})

    def add(name: str, kind: str, member: Member) -> None:
        if only is None or name == only:
            found.add(name, kind, member)

    for case, directory in transfers.items():
        result = load_transfer(directory)
        sources = [Path(source["path"]).name for source in read_json(Path(directory) / "mlp.json")["sources"]]
        probs = _probs(result.predictions, genres, ids)
        add(result.name, "transfer", Member(case.seed, probs, Path(directory), "transfer"))
        for number, baseline in enumerate(result.baselines):
            head = sources.index(Path(baseline.source).name)
            head_probs = _probs(pd.read_parquet(Path(directory) / baseline.file), genres, ids)
            add(baseline.name, baseline.kind, Member(case.seed, head_probs, Path(directory), "head", head))
            if number == 0:
                add(blend_name(result.name), "blend",
                    Member(case.seed, blend(probs, head_probs), Path(directory), "blend", head))
    return found


def out_of_fold(folds: Folds, genres: Sequence[str]) -> Candidates:
    """Each candidate's out-of-fold probabilities, one member per seed a fold trains (member i: every fold's i-th
    seed on its held-out tracks, together), and the classical baseline's."""
    kinds: dict[str, str] = {}
    parts: dict[str, list[list[Member]]] = {}
    for run, table in zip(folds.runs, folds.tables):
        held = pd.Index(table.loc[split_mask(table, VAL), "track_id"].astype(str))
        fold = candidates_of(run.transfers, genres, held)
        kinds |= fold.kinds
        for name, members in fold.members.items():
            for i, member in enumerate(members):
                parts.setdefault(name, [[] for _ in members])[i].append(member)
    pooled = Candidates(kinds, {name: [replace(seeds[0], probs=pd.concat([m.probs for m in seeds]))
                                       for seeds in by_seed] for name, by_seed in parts.items()})
    pooled.add(CLASSICAL, "classical", Member(-1, folds.classical[list(genres)], Path(), "classical"))
    return pooled


def out_of_fold_temperatures(pooled: Candidates, tracks: pd.DataFrame, genres: Sequence[str],
                             calibrate: bool) -> dict[str, float]:
    """Each candidate's temperature as one seed's model (the evaluation's), fitted on its out-of-fold probabilities,
    every seed's together (1 each without `calibrate`)."""
    labels = tracks.set_index(tracks["track_id"].astype(str))["genre"]
    found = {}
    for name, members in pooled.members.items():
        probs = pd.concat([member.probs for member in members])
        truth = class_indices(labels.loc[probs.index], genres)
        found[name] = fit_temperature(probs.to_numpy(), truth) if calibrate else 1.0
    return found


def selection_labels(tracks: pd.DataFrame, ids: pd.Index) -> pd.Series:
    """The given genres of the tracks `ids` (index track_id)."""
    return tracks.set_index(tracks["track_id"].astype(str))["genre"].loc[ids]


@dataclass(frozen=True)
class Selection:
    """The chosen model: the choice, its members (one per seed, from the run fitted on train, or on train +
    validation after cross-validation; their probabilities of the test tracks), and what selection.json records."""

    choice: Choice
    members: list[Member]
    record: dict


def _scores(tracks: pd.DataFrame, probs: pd.DataFrame, genres: Sequence[str]) -> dict:
    """{labels: {metric: value}} of track probabilities."""
    return {labels: {metric: float(found[metric]) for metric in METRICS}
            for labels, found in score_against(tracks, probs, genres).items()}


def _test_ids(tracks: pd.DataFrame) -> pd.Index:
    """The test split's track ids."""
    return pd.Index(tracks.loc[split_mask(tracks, TEST), "track_id"].astype(str))


def _test_scores(tracks: pd.DataFrame, members: Sequence[Member], choice: Choice, genres: Sequence[str]) -> dict | None:
    """The chosen ensemble's scores on test (None without test tracks)."""
    test = _test_ids(tracks)
    if test.empty:
        return None
    probs = apply_choice([m.probs.loc[test] for m in members], choice.combination, choice.temperature)
    return _scores(tracks, probs, genres)


def _choice_record(choice: Choice, members: Sequence[Member], mode: str, reason: str, leads: list[dict],
                   tracks: pd.DataFrame) -> dict:
    """The part of selection.json every mode writes (`leads`: margins; `tracks`: the table, for the test split's
    size)."""
    test = tracks[split_mask(tracks, TEST)]
    return {"mode": mode, "reason": reason,
            "test_split": {"n_tracks": len(test), "n_artists": int(test["artist_id"].nunique())},
            "chosen": {"name": choice.name, "kind": choice.kind, "combination": choice.combination,
                       "temperature": choice.temperature, "seeds": [m.seed for m in members]},
            "ranking": choice.ranking.to_dict("records"), "margins": leads}


def select_on_validation(config: Config, prepared: Prepared, run: GridRun, reason: str) -> Selection:
    """The model chosen on the validation split among the run's candidates, each the ensemble of its seeds."""
    tracks, genres = prepared.tracks, genre_list(prepared.tracks)
    val = pd.Index(tracks.loc[split_mask(tracks, VAL), "track_id"].astype(str))
    if val.empty:
        raise PipelineError("no validation tracks to choose the model on: give the dataset a validation split "
                            "(dataset.val_fraction > 0), or set select.mode = 'crossval'")
    labels = selection_labels(tracks, val)
    candidates = candidates_of(run.transfers, genres, val)
    choice = choose(candidates.frames(), candidates.kinds, labels, genres, config.transfer.calibrate)
    members = candidates_of(run.transfers, genres, _test_ids(tracks), choice.name).members[choice.name]
    leads = margins(choice, candidates.frames(), labels, genres)
    record = _choice_record(choice, members, "validation", reason, leads, tracks) | {
        "selection": {"split": VAL, "n_tracks": len(val),
                      "n_artists": int(tracks.loc[split_mask(tracks, VAL), "artist_id"].nunique())},
        "test": _test_scores(tracks, members, choice, genres),
    }
    return Selection(choice, members, record)


def select_by_crossval(config: Config, prepared: Prepared, folds: Folds, pooled: Candidates, final: FinalFit,
                       reason: str) -> Selection:
    """The model chosen on the out-of-fold predictions (their temperatures fitted there), its members from the
    final fit, with the cross-validated estimate (per fold, mean and spread) beside its test scores."""
    tracks, genres = prepared.tracks, genre_list(prepared.tracks)
    labelled = folds.of_track.index
    eligible = {name: frames for name, frames in pooled.frames(labelled).items() if name != CLASSICAL}
    labels = selection_labels(tracks, labelled)
    choice = choose(eligible, pooled.kinds, labels, genres, config.transfer.calibrate)
    members = candidates_of(final.run.transfers, genres, _test_ids(tracks), choice.name).members[choice.name]
    oof = apply_choice(pooled.frames(labelled)[choice.name], choice.combination, choice.temperature)
    per_fold = fold_scores(oof, tracks, folds.of_track, genres)
    given = per_fold[per_fold["labels"] == "given"]
    estimate = {labels: {metric: {"mean": float(rows[metric].mean()), "std": float(rows[metric].std(ddof=1))}
                         for metric in METRICS}
                for labels, rows in per_fold.groupby("labels")}
    leads = margins(choice, eligible, labels, genres, folds.of_track)
    record = _choice_record(choice, members, "crossval", reason, leads, tracks) | {
        "selection": {"split": "out-of-fold", "n_tracks": len(labelled),
                      "n_artists": int(tracks.set_index(tracks["track_id"].astype(str)).loc[labelled, "artist_id"]
                                       .nunique())},
        "test": _test_scores(tracks, members, choice, genres),
        "crossval": {"folds": config.select.folds, "per_fold": per_fold.to_dict("records"), "estimate": estimate,
                     "artists_per_fold": [int(n) for n in given["n_artists"]],
                     "net_epochs": list(final.net_epochs),
                     "transfers": {" ".join(map(str, setup)): {"epochs": t.epochs, "aggregation": t.aggregations[0]}
                                   for setup, t in final.transfers.items()}},
    }
    return Selection(choice, members, record)


def _unit_scores(probs: pd.DataFrame, labels: pd.Series, genres: Sequence[str]) -> np.ndarray:
    """Accuracy and log loss of probabilities over the tracks of `labels`."""
    truth, matrix = class_indices(labels, genres), probs.loc[labels.index, list(genres)].to_numpy()
    return np.array([accuracy(truth, matrix.argmax(axis=1)), log_loss(truth, matrix)])


def margins(choice: Choice, frames: Mapping[str, Sequence[pd.DataFrame]], labels: pd.Series, genres: Sequence[str],
            folds: pd.Series | None = None) -> list[dict]:
    """How much the chosen model led the best candidate of each other kind on the selection tracks (accuracy and
    log loss, each as it was ranked), with the spread of that lead: its standard deviation over the folds (`folds`:
    track_id -> fold), or without folds over the run seeds (each seed's model alone against the other's)."""
    best = choice.ranking.iloc[0]
    rows = []
    for kind, group in choice.ranking.groupby("kind", sort=False):
        if kind == best["kind"]:
            continue
        other = group.iloc[0]
        if folds is not None:
            chosen, rival = (apply_choice(frames[row["name"]], row["combination"], row["temperature"])
                             for row in (best, other))
            units = [labels.loc[ids] for ids in folds.groupby(folds).groups.values()]
            leads = [_unit_scores(chosen, unit, genres) - _unit_scores(rival, unit, genres) for unit in units]
        else:
            leads = [_unit_scores(apply_choice([mine], "probs", best["temperature"]), labels, genres)
                     - _unit_scores(apply_choice([theirs], "probs", other["temperature"]), labels, genres)
                     for mine, theirs in zip(frames[best["name"]], frames[other["name"]])]
        spread = np.std(leads, axis=0, ddof=1) if len(leads) > 1 else np.full(2, np.nan)
        rows.append({"kind": kind, "name": other["name"], "units": "folds" if folds is not None else "seeds",
                     "n_units": len(leads),
                     **{f"{metric} difference": float(best[metric] - other[metric]) for metric in
                        ("accuracy", "log_loss")},
                     **{f"{metric} difference std": float(value) for metric, value in
                        zip(("accuracy", "log_loss"), spread)}})
    return rows


def write_selection(workdir: WorkDir, selection: Selection) -> Path:
    """WORKDIR/selection/selection.json and ranking.csv; return the folder."""
    out_dir = workdir.root / "selection"
    write_json_atomic(out_dir / SELECTION_FILE, _plain(selection.record))
    write_text_atomic(out_dir / "ranking.csv", selection.choice.ranking.to_csv(index=False))
    return out_dir


def _plain(value):
    """JSON-ready: NumPy scalars as Python numbers, NaN as None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def out_of_fold_rows(pooled: Candidates, final: FinalFit, tracks: pd.DataFrame,
                     temperatures: Mapping[str, float], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Results and baselines rows (split 'val', seed `seed`) of the out-of-fold predictions, temperature-scaled:
    what the report's tables and selection read as the validation split after cross-validation."""
    genres = genre_list(tracks)
    names = {load_transfer(path).name: case for case, path in final.run.transfers.items() if case.seed == seed}
    rows, baseline_rows = [], []
    for name, (member, *_) in pooled.members.items():
        if pooled.kinds[name] == "blend":
            continue
        probs = apply_choice([member.probs], "probs", temperatures.get(name, 1.0))
        for labels, scores in _scores(tracks, probs, genres).items():
            for metric, value in scores.items():
                common = {"seed": seed, "split": VAL, "labels": labels, "metric": metric, "value": value}
                case = names.get(name)
                if case is not None:
                    rows.append({"tasks": case.tasks, "arch": case.arch, "n_tasks": case.n_tasks,
                                 "includes_genre": GENRE_TASK in case.tasks, **common})
                elif pooled.kinds[name] != "transfer":
                    baseline_rows.append({"model": name, **common})
    return pd.DataFrame(rows), pd.DataFrame(baseline_rows)


@dataclass(frozen=True)
class Chosen:
    """A run and the model it ends with: the grid the report and export read (after cross-validation, the final
    fit's), its results and baselines tables (after cross-validation, the validation rows are the out-of-fold
    ones), the selection, and where it was written."""

    grid: GridRun
    results: pd.DataFrame
    baselines: pd.DataFrame
    selection: Selection


def run_and_choose(config: Config, prepared: Prepared, progress: bool, log: Log, must_be_done: bool,
                   times: StageTimes) -> Chosen:
    """The grid (on the validation protocol, or cross-validated with a final fit: selection_mode) and the model
    chosen on it, written to WORKDIR/selection/ (unless must_be_done: `agf report` and `agf export` read)."""
    mode, reason = selection_mode(config, prepared.tracks)
    if mode == "validation":
        grid = run_grid(config, prepared, progress=progress, log=log, must_be_done=must_be_done, times=times)
        results, baselines = collect_results(grid)
        selection = select_on_validation(config, prepared, grid, reason)
    else:
        log(f"model selection: {config.select.folds}-fold cross-validation by artist over train + validation "
            f"({reason}); about {crossval_cost(config, prepared.tracks):.1f}x the training of choosing on validation")
        genres = genre_list(prepared.tracks)
        folds = run_folds(config, prepared, progress, log, must_be_done, times)
        pooled = out_of_fold(folds, genres)
        temperatures = out_of_fold_temperatures(pooled, prepared.tracks, genres, config.transfer.calibrate)
        final = run_final(config, prepared, folds, temperatures, progress, log, must_be_done, times)
        grid = final.run
        results, baselines = collect_results(grid)
        oof_results, oof_baselines = out_of_fold_rows(pooled, final, prepared.tracks, temperatures,
                                                      config.grid.seeds[0])
        results = pd.concat([results, oof_results], ignore_index=True)
        baselines = pd.concat([baselines, oof_baselines], ignore_index=True)
        selection = select_by_crossval(config, prepared, folds, pooled, final, reason)
    if not must_be_done:
        write_selection(prepared.workdir, selection)
    return Chosen(grid, results, baselines, selection)


def open_chosen(config: Config) -> tuple[Prepared, Chosen]:
    """A finished run's prepared tracks and chosen model (nothing is computed; unfinished stages are errors)."""
    prepared = open_prepared(config)
    return prepared, run_and_choose(config, prepared, False, lambda _: None, True, StageTimes())
