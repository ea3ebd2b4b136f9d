"""The transfer MLP: source-net window features -> dropout, dense ELU, dropout, softmax over genres.

Trained on the windows of training tracks only (with TransferConfig.max_windows_per_track, at most that many
per track and epoch, drawn anew every epoch); after every epoch the validation tracks' log loss (of the mean of
their window probabilities) is measured and the best epoch's weights are kept (or the last epoch's, with
TransferConfig.select_epoch = 'last'). A track's prediction aggregates its windows by one of
TransferConfig.aggregations (agf.aggregation.Aggregation):
    probs       the mean of the window probabilities (the paper's)
    log_probs   their renormalised geometric mean (the same MLP, another track aggregation)
    pooled      an MLP of its own on one vector per track: the mean and standard deviation of its window
                features (the authors' follow-up work), trained and early-stopped like the window MLP
With several, each is fitted and the one of the lowest validation log loss after temperature scaling (fitted
on the same validation tracks, as the evaluation does; with TransferConfig.calibrate = false, before it: the
evaluation then scores the raw probabilities) is kept; the test split never chooses. ['probs'] alone is the
paper's fixed aggregation: nothing is chosen. With
`standardize` (on by default), each MLP's input is standardised by the mean and standard deviation of its
training rows, and the statistics are folded into the first dense layer afterwards, so the saved MLP takes the
raw features.

Out of core: the window features stay in the nets' caches (memory-mapped float16 features.npy; FMA-large with 5
nets: 6.5 M windows x 1,280 features, 16.6 GB). FeatureMatrix reads a batch of rows of every net, side by side,
and only that batch goes to the device, standardised there as the MLP is trained (float16-rounded, as before);
the statistics are accumulated in float64 over the training rows a chunk at a time; validation scores,
predictions and pooled features are computed a chunk of whole tracks at a time (windows are grouped by track).
What stays in memory is per window a track index (int32), per training window its row and label, per track its
id, label and split, and for 'pooled' one float32 row of 2 x 1,280 per track (1.1 GB for FMA-large's 106,574
tracks). The MLP trained so is bitwise the one of the in-memory matrix (tests/test_transfer.py); memory and
speed against it: benchmarks/bench_transfer.py.

out_dir (the transfer directory) receives
    mlp.safetensors       the best epoch's MLP weights
    mlp.json              sources, genres, input dimensions, best epoch, the aggregation kept and every
                          candidate's validation scores, whether the evaluation calibrates it (`calibrate`), the
                          baselines written
    curves.csv            epoch, train_loss, val_log_loss, val_accuracy, seconds (of the kept MLP)
    predictions.parquet   track_id, split, one probability column per genre: every usable track of every split
    baselines/*.parquet   the same for each source's own genre head (genre STN softmax, MTN genre head)
    done.json             the completion marker (agf.workdir): the key of the request it answers (sources'
                          weights, config, seed, tracks), written last, so a rerun with the same request reuses
                          everything and a killed run is redone
Window features are cached per source net and hop in out_dir/../windows/<net dir name>/hop<hop>/, so
transfers over different subsets of the same nets compute each net's features once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from agf.aggregation import Aggregation
from agf.calibration import apply_temperature, fit_temperature
from agf.config import TransferConfig, key_settings
from agf.datasets.table import TRAIN, VAL, genre_list, split_mask, tracks_fingerprint
from agf.device import resolve_device
from agf.errors import TransferError
from agf.fileio import (
    atomic_path,
    read_json,
    safe_name,
    stable_key,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)
from agf.metrics import accuracy, aggregate_window_probs, log_loss, pooled_window_features
from agf.models.losses import l2_parameters, l2_term
from agf.store import FeatureStore
from agf.transfer.sources import SourceNet, load_source
from agf.transfer.mlp_model import build_mlp
from agf.transfer.windows import WindowFeatures, net_window_features
from agf.workdir import clear_done, is_done, mark_done

MLP_FORMAT = "agf-transfer/1"
PREDICT_BATCH = 8192
# Windows per chunk of pooled features: their float64 moments (2 x D per window) and pandas' copies of them stay
# under about 100 MB at 5 nets x 256 features (at PREDICT_BATCH, 600 MB).
POOL_BATCH = 1024
# A standardised input whose training standard deviation is below this is left unscaled: it is constant up to the
# float16 rounding of the stored features (resolution about 1e-3 near 1), and dividing by it would amplify that.
STD_FLOOR = 1e-3


@dataclass(frozen=True, eq=False)
class FeatureMatrix:
    """An (n_rows, D) feature matrix left where its parts lie, side by side (one part per source net: its window
    cache's memory-mapped float16 features.npy; or one in-memory array) and read a batch of rows at a time: the
    rows of all nets are never in memory, nor on the device, at once. With `mean` and `std`, the batches the
    model gets are standardised (see `batch`)."""

    parts: tuple[np.ndarray, ...]  # (n_rows, D_i) each, one dtype
    device: torch.device
    mean: torch.Tensor | None = None  # (D,) float32 on the device
    std: torch.Tensor | None = None

    @property
    def n_rows(self) -> int:
        return len(self.parts[0])

    @property
    def dim(self) -> int:
        return sum(part.shape[1] for part in self.parts)

    def read(self, rows: np.ndarray | slice) -> np.ndarray:
        """The given rows of every part side by side, as stored (a copy in memory)."""
        return np.concatenate([part[rows] for part in self.parts], axis=1)

    def batch(self, rows: np.ndarray | slice) -> torch.Tensor:
        """The given rows as the model's float32 input on the device: standardised, when the matrix has a mean and
        std, and rounded back to the stored dtype (float16 for windows) as the MLP is trained."""
        stored = torch.from_numpy(self.read(rows)).to(self.device)
        if self.mean is None:
            return stored.float()
        return ((stored.float() - self.mean) / self.std).to(stored.dtype).float()

    def standardized(self, mean: torch.Tensor, std: torch.Tensor) -> FeatureMatrix:
        """The same rows, standardised by `mean` and `std` when read as the model's input."""
        return replace(self, mean=mean, std=std)


@dataclass(frozen=True)
class Rows:
    """What an MLP is fitted on and predicts: one feature row per window (or per track, pooled), grouped by track,
    and each track's id, label (its given genre, class index) and split."""

    features: FeatureMatrix  # (n_rows, D)
    track_of_row: np.ndarray  # (n_rows,) int32 index into the per-track arrays, non-decreasing, every track present
    track_ids: np.ndarray  # (n_tracks,) str
    labels: np.ndarray  # (n_tracks,) int64
    split: np.ndarray  # (n_tracks,) str


@dataclass(frozen=True)
class WindowSet:
    """Some rows of a Rows (the windows of its training or validation tracks), in order: still grouped by track."""

    features: FeatureMatrix  # every row of the Rows, read by batch (standardised for training and validation)
    rows: np.ndarray  # (n,) int64 rows of `features` in this set, ascending
    track_of_row: np.ndarray  # (n,) int32 index into track_ids
    labels: np.ndarray  # (n,) int64 class index of each row's track
    track_ids: np.ndarray  # (n_tracks,) str: every track of the Rows


@dataclass(frozen=True)
class FittedMLP:
    """A trained MLP (eval mode, taking raw rows: any standardisation is folded in) and how training went."""

    model: nn.Sequential
    curves: pd.DataFrame
    best_epoch: int


@dataclass(frozen=True)
class Candidate:
    """One aggregation's fitted model and its (uncalibrated) track probabilities for every usable track."""

    aggregation: Aggregation
    fitted: FittedMLP
    predictions: pd.DataFrame  # track_id, split, one column per genre


@dataclass(frozen=True)
class Baseline:
    """A source net's own genre head, averaged over windows like the MLP: one more model to evaluate."""

    name: str
    kind: str  # 'genre STN softmax' or 'MTN genre head'
    source: str  # the net directory
    file: str  # predictions parquet, relative to the transfer directory


@dataclass(frozen=True)
class TransferResult:
    """A fitted transfer: its predictions for every track and how training went."""

    out_dir: Path
    name: str
    genres: tuple[str, ...]
    predictions: pd.DataFrame  # track_id, split, one column per genre
    curves: pd.DataFrame
    best_epoch: int
    baselines: tuple[Baseline, ...]
    calibrate: bool = True  # whether the evaluation temperature-scales its probabilities and baselines'




def check_train_only(window_track_ids: Sequence[str] | np.ndarray, tracks: pd.DataFrame) -> None:
    """Raise TransferError unless every window comes from a track with split == 'train' (no leakage)."""
    train_ids = set(tracks.loc[split_mask(tracks, TRAIN), "track_id"].astype(str))
    leaked = sorted(set(map(str, window_track_ids)) - train_ids)
    if leaked:
        raise TransferError(
            f"{len(leaked)} track(s) outside the training split would fit the transfer MLP, e.g. "
            f"{', '.join(leaked[:5])}; only windows of split == {TRAIN!r} tracks may train it"
        )


def check_has_training_tracks(tracks: pd.DataFrame, store: FeatureStore) -> None:
    """TransferError unless some of the (usable) tracks are training tracks."""
    if not split_mask(tracks, TRAIN).any():
        raise TransferError(f"{store.root}: no training track has usable features; run `agf prepare` first")


def batch_slices(n_rows: int, size: int) -> Iterator[slice]:
    """Consecutive slices of `size` rows (the last may be shorter) covering n_rows rows."""
    return (slice(start, min(start + size, n_rows)) for start in range(0, n_rows, size))


def predict_batches(model: nn.Module, features: FeatureMatrix, rows: np.ndarray) -> Iterator[np.ndarray]:
    """(batch, K) float32 softmax probabilities of the given rows, PREDICT_BATCH rows at a time, eval mode."""
    model.eval()
    for batch in batch_slices(len(rows), PREDICT_BATCH):
        with torch.inference_mode():
            probs = torch.softmax(model(features.batch(rows[batch])), dim=1).cpu().numpy()
        yield probs


def whole_tracks(track_of_row: np.ndarray, batches: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(track of each row, values) of whole tracks, from consecutive non-empty batches of per-row values (rows
    grouped by track, track_of_row non-decreasing): a batch's last track, which may go on in the next, waits."""
    held: list[np.ndarray] = []
    first = end = 0  # rows [first, end) are held
    for values in batches:
        held.append(values)
        end += len(values)
        cut = first + int(np.searchsorted(track_of_row[first:end], track_of_row[end - 1]))
        if cut > first:
            block = np.concatenate(held)
            yield track_of_row[first:cut], block[: cut - first]
            held, first = [block[cut - first :]], cut
    if end > first:
        yield track_of_row[first:end], np.concatenate(held)


def track_probabilities(
    window_probs: Iterable[np.ndarray],
    track_of_row: np.ndarray,
    track_ids: np.ndarray,
    aggregations: Sequence[str],
    columns: Sequence[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Each aggregation's track probabilities (index track_id, tracks in order) from window probabilities that come
    in consecutive batches, aggregated a chunk of whole tracks at a time (agf.metrics.aggregate_window_probs)."""
    parts: dict[str, list[pd.DataFrame]] = {aggregation: [] for aggregation in aggregations}
    for codes, probs in whole_tracks(track_of_row, window_probs):
        ids = track_ids[codes]
        for aggregation, frames in parts.items():
            frames.append(aggregate_window_probs(ids, probs, aggregation, columns=columns))
    return {aggregation: pd.concat(frames) for aggregation, frames in parts.items()}


def _track_scores(model: nn.Module, windows: WindowSet, track_labels: np.ndarray) -> tuple[float, float]:
    """Track-level log loss and accuracy of a window set (window probabilities averaged per track)."""
    probs = predict_batches(model, windows.features, windows.rows)
    matrix = track_probabilities(probs, windows.track_of_row, windows.track_ids,
                                 [Aggregation.PROBS])[Aggregation.PROBS].to_numpy()
    return log_loss(track_labels, matrix), accuracy(track_labels, matrix.argmax(axis=1))


def _first_label_per_track(windows: WindowSet) -> np.ndarray:
    """The label of each track of a window set, in order."""
    return windows.labels[np.flatnonzero(np.diff(windows.track_of_row, prepend=-1))]


def capped_positions(track_codes: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of at most `cap` rows per track (track_codes: one integer per row), drawn by `rng`."""
    order = rng.permutation(len(track_codes))
    by_track = order[np.argsort(track_codes[order], kind="stable")]
    codes = track_codes[by_track]
    rank = np.arange(len(codes)) - np.searchsorted(codes, codes, side="left")
    return np.sort(by_track[rank < cap])


def epoch_positions(train: WindowSet, cap: int, seed: int, epoch: int) -> np.ndarray:
    """The positions in `train` one epoch trains on: all (cap 0), or at most `cap` per track, drawn at random
    by the run seed and the epoch."""
    if cap == 0:
        return np.arange(len(train.rows))
    return capped_positions(train.track_of_row, cap, np.random.default_rng([seed, epoch]))


def train_mlp(
    model: nn.Module, train: WindowSet, val: WindowSet | None, config: TransferConfig, seed: int,
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame, int]:
    """Fit on `train` (at most config.max_windows_per_track rows per track and epoch, 0: all; reshuffled every
    epoch by `seed`; each batch read from the features and moved to the device alone), on the cross-entropy plus,
    with config.l2_loss, the authors' L2 term over the dense weights; return the best epoch's weights, the curves
    (train_loss: the cross-entropy alone) and that epoch.

    The best epoch has the lowest track-level validation log loss; without validation tracks, or with
    select_epoch = 'last', it is the last.
    """
    # foreach: one multi-tensor step, 1.6x faster than torch's default single-tensor Adam on CPU for this MLP and
    # bitwise equal to it (checked in tests/test_transfer.py).
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, foreach=True)
    l2_weights = l2_parameters(model)
    shuffle = torch.Generator().manual_seed(seed)
    val_labels = _first_label_per_track(val) if val is not None else None
    device = train.features.device
    best_loss, best_epoch, best_state = np.inf, 0, {}
    curves = []
    for epoch in tqdm(range(1, config.epochs + 1), desc="transfer MLP", unit="epoch", disable=not progress):
        started = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        positions = epoch_positions(train, config.max_windows_per_track, seed, epoch)
        shuffled = positions[torch.randperm(len(positions), generator=shuffle).numpy()]
        for batch in batch_slices(len(shuffled), config.batch_size):
            chosen = shuffled[batch]
            labels = torch.from_numpy(train.labels[chosen]).to(device)
            loss = F.cross_entropy(model(train.features.batch(train.rows[chosen])), labels)
            optimizer.zero_grad(set_to_none=True)
            (loss + l2_term(l2_weights, config.l2_loss).to(device) if config.l2_loss else loss).backward()
            optimizer.step()
            loss_sum += loss.detach() * len(chosen)
        val_loss, val_accuracy = _track_scores(model, val, val_labels) if val is not None else (np.nan, np.nan)
        curves.append(
            {
                "epoch": epoch,
                "train_loss": loss_sum.item() / len(positions),
                "val_log_loss": val_loss,
                "val_accuracy": val_accuracy,
                "seconds": time.perf_counter() - started,
            }
        )
        if val is None or config.select_epoch == "last" or val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return best_state, pd.DataFrame(curves), best_epoch


def _window_set(features: FeatureMatrix, rows: Rows, selected: np.ndarray) -> WindowSet:
    """The rows of the tracks selected by a boolean mask over `rows`' tracks, read from `features`."""
    positions = np.flatnonzero(selected[rows.track_of_row])
    track_of_row = rows.track_of_row[positions]
    return WindowSet(features, positions, track_of_row, rows.labels[track_of_row], rows.track_ids)


def standardization(features: FeatureMatrix, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and standard deviation (float32, on the features' device) of the given rows, accumulated in
    float64 a chunk of rows at a time (the chunks' squared deviations merged as Chan et al.'s parallel variance);
    deviations under STD_FLOOR are 1."""
    total = np.zeros(features.dim)
    squares = np.zeros(features.dim)  # sum of squared deviations from the mean of the rows so far
    count = 0
    for batch in batch_slices(len(rows), PREDICT_BATCH):
        chunk = features.read(rows[batch]).astype(np.float64)
        chunk_sum, n = chunk.sum(axis=0), len(chunk)
        shift = chunk_sum / n - total / max(count, 1)
        chunk -= chunk_sum / n
        squares += np.square(chunk, out=chunk).sum(axis=0) + np.square(shift) * count * n / (count + n)
        total += chunk_sum
        count += n
    mean, std = total / count, np.sqrt(squares / count)
    std = np.where(std < STD_FLOOR, 1.0, std)
    return torch.from_numpy(mean).float().to(features.device), torch.from_numpy(std).float().to(features.device)


def fold_standardization(model: nn.Sequential, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Make `model`, trained on (x - mean) / std, take x: exact in eval mode (dropout off)."""
    first = model[1]
    with torch.no_grad():
        weight = first.weight.double() / std.double()
        first.bias.copy_((first.bias.double() - weight @ mean.double()).float())
        first.weight.copy_(weight.float())


def fit_mlp(
    rows: Rows, tracks: pd.DataFrame, n_out: int, config: TransferConfig, seed: int, progress: bool,
) -> FittedMLP:
    """Train an MLP on the rows of training tracks (checked: no other split fits it), early-stopped on the
    validation rows (see train_mlp); with config.standardize, on inputs standardised by the training rows."""
    train = _window_set(rows.features, rows, rows.split == TRAIN)
    check_train_only(rows.track_ids[np.unique(train.track_of_row)], tracks)
    if config.standardize:
        mean, std = standardization(train.features, train.rows)
        train = replace(train, features=train.features.standardized(mean, std))
    is_val = rows.split == VAL
    val = _window_set(train.features, rows, is_val) if is_val.any() else None
    torch.manual_seed(seed)
    model = build_mlp(train.features.dim, n_out, config.hidden, config.dropout).to(train.features.device)
    best_state, curves, best_epoch = train_mlp(model, train, val, config, seed, progress)
    model.load_state_dict(best_state)
    if config.standardize:
        fold_standardization(model, mean, std)
    return FittedMLP(model.eval(), curves, best_epoch)


def pooled_rows(windows: Rows) -> Rows:
    """One row per track (in memory): the mean and standard deviation of its window features (float32), computed
    a chunk of whole tracks at a time; the same tracks, labels and splits."""
    pooled = np.empty((len(windows.track_ids), 2 * windows.features.dim), dtype=np.float32)
    chunks = (windows.features.read(batch) for batch in batch_slices(windows.features.n_rows, POOL_BATCH))
    for codes, features in whole_tracks(windows.track_of_row, chunks):
        moments = pooled_window_features(windows.track_ids[codes], features)
        pooled[codes[0] : codes[-1] + 1] = moments.to_numpy(dtype=np.float32)
    return replace(windows, features=FeatureMatrix((pooled,), windows.features.device),
                   track_of_row=np.arange(len(pooled), dtype=np.int32))


def shared_windows(windows: Iterable[WindowFeatures]) -> list[WindowFeatures]:
    """The nets' window features, taken one at a time, each sharing the first's window arrays (track index and
    start of every window: one copy in memory); TransferError unless every net has the same windows in the same
    order, grouped by track."""
    windows = iter(windows)
    first = next(windows)
    steps = np.diff(first.track_of_window)
    if not ((steps == 0) | (steps == 1)).all():
        raise TransferError("the window caches' windows are not grouped by track; remove their transfer/windows/ "
                            "folders to compute them again")
    shared = [first]
    for window in windows:
        if not (np.array_equal(window.tracks, first.tracks) and np.array_equal(window.starts, first.starts)
                and np.array_equal(window.track_of_window, first.track_of_window)):
            raise TransferError(
                "the source nets' window caches hold different windows (tracks or start frames); remove their "
                "transfer/windows/ folders to compute them again"
            )
        shared.append(replace(window, tracks=first.tracks, track_of_window=first.track_of_window,
                              starts=first.starts))
    return shared


def window_rows(
    windows: Sequence[WindowFeatures], tracks: pd.DataFrame, genres: Sequence[str], device: torch.device
) -> Rows:
    """The window MLP's rows over the nets' windows (see shared_windows): every window, the nets' features side by
    side (read from their caches by batch), and each track's label and split."""
    first = windows[0]
    by_id = tracks.set_index(tracks["track_id"].astype(str)).loc[first.tracks]
    return Rows(
        features=FeatureMatrix(tuple(window.features for window in windows), device),
        track_of_row=first.track_of_window,
        track_ids=first.tracks,
        labels=by_id["genre"].map({genre: i for i, genre in enumerate(genres)}).to_numpy(dtype=np.int64),
        split=by_id["split"].to_numpy(),
    )


def _track_table(track_probs: pd.DataFrame, genres: Sequence[str], split_of: pd.Series) -> pd.DataFrame:
    """track_id, split and one probability column per genre (class order `genres`) of track-level probabilities
    (index track_id, one column per genre in any order)."""
    missing = sorted(set(genres) - set(track_probs.columns))
    if missing:
        raise TransferError(
            f"no probability column for genre(s) {', '.join(missing)}; the net was trained on other genres"
        )
    frame = track_probs[list(genres)].rename_axis("track_id").reset_index()
    frame.insert(1, "split", frame["track_id"].map(split_of))
    return frame


def fit_candidates(
    windows: Rows, tracks: pd.DataFrame, genres: tuple[str, ...], config: TransferConfig, seed: int,
    progress: bool,
) -> list[Candidate]:
    """Every aggregation of config.aggregations, in that order: 'probs' and 'log_probs' share one window MLP,
    'pooled' trains its own on one row per track (no cap: a track is one row)."""
    split_of = tracks.set_index("track_id")["split"]
    aggregations = [Aggregation(a) for a in config.aggregations]
    fitted: dict[Aggregation, Candidate] = {}
    window_aggregations = [a for a in aggregations if not a.is_pooled]
    if window_aggregations:
        window_mlp = fit_mlp(windows, tracks, len(genres), config, seed, progress)
        probs = predict_batches(window_mlp.model, windows.features, np.arange(windows.features.n_rows))
        by_aggregation = track_probabilities(probs, windows.track_of_row, windows.track_ids, window_aggregations,
                                             genres)
        for aggregation, track_probs in by_aggregation.items():
            fitted[aggregation] = Candidate(aggregation, window_mlp, _track_table(track_probs, genres, split_of))
    if Aggregation.POOLED in aggregations:
        pooled = pooled_rows(windows)
        pooled_config = replace(config, max_windows_per_track=0)
        pooled_mlp = fit_mlp(pooled, tracks, len(genres), pooled_config, seed, progress)
        probs = predict_batches(pooled_mlp.model, pooled.features, np.arange(pooled.features.n_rows))
        track_probs = pd.DataFrame(np.concatenate(list(probs)), index=pooled.track_ids, columns=list(genres))
        fitted[Aggregation.POOLED] = Candidate(Aggregation.POOLED, pooled_mlp,
                                               _track_table(track_probs, genres, split_of))
    return [fitted[a] for a in aggregations]


def validation_scores(candidate: Candidate, tracks: pd.DataFrame, genres: Sequence[str]) -> dict[str, float] | None:
    """A candidate's validation log loss before and after temperature scaling fitted on the same validation
    tracks (as the evaluation does), and that temperature; None without validation tracks."""
    val = candidate.predictions[split_mask(candidate.predictions, VAL)]
    if val.empty:
        return None
    given = tracks.set_index("track_id").loc[val["track_id"], "genre"]
    labels = given.map({g: i for i, g in enumerate(genres)}).to_numpy(dtype=np.int64)
    probs = val[list(genres)].to_numpy(dtype=np.float64)
    temperature = fit_temperature(probs, labels)
    return {
        "val_log_loss": log_loss(labels, probs),
        "val_log_loss_calibrated": log_loss(labels, apply_temperature(probs, temperature)),
        "temperature": temperature,
        "best_epoch": candidate.fitted.best_epoch,
    }


def choose_candidate(
    candidates: Sequence[Candidate], tracks: pd.DataFrame, genres: Sequence[str], calibrate: bool = True,
) -> tuple[Candidate, dict[str, dict[str, float] | None]]:
    """The candidate of the lowest validation log loss, calibrated (or, without `calibrate`, raw: what the
    evaluation will score), the first without validation tracks; and every candidate's validation scores, by
    aggregation. Test labels are never read."""
    scores = {c.aggregation: validation_scores(c, tracks, genres) for c in candidates}
    if any(score is None for score in scores.values()):
        return candidates[0], scores
    scored = "val_log_loss_calibrated" if calibrate else "val_log_loss"
    best = min(candidates, key=lambda c: scores[c.aggregation][scored])
    return best, scores


def _write_baselines(
    out_dir: Path, sources: list[SourceNet], windows: list[WindowFeatures], genres: tuple[str, ...], split_of: pd.Series
) -> tuple[Baseline, ...]:
    """Track predictions of every source's own genre head, one parquet each under out_dir/baselines/."""
    baselines = []
    for source, window in zip(sources, windows):
        if source.baseline is None or window.genre_probs is None:
            continue
        name = f"{source.baseline}: {source.label}"
        file = f"baselines/{safe_name(name)}.parquet"
        try:
            probs = (window.genre_probs[batch] for batch in batch_slices(len(window.genre_probs), PREDICT_BATCH))
            head = track_probabilities(probs, window.track_of_window, window.tracks, [Aggregation.PROBS],
                                       window.head_genres)[Aggregation.PROBS]
            table = _track_table(head, genres, split_of)
        except TransferError as exc:
            raise TransferError(f"{source.path}: {exc}") from None
        write_parquet_atomic(out_dir / file, table)
        baselines.append(Baseline(name=name, kind=source.baseline, source=str(source.path), file=file))
    return tuple(baselines)


def window_cache_dir(out_dir: Path, source: Path, hop: int) -> Path:
    """Where a source net's window features are cached: shared by the transfers in out_dir's parent."""
    return Path(out_dir).parent / "windows" / Path(source).name / f"hop{hop}"


def transfer_dir(transfer_root: str | Path, sources: Sequence[str | Path], config: TransferConfig, seed: int) -> Path:
    """transfer/<key>: the key hashes the source directory names (in order), the config and the seed."""
    key = stable_key("transfer", [Path(s).name for s in sources], key_settings(config), seed)
    return Path(transfer_root) / key


def _request(
    sources: list[SourceNet], config: TransferConfig, seed: int, tracks: pd.DataFrame, store: FeatureStore,
) -> dict:
    """Everything a transfer's outputs depend on (never a path's spelling): reused only when all is unchanged."""
    return {
        "format": MLP_FORMAT,
        "sources": [{"name": s.path.name, "fingerprint": s.fingerprint} for s in sources],
        "config": key_settings(config),
        "seed": seed,
        "tracks": tracks_fingerprint(tracks),
        "store": store.root.name,
    }


def _mlp_spec(
    name: str,
    sources: list[SourceNet],
    windows: list[WindowFeatures],
    genres: tuple[str, ...],
    config: TransferConfig,
    seed: int,
    chosen: Candidate,
    scores: dict[str, dict[str, float] | None],
    per_track: np.ndarray,
) -> dict:
    """mlp.json: what the MLP was fitted on (per_track: the windows of each training track), its shape, the chosen
    epoch and aggregation, every candidate's scores."""
    curves, best_epoch = chosen.fitted.curves, chosen.fitted.best_epoch
    best_val_loss = curves.loc[curves["epoch"] == best_epoch, "val_log_loss"].iloc[0]
    cap = config.max_windows_per_track
    return {
        "format": MLP_FORMAT,
        "name": name,
        "sources": [
            {"path": str(s.path), "label": s.label, "tasks": list(s.tasks), "dim": w.features.shape[1]}
            for s, w in zip(sources, windows)
        ],
        "genres": list(genres),
        "input_dim": int(chosen.fitted.model[1].in_features),
        "hidden": config.hidden,
        "dropout": config.dropout,
        "window_hop": config.window_hop,
        "patch_frames": sources[0].patch_frames,
        "aggregation": chosen.aggregation.value,
        "standardized": config.standardize,
        "calibrate": config.calibrate,
        "candidates": scores,
        "seed": seed,
        "best_epoch": best_epoch,
        "best_val_log_loss": None if np.isnan(best_val_loss) else float(best_val_loss),
        "n_train_tracks": len(per_track),
        "n_train_windows": int(per_track.sum()),
        "max_windows_per_track": cap,
        "train_windows_per_epoch": int(np.minimum(per_track, cap).sum() if cap else per_track.sum()),
    }


def fit_transfer(
    sources: Sequence[str | Path],
    store: FeatureStore,
    tracks: pd.DataFrame,
    config: TransferConfig,
    seed: int,
    out_dir: str | Path,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> TransferResult:
    """Train the transfer MLP with the run seed `seed` on the window features of `sources` side by side (in order;
    read from their caches a batch at a time), over the usable tracks `tracks` (see FeatureStore.usable), one per
    config.aggregations, and keep the one of the lowest validation log loss. See the module doc."""
    out_dir = Path(out_dir)
    if not sources:
        raise TransferError("no source nets given; pass one or more trained net directories")
    check_has_training_tracks(tracks, store)
    genres = tuple(genre_list(tracks))
    torch_device = resolve_device(device)
    nets = [load_source(path, store.config, torch_device) for path in sources]
    patches = {source.patch_frames for source in nets}
    if len(patches) > 1:
        raise TransferError(f"the source nets take windows of different lengths ({sorted(patches)} frames); "
                            "combine nets trained with the same train.patch_frames")
    request = _request(nets, config, seed, tracks, store)
    key = stable_key(request)
    if is_done(out_dir, key):
        return load_transfer(out_dir)
    clear_done(out_dir)

    usable = tracks["track_id"].astype(str).tolist()
    windows = shared_windows(
        net_window_features(
            source.net, store, usable, source.patch_frames, config.window_hop, torch_device,
            cache_path=window_cache_dir(out_dir, source.path, config.window_hop),
            head_genres=source.head_genres, progress=progress, amp=config.amp,
        )
        for source in nets
    )
    rows = window_rows(windows, tracks, genres, torch_device)
    split_of = tracks.set_index("track_id")["split"]
    candidates = fit_candidates(rows, tracks, genres, config, seed, progress)
    chosen, scores = choose_candidate(candidates, tracks, genres, config.calibrate)

    name = "transfer MLP: " + " + ".join(source.label for source in nets)
    baselines = _write_baselines(out_dir, nets, windows, genres, split_of)
    per_track = np.bincount(rows.track_of_row, minlength=len(rows.track_ids))[rows.split == TRAIN]
    spec = _mlp_spec(name, nets, windows, genres, config, seed, chosen, scores, per_track)
    state = {k: v.detach().cpu().contiguous() for k, v in chosen.fitted.model.state_dict().items()}
    with atomic_path(out_dir / "mlp.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": MLP_FORMAT})
    write_json_atomic(out_dir / "mlp.json", {**spec, "baselines": [vars(b) for b in baselines]})
    write_text_atomic(out_dir / "curves.csv", chosen.fitted.curves.to_csv(index=False))
    write_parquet_atomic(out_dir / "predictions.parquet", chosen.predictions)
    mark_done(out_dir, key, request=request)
    return TransferResult(out_dir, name, genres, chosen.predictions, chosen.fitted.curves, chosen.fitted.best_epoch,
                          baselines, config.calibrate)


def load_transfer(out_dir: str | Path) -> TransferResult:
    """A finished transfer directory's results (raise TransferError when it is missing or unfinished)."""
    out_dir = Path(out_dir)
    if not is_done(out_dir):
        raise TransferError(f"{out_dir}: no finished transfer here; run `agf transfer` first")
    spec = read_json(out_dir / "mlp.json")
    return TransferResult(
        out_dir=out_dir,
        name=spec["name"],
        genres=tuple(spec["genres"]),
        predictions=pd.read_parquet(out_dir / "predictions.parquet"),
        curves=pd.read_csv(out_dir / "curves.csv"),
        best_epoch=int(spec["best_epoch"]),
        baselines=tuple(Baseline(**b) for b in spec["baselines"]),
        calibrate=spec.get("calibrate", True),  # transfers made before the setting were calibrated
    )
