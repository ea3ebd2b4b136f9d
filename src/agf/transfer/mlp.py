"""The transfer MLP: source-net window features -> dropout, dense ELU, dropout, softmax over genres.

Trained on the windows of training tracks only (with TransferConfig.max_windows_per_track, at most that many
per track and epoch, drawn anew every epoch); after every epoch the validation tracks' log loss (of the mean of
their window probabilities) is measured and the best epoch's weights are kept (or the last epoch's, with
TransferConfig.select_epoch = 'last'). A track's prediction aggregates its windows by one of
TransferConfig.aggregations (agf.config.AGGREGATIONS):
    probs       the mean of the window probabilities (the paper's)
    log_probs   their renormalised geometric mean (the same MLP, another track aggregation)
    pooled      an MLP of its own on one vector per track: the mean and standard deviation of its window
                features (the authors' follow-up work), trained and early-stopped like the window MLP
With several, each is fitted and the one of the lowest validation log loss after temperature scaling (fitted
on the same validation tracks, as the evaluation does) is kept; the test split never chooses. With
`standardize` (on by default), each MLP's input is standardised by the mean and standard deviation of its training rows, and
the statistics are folded into the first dense layer afterwards, so the saved MLP takes the raw features.

out_dir (the transfer directory) receives
    mlp.safetensors       the best epoch's MLP weights
    mlp.json              sources, genres, input dimensions, best epoch, the aggregation kept and every
                          candidate's validation scores, the baselines written
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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from agf.calibration import apply_temperature, fit_temperature
from agf.config import TransferConfig, key_settings
from agf.datasets.table import genre_list, tracks_fingerprint
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
from agf.metrics import (
    accuracy,
    aggregate_window_probs,
    log_loss,
    mean_window_probs,
    pooled_window_features,
)
from agf.models.nets import init_weights
from agf.store import FeatureStore
from agf.transfer.sources import SourceNet, load_source
from agf.transfer.windows import WindowFeatures, net_window_features
from agf.workdir import clear_done, is_done, mark_done

MLP_FORMAT = "agf-transfer/1"
PREDICT_BATCH = 8192
# A standardised input whose training standard deviation is below this is left unscaled: it is constant up to the
# float16 rounding of the stored features (resolution about 1e-3 near 1), and dividing by it would amplify that.
STD_FLOOR = 1e-3


@dataclass(frozen=True)
class WindowSet:
    """Some rows of the window-feature matrix: their labels (the track's given genre) and track ids."""

    features: torch.Tensor  # (n_all_windows, D) float16, shared by every WindowSet of one transfer
    rows: torch.Tensor  # (n,) int64 rows of `features` in this set
    labels: torch.Tensor  # (n,) int64 class index of each row's track
    track_ids: np.ndarray  # (n,) str


@dataclass(frozen=True)
class Rows:
    """What an MLP is fitted on and predicts: one feature row per window (or per track, pooled), each row's
    label (its track's given genre, class index), track id and split."""

    features: torch.Tensor  # (n, D)
    labels: np.ndarray  # (n,) int64
    track_ids: np.ndarray  # (n,) str
    split: np.ndarray  # (n,) str


@dataclass(frozen=True)
class FittedMLP:
    """A trained MLP (eval mode, taking raw rows: any standardisation is folded in) and how training went."""

    model: nn.Sequential
    curves: pd.DataFrame
    best_epoch: int


@dataclass(frozen=True)
class Candidate:
    """One aggregation's fitted model and its (uncalibrated) track probabilities for every usable track."""

    aggregation: str
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


def build_mlp(n_in: int, n_out: int, hidden: int = 1024, dropout: float = 0.5) -> nn.Sequential:
    """dropout -> dense `hidden` ELU -> dropout -> dense n_out (logits; softmax in the loss). Glorot init."""
    mlp = nn.Sequential(
        nn.Dropout(dropout), nn.Linear(n_in, hidden), nn.ELU(), nn.Dropout(dropout), nn.Linear(hidden, n_out)
    )
    init_weights(mlp)
    return mlp


def check_train_only(window_track_ids: Sequence[str] | np.ndarray, tracks: pd.DataFrame) -> None:
    """Raise TransferError unless every window comes from a track with split == 'train' (no leakage)."""
    train_ids = set(tracks.loc[tracks["split"] == "train", "track_id"].astype(str))
    leaked = sorted(set(map(str, window_track_ids)) - train_ids)
    if leaked:
        raise TransferError(
            f"{len(leaked)} track(s) outside the training split would fit the transfer MLP, e.g. "
            f"{', '.join(leaked[:5])}; only windows of split == 'train' tracks may train it"
        )


def check_has_training_tracks(tracks: pd.DataFrame, store: FeatureStore) -> None:
    """TransferError unless some of the (usable) tracks are training tracks."""
    if not (tracks["split"] == "train").any():
        raise TransferError(f"{store.root}: no training track has usable features; run `agf prepare` first")


def predict_windows(model: nn.Module, features: torch.Tensor, rows: torch.Tensor | None = None) -> np.ndarray:
    """(n, K) float32 softmax probabilities of the given rows (all by default), eval mode, large batches."""
    model.eval()
    rows = torch.arange(len(features), device=features.device) if rows is None else rows
    with torch.inference_mode():
        parts = [torch.softmax(model(features[batch].float()), dim=1).cpu() for batch in rows.split(PREDICT_BATCH)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, model[-1].out_features), dtype=np.float32)


def _track_scores(model: nn.Module, windows: WindowSet, track_labels: np.ndarray) -> tuple[float, float]:
    """Track-level log loss and accuracy of a window set (window probabilities averaged per track)."""
    track_probs = mean_window_probs(windows.track_ids, predict_windows(model, windows.features, windows.rows))
    matrix = track_probs.to_numpy()
    return log_loss(track_labels, matrix), accuracy(track_labels, matrix.argmax(axis=1))


def _first_label_per_track(windows: WindowSet) -> np.ndarray:
    """The label of each track of a window set, in order of first appearance (mean_window_probs' order)."""
    labels = pd.Series(windows.labels.cpu().numpy(), index=windows.track_ids)
    return labels.groupby(level=0, sort=False).first().to_numpy()


def capped_positions(track_codes: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of at most `cap` rows per track (track_codes: one integer per row), drawn by `rng`."""
    order = rng.permutation(len(track_codes))
    by_track = order[np.argsort(track_codes[order], kind="stable")]
    codes = track_codes[by_track]
    rank = np.arange(len(codes)) - np.searchsorted(codes, codes, side="left")
    return np.sort(by_track[rank < cap])


def epoch_positions(train: WindowSet, cap: int, seed: int, epoch: int) -> torch.Tensor:
    """The positions in `train` one epoch trains on: all (cap 0), or at most `cap` per track, drawn at random
    by the run seed and the epoch."""
    if cap == 0:
        return torch.arange(len(train.rows), device=train.rows.device)
    codes = pd.factorize(train.track_ids)[0]
    positions = capped_positions(codes, cap, np.random.default_rng([seed, epoch]))
    return torch.from_numpy(positions).to(train.rows.device)


def train_mlp(
    model: nn.Module, train: WindowSet, val: WindowSet | None, config: TransferConfig, seed: int,
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame, int]:
    """Fit on `train` (at most config.max_windows_per_track rows per track and epoch, 0: all; reshuffled every
    epoch by `seed`); return the best epoch's weights, the curves and that epoch.

    The best epoch has the lowest track-level validation log loss; without validation tracks, or with
    select_epoch = 'last', it is the last.
    """
    # foreach: one multi-tensor step, 1.6x faster than torch's default single-tensor Adam on CPU for this MLP and
    # bitwise equal to it (checked in tests/test_transfer.py).
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, foreach=True)
    shuffle = torch.Generator().manual_seed(seed)
    val_labels = _first_label_per_track(val) if val is not None else None
    best_loss, best_epoch, best_state = np.inf, 0, {}
    curves = []
    for epoch in tqdm(range(1, config.epochs + 1), desc="transfer MLP", unit="epoch", disable=not progress):
        started = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=train.rows.device)
        positions = epoch_positions(train, config.max_windows_per_track, seed, epoch)
        order = torch.randperm(len(positions), generator=shuffle).to(train.rows.device)
        for batch in positions[order].split(config.batch_size):
            loss = F.cross_entropy(model(train.features[train.rows[batch]].float()), train.labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(batch)
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


def _window_set(features: torch.Tensor, labels: np.ndarray, track_ids: np.ndarray, mask: np.ndarray) -> WindowSet:
    """The rows of `features` selected by a boolean mask."""
    rows = np.flatnonzero(mask)
    return WindowSet(
        features=features,
        rows=torch.from_numpy(rows).to(features.device),
        labels=torch.from_numpy(labels[rows]).to(features.device),
        track_ids=track_ids[rows],
    )


def standardization(features: torch.Tensor, train: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and standard deviation (float32) of the training rows; deviations under STD_FLOOR are 1."""
    rows = features[torch.from_numpy(np.flatnonzero(train)).to(features.device)].double()
    mean, std = rows.mean(dim=0), rows.std(dim=0, unbiased=False)
    return mean.float(), torch.where(std < STD_FLOOR, torch.ones_like(std), std).float()


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
    train_mask, val_mask = rows.split == "train", rows.split == "val"
    inputs = rows.features
    if config.standardize:
        mean, std = standardization(rows.features, train_mask)
        inputs = ((rows.features.float() - mean) / std).to(rows.features.dtype)
    train = _window_set(inputs, rows.labels, rows.track_ids, train_mask)
    check_train_only(train.track_ids, tracks)
    val = _window_set(inputs, rows.labels, rows.track_ids, val_mask) if val_mask.any() else None
    torch.manual_seed(seed)
    model = build_mlp(inputs.shape[1], n_out, config.hidden, config.dropout).to(inputs.device)
    best_state, curves, best_epoch = train_mlp(model, train, val, config, seed, progress)
    model.load_state_dict(best_state)
    if config.standardize:
        fold_standardization(model, mean, std)
    return FittedMLP(model.eval(), curves, best_epoch)


def pooled_rows(windows: Rows) -> Rows:
    """One row per track: the mean and standard deviation of its window features (float32), its label and split."""
    pooled = pooled_window_features(windows.track_ids, windows.features.float().cpu().numpy())
    first = pd.DataFrame({"label": windows.labels, "split": windows.split}, index=windows.track_ids)
    first = first.groupby(level=0, sort=False).first().loc[pooled.index]
    return Rows(
        features=torch.tensor(pooled.to_numpy(dtype=np.float32), device=windows.features.device),
        labels=first["label"].to_numpy(dtype=np.int64),
        track_ids=pooled.index.to_numpy(),
        split=first["split"].to_numpy(),
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
    fitted: dict[str, Candidate] = {}
    window_aggregations = [a for a in config.aggregations if a != "pooled"]
    if window_aggregations:
        window_mlp = fit_mlp(windows, tracks, len(genres), config, seed, progress)
        probs = predict_windows(window_mlp.model, windows.features)
        for aggregation in window_aggregations:
            track_probs = aggregate_window_probs(windows.track_ids, probs, aggregation, columns=genres)
            fitted[aggregation] = Candidate(aggregation, window_mlp, _track_table(track_probs, genres, split_of))
    if "pooled" in config.aggregations:
        pooled = pooled_rows(windows)
        pooled_config = replace(config, max_windows_per_track=0)
        pooled_mlp = fit_mlp(pooled, tracks, len(genres), pooled_config, seed, progress)
        track_probs = pd.DataFrame(predict_windows(pooled_mlp.model, pooled.features), index=pooled.track_ids,
                                   columns=list(genres))
        fitted["pooled"] = Candidate("pooled", pooled_mlp, _track_table(track_probs, genres, split_of))
    return [fitted[a] for a in config.aggregations]


def validation_scores(candidate: Candidate, tracks: pd.DataFrame, genres: Sequence[str]) -> dict[str, float] | None:
    """A candidate's validation log loss before and after temperature scaling fitted on the same validation
    tracks (as the evaluation does), and that temperature; None without validation tracks."""
    val = candidate.predictions[candidate.predictions["split"] == "val"]
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
    candidates: Sequence[Candidate], tracks: pd.DataFrame, genres: Sequence[str]
) -> tuple[Candidate, dict[str, dict[str, float] | None]]:
    """The candidate of the lowest calibrated validation log loss (the first without validation tracks) and
    every candidate's validation scores, by aggregation. Test labels are never read."""
    scores = {c.aggregation: validation_scores(c, tracks, genres) for c in candidates}
    if any(score is None for score in scores.values()):
        return candidates[0], scores
    best = min(candidates, key=lambda c: scores[c.aggregation]["val_log_loss_calibrated"])
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
            head = mean_window_probs(window.track_ids, window.genre_probs, columns=window.head_genres)
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
    train_window_ids: np.ndarray,
) -> dict:
    """mlp.json: what the MLP was fitted on, its shape, the chosen epoch and aggregation, every candidate's scores."""
    curves, best_epoch = chosen.fitted.curves, chosen.fitted.best_epoch
    best_val_loss = curves.loc[curves["epoch"] == best_epoch, "val_log_loss"].iloc[0]
    per_track = pd.Series(train_window_ids).value_counts()
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
        "aggregation": chosen.aggregation,
        "standardized": config.standardize,
        "candidates": scores,
        "seed": seed,
        "best_epoch": best_epoch,
        "best_val_log_loss": None if np.isnan(best_val_loss) else float(best_val_loss),
        "n_train_tracks": len(per_track),
        "n_train_windows": int(per_track.sum()),
        "max_windows_per_track": cap,
        "train_windows_per_epoch": int(per_track.clip(upper=cap).sum() if cap else per_track.sum()),
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
    """Train the transfer MLP with the run seed `seed` on the concatenated window features of `sources` (in order),
    over the usable tracks `tracks` (see FeatureStore.usable), one per config.aggregations, and keep the one of
    the lowest validation log loss. See the module doc."""
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
    windows = [
        net_window_features(
            source.net, store, usable, source.patch_frames, config.window_hop, torch_device,
            cache_path=window_cache_dir(out_dir, source.path, config.window_hop),
            head_genres=source.head_genres, progress=progress, amp=config.amp,
        )
        for source in nets
    ]
    window_ids = windows[0].track_ids
    split_of = tracks.set_index("track_id")["split"]
    genre_index = tracks.set_index("track_id")["genre"].map({g: i for i, g in enumerate(genres)})
    rows = Rows(
        features=torch.from_numpy(np.concatenate([np.asarray(w.features) for w in windows], axis=1)).to(torch_device),
        labels=pd.Series(window_ids).map(genre_index).to_numpy(dtype=np.int64),
        track_ids=window_ids,
        split=pd.Series(window_ids).map(split_of).to_numpy(),
    )
    candidates = fit_candidates(rows, tracks, genres, config, seed, progress)
    chosen, scores = choose_candidate(candidates, tracks, genres)

    name = "transfer MLP: " + " + ".join(source.label for source in nets)
    baselines = _write_baselines(out_dir, nets, windows, genres, split_of)
    spec = _mlp_spec(name, nets, windows, genres, config, seed, chosen, scores, window_ids[rows.split == "train"])
    state = {k: v.detach().cpu().contiguous() for k, v in chosen.fitted.model.state_dict().items()}
    with atomic_path(out_dir / "mlp.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": MLP_FORMAT})
    write_json_atomic(out_dir / "mlp.json", {**spec, "baselines": [vars(b) for b in baselines]})
    write_text_atomic(out_dir / "curves.csv", chosen.fitted.curves.to_csv(index=False))
    write_parquet_atomic(out_dir / "predictions.parquet", chosen.predictions)
    mark_done(out_dir, key, request=request)
    return TransferResult(out_dir, name, genres, chosen.predictions, chosen.fitted.curves, chosen.fitted.best_epoch,
                          baselines)


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
    )


def load_mlp(out_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Sequential, dict]:
    """The trained transfer MLP (eval mode) and its mlp.json, e.g. for prediction bundles."""
    out_dir = Path(out_dir)
    spec = read_json(out_dir / "mlp.json")
    model = build_mlp(spec["input_dim"], len(spec["genres"]), spec["hidden"], spec["dropout"])
    model.load_state_dict(load_file(str(out_dir / "mlp.safetensors")))
    return model.to(device).eval(), spec
