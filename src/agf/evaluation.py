"""The evaluation run: every model on every split, against the given and (when known) the true genres.

Models: each transfer MLP, each source net's own genre head (the 'genre STN softmax' of a genre STN, the
'MTN genre head' of an MTN with task g), and the classical baseline (logistic regression on per-track MFCC
mean/std, fitted on the training tracks). On each split every model is scored on the same tracks: those
all models have a prediction for.

Calibration (agf.calibration): each model's track probabilities are temperature-scaled, the temperature fitted
on the validation tracks' given labels only; every split is scored with the calibrated probabilities, and
metrics.json keeps the temperature and the uncalibrated scores beside them. Without validation tracks the
temperature is 1 (nothing is calibrated); likewise for a transfer made with `transfer.calibrate = false` and its
genre-head baselines (the paper's raw probabilities), and for the classical baseline when every transfer
evaluated beside it is so.

out_dir receives
    metrics.json                    genres, splits (track counts), per model: whether it is calibrated
                                    ('calibrated'), its temperature, and per split the scores vs given/true
                                    labels, calibrated ('scores') and not ('uncalibrated')
    reliability/<model>.png         reliability diagram on the primary split (given labels), before and after
    confusion/<model>.png           confusion matrix on the primary split (the last of `splits` with tracks)
    confusion/<model>.true.png      the same against the true genres, when the table has them
    per_genre_f1.csv / .png         per-genre F1 of every model on the primary split (given labels)
    table.md                        the printed table
    done.json                       the completion marker (agf.workdir): the key of the transfers, tracks,
                                    store and seed scored, written last
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from agf.calibration import apply_temperature, fit_temperature, reliability
from agf.datasets.table import HELD_OUT_SPLITS, TRAIN, VAL, genre_list, split_mask, tracks_fingerprint
from agf.errors import EvaluationError, TransferError
from agf.fileio import (
    read_json,
    safe_name,
    stable_key,
    write_json_atomic,
    write_text_atomic,
)
from agf.metrics import METRICS, check_labels, confusion, format_table, score_against
from agf.plotting import png_figure
from agf.store import FeatureStore
from agf.transfer import load_transfer
from agf.workdir import clear_done, is_done, mark_done, read_marker

CLASSICAL = "classical: logreg on MFCC stats"
# Part of the evaluation key: finished evaluations of an earlier format are scored again.
EVALUATION_FORMAT = "agf-evaluation/2"
CALIBRATION_SPLIT = VAL


@dataclass(frozen=True)
class Model:
    """One model's track probabilities: index track_id, one column per genre in class order."""

    name: str
    kind: str  # 'transfer', 'genre STN softmax', 'MTN genre head' or 'classical'
    source: str
    probs: pd.DataFrame
    calibrate: bool = True  # temperature-scaled on validation before scoring; False: temperature 1


@dataclass(frozen=True)
class EvaluationRun:
    """What `evaluate` wrote: the metrics dict and the printable table."""

    metrics: dict
    table: str


def _probability_frame(predictions: pd.DataFrame, genres: Sequence[str]) -> pd.DataFrame:
    """A predictions table (track_id, split, genre columns) as probabilities indexed by track_id."""
    return predictions.set_index(predictions["track_id"].astype(str))[list(genres)]


def _add_model(models: dict[str, Model], model: Model) -> None:
    """Add a model under its name; a baseline shared by several transfers (same source net) is added once."""
    known = models.setdefault(model.name, model)
    if Path(known.source).name != Path(model.source).name:
        raise EvaluationError(
            f"two models are named {model.name!r} ({known.source} and {model.source}); evaluate the transfers "
            "of one seed at a time"
        )


def transfer_models(transfer_dirs: Sequence[str | Path], genres: Sequence[str]) -> list[Model]:
    """The MLP and the genre-head baselines of each transfer directory (a baseline shared by several, once)."""
    models: dict[str, Model] = {}
    for directory in map(Path, transfer_dirs):
        result = load_transfer(directory)
        if result.genres != tuple(genres):
            raise TransferError(
                f"{directory}: trained on genres {', '.join(result.genres)}, but the track table has "
                f"{', '.join(genres)}; evaluate with the track table it was trained on"
            )
        predictions = _probability_frame(result.predictions, genres)
        _add_model(models, Model(result.name, "transfer", str(directory), predictions, result.calibrate))
        for baseline in result.baselines:
            table = pd.read_parquet(directory / baseline.file)
            _add_model(models, Model(baseline.name, baseline.kind, baseline.source, _probability_frame(table, genres),
                                     result.calibrate))
    return list(models.values())


def classical_model(
    store: FeatureStore, tracks: pd.DataFrame, genres: Sequence[str], splits: Sequence[str], seed: int = 0
) -> Model:
    """Logistic regression on per-track MFCC mean/std: fitted on training tracks, predicting `splits`' tracks."""
    train = tracks[split_mask(tracks, TRAIN)]
    scored = tracks[split_mask(tracks, *splits)]
    if train.empty or scored.empty:
        raise TransferError(f"{store.root}: no usable training or evaluation tracks for the classical baseline")
    index_of = {genre: i for i, genre in enumerate(genres)}
    train_X = np.stack([mfcc_stats(store.mfcc(t)) for t in train["track_id"]])
    eval_X = np.stack([mfcc_stats(store.mfcc(t)) for t in scored["track_id"]])
    probs = classical_baseline(train_X, train["genre"].map(index_of).to_numpy(), eval_X, len(genres), seed)
    frame = pd.DataFrame(probs, index=pd.Index(scored["track_id"], name="track_id"), columns=list(genres))
    return Model(CLASSICAL, "classical", str(store.root), frame)


def mfcc_stats(mfcc_frames: np.ndarray) -> np.ndarray:
    """Per-track summary (2n,): the mean of each of the n coefficients over frames, then their std."""
    frames = np.asarray(mfcc_frames, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[0] == 0:
        raise EvaluationError(f"mfcc_stats: expected (frames, coefficients) with frames >= 1, got {frames.shape}")
    return np.concatenate([frames.mean(axis=0), frames.std(axis=0)])


def classical_baseline(
    train_X: np.ndarray,
    train_y: np.ndarray,
    eval_X: np.ndarray,
    n_classes: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The FMA-paper-style baseline: StandardScaler + logistic regression; returns (n_eval, K) probabilities.

    K is `n_classes` (default: highest training label + 1); a class missing from train_y gets probability 0.
    """
    n_classes = int(np.max(train_y, initial=-1)) + 1 if n_classes is None else n_classes
    labels = check_labels(train_y, n_classes, "train_y")
    if np.unique(labels).size < 2:
        raise EvaluationError("classical_baseline: train_y holds a single class; it needs at least two genres")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    model.fit(np.asarray(train_X, dtype=np.float64), labels)
    class_probs = model.predict_proba(np.asarray(eval_X, dtype=np.float64))
    probs = np.zeros((class_probs.shape[0], n_classes))
    probs[:, model.classes_] = class_probs
    return probs


def plot_confusion(matrix: np.ndarray, genres: Sequence[str], path: str | Path, title: str) -> None:
    """Write a confusion-matrix PNG: colours are row-normalised (recall per true genre), cells show counts."""
    counts = np.asarray(matrix)
    n_classes = len(genres)
    if counts.shape != (n_classes, n_classes):
        raise EvaluationError(f"plot_confusion: matrix shape {counts.shape} does not match {n_classes} genres")
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)
    size = 2.5 + 0.5 * n_classes
    with png_figure(path, (size + 1.5, size), layout="constrained") as figure:
        axes = figure.add_subplot()
        image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        figure.colorbar(image, ax=axes, label="share of the true genre's tracks")
        ticks = np.arange(n_classes)
        axes.set_xticks(ticks, labels=list(genres), rotation=45, ha="right", rotation_mode="anchor")
        axes.set_yticks(ticks, labels=list(genres))
        axes.set_xlabel("predicted genre")
        axes.set_ylabel("true genre")
        axes.set_title(title)
        for row, col in np.ndindex(counts.shape):
            colour = "white" if shares[row, col] > 0.5 else "black"
            axes.text(col, row, str(int(counts[row, col])), ha="center", va="center", color=colour, fontsize=8)


def _labels(tracks: pd.DataFrame, ids: pd.Index, column: str, genres: Sequence[str]) -> np.ndarray:
    """Class indices of a label column for the given track ids."""
    return tracks.set_index("track_id").loc[ids, column].map({g: i for i, g in enumerate(genres)}).to_numpy()


def calibrated(
    model: Model, tracks: pd.DataFrame, genres: Sequence[str], val_ids: pd.Index | None,
    temperature: float | None = None,
) -> tuple[Model, float]:
    """The model with its probabilities temperature-scaled by `temperature` when given, else by the temperature
    fitted on `val_ids`' given labels (none, or a model not to calibrate: the model unchanged, temperature 1); and
    that temperature."""
    if not model.calibrate or (val_ids is None and temperature is None):
        return model, 1.0
    if temperature is None:
        temperature = fit_temperature(model.probs.loc[val_ids].to_numpy(), _labels(tracks, val_ids, "genre", genres))
    probs = pd.DataFrame(apply_temperature(model.probs.to_numpy(), temperature), index=model.probs.index,
                         columns=model.probs.columns)
    return replace(model, probs=probs), temperature


def plot_reliability(before: np.ndarray, after: np.ndarray, labels: np.ndarray, path: Path, title: str) -> None:
    """Reliability diagram: accuracy against mean confidence per confidence bin, before and after calibration."""
    with png_figure(path, (4.8, 4.6), layout="constrained") as figure:
        axes = figure.add_subplot()
        axes.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle="--", label="perfectly calibrated")
        for probs, name in ((before, "uncalibrated"), (after, "temperature-scaled")):
            table = reliability(probs, labels)
            filled = table.counts > 0
            axes.plot(table.confidence[filled], table.accuracy[filled], marker="o",
                      label=f"{name} (ECE {table.ece:.3f})")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_xlabel("confidence (top probability)")
        axes.set_ylabel("accuracy")
        axes.set_title(title, fontsize=9)
        axes.legend(fontsize=7, loc="upper left")


def plot_per_genre_f1(f1: pd.DataFrame, path: Path, title: str) -> None:
    """Grouped horizontal bars: one group per genre (rows of `f1`), one bar per model (columns)."""
    n_genres, n_models = f1.shape
    with png_figure(path, (8, 2 + 0.12 * n_genres * n_models + 0.15 * n_models), layout="constrained") as figure:
        axes = figure.add_subplot()
        height = 0.8 / n_models
        positions = np.arange(n_genres)
        for i, model in enumerate(f1.columns):
            axes.barh(positions + i * height, f1[model].to_numpy(), height=height, label=model)
        axes.set_yticks(positions + 0.4 - height / 2, labels=list(f1.index))
        axes.invert_yaxis()
        axes.set_xlim(0, 1)
        axes.set_xlabel("F1")
        axes.set_title(title)
        figure.legend(loc="outside lower center", fontsize=7)


def _write_plots(
    models: list[Model],
    uncalibrated: list[Model],
    tracks: pd.DataFrame,
    genres: Sequence[str],
    split: str,
    ids: pd.Index,
    scores: dict[str, dict],
    out_dir: Path,
) -> None:
    """Confusion matrices (given and true labels), reliability diagrams and the per-genre F1 chart of the primary
    split."""
    label_columns = {"given": "genre"}
    if "true_genre" in tracks.columns:
        label_columns["true"] = "true_genre"
    given = _labels(tracks, ids, "genre", genres)
    for model, raw in zip(models, uncalibrated):
        plot_reliability(raw.probs.loc[ids].to_numpy(), model.probs.loc[ids].to_numpy(), given,
                         out_dir / "reliability" / f"{safe_name(model.name)}.png", f"{model.name}\n{split}, given labels")
    for model in models:
        predicted = model.probs.loc[ids].to_numpy().argmax(axis=1)
        for labels, column in label_columns.items():
            matrix = confusion(_labels(tracks, ids, column, genres), predicted, len(genres))
            suffix = "" if labels == "given" else f".{labels}"
            title = f"{model.name}\n{split}, {labels} labels"
            plot_confusion(matrix, genres, out_dir / "confusion" / f"{safe_name(model.name)}{suffix}.png", title)
    present = [row["support"] > 0 for row in scores[models[0].name][split]["given"]["per_class"]]
    f1 = pd.DataFrame(
        {m.name: [row["f1"] for row in scores[m.name][split]["given"]["per_class"]] for m in models},
        index=pd.Index(list(genres), name="genre"),
    )[present]  # a genre with no track in the split has no F1
    write_text_atomic(out_dir / "per_genre_f1.csv", f1.to_csv())
    plot_per_genre_f1(f1, out_dir / "per_genre_f1.png", f"per-genre F1, {split}, given labels")


def evaluation_key(
    transfer_dirs: Sequence[str | Path], tracks: pd.DataFrame, store: FeatureStore | None, splits: Sequence[str],
    seed: int, temperatures: Mapping[str, float] | None = None,
) -> str:
    """What an evaluation scores: the finished transfers (their markers' keys), the tracks, the store, splits, seed
    and the temperatures given (none: fitted on validation)."""
    transfers = []
    for directory in map(Path, transfer_dirs):
        marker = read_marker(directory)
        if marker is None:
            raise TransferError(f"{directory}: no finished transfer here; run `agf transfer` first")
        transfers.append(marker["key"])
    store_key = store.root.name if store is not None else None
    given = [] if temperatures is None else sorted(temperatures.items())
    return stable_key(EVALUATION_FORMAT, transfers, tracks_fingerprint(tracks), store_key, list(splits), seed,
                      *([given] if given else []))


def evaluate(
    transfer_dirs: Sequence[str | Path],
    tracks: pd.DataFrame,
    out_dir: str | Path,
    store: FeatureStore | None = None,
    splits: Sequence[str] = HELD_OUT_SPLITS,
    seed: int = 0,
    temperatures: Mapping[str, float] | None = None,
) -> EvaluationRun:
    """Score every model (see the module doc; the classical baseline, seeded by `seed`, needs `store`) on the
    usable tracks `tracks`, and write the outputs; a finished evaluation of the same inputs is read back. A model
    named in `temperatures` is scaled by that temperature (fitted elsewhere: on cross-validation's out-of-fold
    predictions) instead of one fitted on validation."""
    out_dir = Path(out_dir)
    key = evaluation_key(transfer_dirs, tracks, store, splits, seed, temperatures)
    if is_done(out_dir, key):
        return EvaluationRun(read_json(out_dir / "metrics.json"), (out_dir / "table.md").read_text().rstrip("\n"))
    clear_done(out_dir)
    genres = genre_list(tracks)
    models = transfer_models(transfer_dirs, genres)
    if store is not None:
        calibrate = not models or any(model.calibrate for model in models)
        models.append(replace(classical_model(store, tracks, genres, splits, seed), calibrate=calibrate))
    if not models:
        raise TransferError("nothing to evaluate: pass transfer directories or a feature store")
    split_ids: dict[str, pd.Index] = {}
    for split in splits:
        ids = pd.Index(tracks.loc[split_mask(tracks, split), "track_id"])
        for model in models:
            ids = ids.intersection(model.probs.index, sort=False)
        if len(ids):
            split_ids[split] = ids
    if not split_ids:
        raise TransferError(f"no track of split(s) {', '.join(splits)} has a prediction from every model")
    uncalibrated = models
    models, fitted_temperatures = [], {}
    for model in uncalibrated:
        fitted, fitted_temperatures[model.name] = calibrated(model, tracks, genres, split_ids.get(CALIBRATION_SPLIT),
                                                             (temperatures or {}).get(model.name))
        models.append(fitted)
    scores = {
        m.name: {split: score_against(tracks, m.probs.loc[ids], genres) for split, ids in split_ids.items()}
        for m in models
    }
    before = {
        m.name: {split: {labels: {metric: found[metric] for metric in METRICS} for labels, found in
                         score_against(tracks, m.probs.loc[ids], genres).items()} for split, ids in split_ids.items()}
        for m in uncalibrated
    }
    primary = list(split_ids)[-1]
    metrics = {
        "genres": list(genres),
        "primary_split": primary,
        "splits": {split: {"n_tracks": len(ids)} for split, ids in split_ids.items()},
        "calibration_split": CALIBRATION_SPLIT if CALIBRATION_SPLIT in split_ids else None,
        "models": {m.name: {"kind": m.kind, "source": m.source, "calibrated": m.calibrate,
                            "temperature": fitted_temperatures[m.name], "scores": scores[m.name],
                            "uncalibrated": before[m.name]} for m in models},
    }
    sections = []
    for split, ids in split_ids.items():
        rows = [
            {"model": m.name, "labels": labels, **result}
            for m in models
            for labels, result in scores[m.name][split].items()
        ]
        sections.append(f"{split} ({len(ids)} tracks)\n\n{format_table(rows)}")
    table = "\n\n".join(sections)
    _write_plots(models, uncalibrated, tracks, genres, primary, split_ids[primary], scores, out_dir)
    write_text_atomic(out_dir / "table.md", table + "\n")
    write_json_atomic(out_dir / "metrics.json", metrics)
    mark_done(out_dir, key)
    return EvaluationRun(metrics, table)
