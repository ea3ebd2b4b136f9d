"""The plan of a run before it starts: its stages and counts, and a wall time estimated from throughputs
measured on this machine at start-up (`agf run` prints it first; `agf run --dry-run` prints it and stops).

Counts follow the grid as agf.pipeline.run_grid walks it (the one walk, agf.grid.walk_grid), nets shared between
cases counted once, the subsets of a task unavailable here (e without Essentia) left out as the run leaves them
out. Frames per track, and from them the feature store's size, come from the feature store when the track is
prepared, else from its duration cut to the segment: the track table's declared_duration (a manifest's duration
column, FMA's metadata), the synthetic corpus's clip length, the file's header (the first PROBED_FILES files;
the rest get their mean), else ASSUMED_TRACK_SECONDS; the plan says which.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pandas as pd
import torch

from agf.audio import Segment, decode_segment, write_audio
from agf.errors import AudioDecodeError
from agf.config import CROP_SECONDS, Config, FactorConfig, FeatureConfig
from agf.datasets.fma import OFFICIAL_SPLITS
from agf.datasets.synth import build_collection
from agf.datasets.table import SPLITS, TRAIN, VAL
from agf.device import resolve_device
from agf.factors.essentia_features import essentia_unavailable_reason
from agf.factors.sizing import fitting_artists, sized_factors
from agf.features import extractor_for
from agf.grid import grid_nets, grid_subsets, walk_grid
from agf.models import STN, count_params
from agf.selection import crossval_cost, selection_mode
from agf.store import ASSUMED_TRACK_SECONDS, FeatureStore, estimated_bytes
from agf.tasks import FACTOR_TASKS, GENRE_TASK
from agf.training.data import VAL_CROP_FRACTIONS, crops_per_track
from agf.training.spec import NetSpec, build_net, net_train_config, net_width
from agf.transfer.mlp_model import build_mlp
from agf.transfer.windows import window_starts

# Files whose headers are read for their duration when the track table has none; the rest get their mean.
PROBED_FILES = 200
# Seconds of a generated MP3 timed when no audio file of the collection is at hand.
PROBE_SECONDS = 10.0


@dataclass(frozen=True)
class NetPlan:
    """One net to train (shared by every case that uses it)."""

    spec: NetSpec
    seed: int
    epochs: int  # with patience (early stopping), the cap
    train_patches: int  # training crops per epoch: crops_per_track of each training track
    val_crops: int  # validation crops per epoch: every task is validated every epoch
    params: int


@dataclass(frozen=True)
class Throughput:
    """Speeds measured here at start-up (agf.plan.measure_throughput)."""

    decode_realtime: float  # seconds of audio decoded and turned into features per second, one worker
    train_patches_s: float  # training patches per second of a width-1 STN
    infer_windows_s: float  # window features per second of a width-1 STN (eval mode)
    mlp_windows_s: float  # transfer-MLP training windows per second
    stn_params: int  # parameters of the timed STN: other nets' speeds scale with their parameter counts


@dataclass(frozen=True)
class Plan:
    """What a run will do."""

    tracks: dict[str, int]  # usable (or listed) tracks per split
    to_prepare: int
    audio_seconds: float  # of the tracks still to prepare, cut to the segment
    store_bytes: int  # the feature store's arrays of every track (agf.plan.store_bytes)
    store_bytes_to_prepare: int  # of them, those of the tracks still to prepare
    lengths: str  # where the tracks' lengths come from (agf.plan.lengths_text)
    training_artists: int
    factors: FactorConfig  # as sized to the data
    factor_tasks: str
    nets: tuple[NetPlan, ...]
    transfers: int
    transfer_epochs: int
    windows_per_net: int  # window features of one net over every track
    mlp_windows_per_epoch: int  # training windows one transfer MLP sees per epoch
    warnings: tuple[str, ...]
    patience: int = 0  # train.patience: 0, every epoch trained; else the nets' epochs are caps
    crops_per_track: int = 1  # train.crops_per_track (0: from each track's length)
    crops_range: tuple[int, int] = (1, 1)  # fewest and most crops of a training track per epoch
    selection: str = ""  # how the model is chosen, when by cross-validation: its cost (agf.selection)
    selection_cost: float = 1.0  # the training cross-validation takes, in units of one fit on train

    def nets_line(self) -> str:
        """The nets and their budget: epochs (a cap with early stopping, and when it stops), crops per epoch and
        the rule that gave them."""
        epochs = sum(net.epochs for net in self.nets)
        budget = f"{epochs} epochs in all"
        if self.patience:
            budget = (f"at most {epochs} epochs in all: each stops after {self.patience} epochs without a lower "
                      f"validation loss (an MTN after {self.patience} x its tasks)")
        crops = f"{max((n.train_patches for n in self.nets), default=0)} training crops per epoch"
        low, high = self.crops_range
        if self.crops_per_track == 0:
            spread = f"{low}" if low == high else f"{low} to {high}"
            crops += f": one per {CROP_SECONDS:g} s of a track's audio, {spread} per track"
        elif self.crops_per_track > 1:
            crops += f": {self.crops_per_track} per track"
        return f"  nets: {len(self.nets)} ({budget}; {crops})"

    def stage_seconds(self, speed: Throughput, workers: int) -> dict[str, float]:
        """Estimated seconds per stage (factors not included: K-means, LDA and Essentia are not timed; prepare
        counts the tracks still to decode, the other stages all their work, finished or not)."""

        def slowdown(params: int) -> float:
            return max(1.0, params / speed.stn_params)

        nets = sum(net.epochs * slowdown(net.params) * (net.train_patches / speed.train_patches_s
                                                         + net.val_crops / speed.infer_windows_s)
                   for net in self.nets)
        windows = sum(self.windows_per_net * slowdown(net.params) / speed.infer_windows_s for net in self.nets)
        return {
            "prepare": self.audio_seconds / (speed.decode_realtime * workers),
            "nets": nets,
            "window features": windows,
            "transfer MLPs": self.transfers * self.transfer_epochs * self.mlp_windows_per_epoch / speed.mlp_windows_s,
        }

    def lines(self, speed: Throughput | None = None, workers: int = 1) -> list[str]:
        """The plan as printed: one line per stage, then the estimate and the warnings."""
        lines = [
            "plan:",
            "  tracks: " + ", ".join(f"{split} {n}" for split, n in self.tracks.items())
            + f"; {self.training_artists} training artists",
            f"  prepare: {self.to_prepare} tracks to decode ({self.audio_seconds / 3600:.2f} h of audio)",
            f"  feature store: about {self.store_bytes / 1e9:.2f} GB ({self.store_bytes_to_prepare / 1e9:.2f} GB "
            f"of it still to write); track lengths: {self.lengths}",
            f"  factors: tasks {self.factor_tasks or '-'}; {self.factors.n_words} words, {self.factors.n_topics} topics",
            self.nets_line(),
            f"  transfers: {self.transfers} MLPs x {self.transfer_epochs} epochs; {self.windows_per_net} windows per "
            f"net, {self.mlp_windows_per_epoch} training windows per MLP epoch",
        ]
        if speed is not None:
            stages = self.stage_seconds(speed, workers)
            lines.append(f"  estimated time: {_duration(sum(stages.values()))} ("
                         + ", ".join(f"{name} {_duration(s)}" for name, s in stages.items())
                         + "; factors not included; nets, windows and MLPs counted as if none were finished"
                         + ("; nets at their epoch caps: early stopping makes it less" if self.patience else "")
                         + ")")
            lines.append(f"    measured here: decode + features {speed.decode_realtime:.0f}x real time per worker, "
                         f"training {speed.train_patches_s:.0f} patches/s, window features "
                         f"{speed.infer_windows_s:.0f}/s, MLP {speed.mlp_windows_s:.0f} windows/s")
        if self.selection:
            total = ""
            if speed is not None:  # prepare is done once; nets, windows and MLPs cross-validation multiplies
                stages = self.stage_seconds(speed, workers)
                seconds = stages.get("prepare", 0.0) + self.selection_cost * (sum(stages.values())
                                                                              - stages.get("prepare", 0.0))
                total = f"; about {_duration(seconds)} in all"
            lines.append(f"  selection: {self.selection}{total}")
        lines += [f"  warning: {warning}" for warning in self.warnings]
        return lines


def _duration(seconds: float) -> str:
    """'1 h 05 min', '12 min', '40 s'."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


# Where a track's length comes from (track_frames), in the order they are tried.
STORED = "as stored"
DECLARED = "declared"
SYNTH_CLIP = "the synthetic clip length"
HEADER = "read from file headers"
HEADER_MEAN = "the mean of those headers"
ASSUMED = f"assumed {ASSUMED_TRACK_SECONDS:g} s each (no duration declared, no file header read)"


@dataclass(frozen=True)
class TrackFrames:
    """Frames of each track's log-mel (index track_id) and where each track's length came from."""

    frames: pd.Series
    sources: pd.Series  # STORED, DECLARED, SYNTH_CLIP, HEADER, HEADER_MEAN or ASSUMED, index track_id


def track_frames(tracks: pd.DataFrame, config: Config, store: FeatureStore | None) -> TrackFrames:
    """Frames of each track's log-mel: the store's for prepared tracks (read from its journals, writing nothing),
    else from its duration (_track_seconds) cut to the segment."""
    features = config.features
    ids = tracks["track_id"].astype(str)
    frames = pd.Series(np.nan, index=ids)
    sources = pd.Series(STORED, index=ids)
    if store is not None:
        stored = store.entries().set_index("track_id")["frames"]
        frames.update(stored[stored.index.isin(frames.index)].astype(float))
    todo = frames.isna().to_numpy()
    if todo.any():
        seconds, todo_sources = _track_seconds(tracks[todo], config)
        sources[todo] = todo_sources
        segment = Segment.of(features)
        samples = [segment.bounds(round(s * features.sample_rate), features.sample_rate) for s in seconds]
        frames[todo] = [1 + (stop - start) // features.hop_length for start, stop in samples]
    return TrackFrames(frames.astype(int), sources)


def _track_seconds(tracks: pd.DataFrame, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """Durations of unprepared tracks and where each came from: declared; else the synthetic clip length; else its
    file's header (the first PROBED_FILES of them; the rest get the mean of those read); else
    ASSUMED_TRACK_SECONDS."""
    declared = tracks.get("declared_duration", pd.Series(np.nan, tracks.index)).to_numpy(dtype=float)
    seconds, sources = declared.copy(), np.where(np.isnan(declared), ASSUMED, DECLARED).astype(object)
    undeclared = np.flatnonzero(np.isnan(declared))
    if config.dataset.kind == "synth":
        seconds[undeclared], sources[undeclared] = config.synth.clip_seconds, SYNTH_CLIP
        return seconds, sources
    probed = undeclared[:PROBED_FILES]
    headers = np.array([_header_seconds(path) or np.nan for path in tracks["audio_path"].iloc[probed]], dtype=float)
    read = probed[~np.isnan(headers)]
    seconds[read], sources[read] = headers[~np.isnan(headers)], HEADER
    if read.size:
        rest = undeclared[np.isnan(seconds[undeclared])]
        seconds[rest], sources[rest] = seconds[read].mean(), HEADER_MEAN
    seconds[np.isnan(seconds)] = ASSUMED_TRACK_SECONDS
    return seconds, sources


def lengths_text(sources: pd.Series) -> str:
    """Where the tracks' lengths came from, counted: '200 read from file headers, 1312 the mean of those headers'."""
    counts = sources.value_counts()
    order = (STORED, DECLARED, SYNTH_CLIP, HEADER, HEADER_MEAN, ASSUMED)
    return ", ".join(f"{counts[source]} {source}" for source in order if source in counts) or "no tracks"


def _frames_bytes(frames: pd.Series, features: FeatureConfig) -> int:
    """The store's bytes of the arrays of tracks of `frames` frames each (agf.store.estimated_bytes)."""
    seconds = frames.to_numpy(dtype=float) * features.hop_length / features.sample_rate
    return estimated_bytes(pd.DataFrame({"declared_duration": seconds}), features)


def store_bytes(tracks: pd.DataFrame, config: Config, store: FeatureStore | None = None) -> tuple[int, str]:
    """What the tracks' arrays take in the feature store (prepared tracks as stored, the others from their real
    durations: track_frames) and where their lengths came from (lengths_text): what `agf check` and the
    free-space check should size the store with."""
    lengths = track_frames(tracks, config, store)
    return _frames_bytes(lengths.frames, config.features), lengths_text(lengths.sources)


def _header_seconds(path: str) -> float | None:
    """The duration a file's header declares, or None when it cannot be read."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return container.duration / av.time_base if container.duration else None
    except Exception:  # an unreadable file is prepare's to report
        return None


def unrendered_synth_tracks(config: Config) -> pd.DataFrame:
    """The synthetic corpus's track table (ids, artists, their genre and official split) before its audio is
    rendered: what a plan needs, from the corpus's generative model alone."""
    collection = build_collection(config.synth)
    artists = [collection.artist(track.artist_id) for track in collection.tracks]
    return pd.DataFrame({
        "track_id": [str(track.track_id) for track in collection.tracks],
        "artist_id": [artist.artist_id for artist in artists],
        "genre": [artist.genre_id for artist in artists],
        "split": [OFFICIAL_SPLITS[artist.split] for artist in artists],
    })


def unavailable_tasks(tasks: Sequence[str]) -> dict[str, str]:
    """{task: why} of the artist-group tasks among `tasks` that cannot be built here: e when Essentia cannot be
    imported (agf.factors reports it unavailable and run_grid drops the subsets that use it). Not foreseen here:
    e unavailable because Essentia failed on every fit track (known once the factors are built)."""
    reason = essentia_unavailable_reason() if "e" in tasks else None
    return {"e": reason} if reason else {}


def selection_line(config: Config, tracks: pd.DataFrame) -> tuple[str, float]:
    """How the run will choose its model when by cross-validation and what that costs, in words and as a factor
    of one fit on train (('', 1.0) on validation)."""
    mode, reason = selection_mode(config, tracks)
    if mode == "validation":
        return "", 1.0
    folds, seeds, cost = config.select.folds, config.select.fold_seeds, crossval_cost(config, tracks)
    return (f"{folds}-fold cross-validation by artist over train + validation ({reason}): about {cost:.1f}x the "
            f"nets, transfers and time above, which count one fit on train (the folds train {seeds} "
            f"seed{'s' if seeds > 1 else ''} each on {folds - 1}/{folds} of train + validation, then every seed is "
            "fitted on all of it, every net for its whole epoch budget as in the folds); every choice on out-of-fold "
            "predictions"), cost


def make_plan(config: Config, tracks: pd.DataFrame, store: FeatureStore | None,
              prepared_ids: set[str] = frozenset()) -> Plan:
    """The plan of `agf run` over the track table `tracks` (the usable tracks once prepared)."""
    lengths = track_frames(tracks, config, store)
    frames = lengths.frames
    ids = tracks["track_id"].astype(str)
    split = tracks["split"].to_numpy()
    training_artists = int(tracks.loc[split == TRAIN, "artist_id"].nunique())
    factors, warnings = sized_factors(config.factors, fitting_artists(tracks, config.factors))
    wanted = [t for t in FACTOR_TASKS if t in "".join(grid_subsets(config.grid))]  # what run_grid builds
    unavailable = unavailable_tasks(wanted)
    warnings += [f"task {task} unavailable ({reason}); the run drops the subsets that use it"
                 for task, reason in unavailable.items()]
    factor_tasks = "".join(t for t in wanted if t not in unavailable)
    outputs = {GENRE_TASK: int(tracks["genre"].nunique()), **{t: factors.n_topics for t in factor_tasks}}
    n_mels = config.features.n_mels
    steps = walk_grid(config.grid, outputs, n_mels, unavailable)
    # as agf.training.loop.prepare_data: from the frames and the setting
    crops = crops_per_track(frames.to_numpy(), config.features.sample_rate / config.features.hop_length,
                            config.train.crops_per_track)
    train_crops = crops[split == TRAIN]
    nets = []
    for spec, seed in grid_nets(steps):
        train = net_train_config(spec, config.train)
        width = net_width(spec, config.train)
        with torch.device("meta"):
            params = count_params(build_net(spec, {t: outputs[t] for t in spec.tasks}, width, n_mels))
        nets.append(NetPlan(spec, seed, train.epochs, int(train_crops.sum()),
                            int((split == VAL).sum()) * len(VAL_CROP_FRACTIONS) * len(spec.tasks), params))
    patch, hop = config.train.patch_frames, config.transfer.window_hop
    windows = np.array([len(window_starts(max(1, f), patch, hop)) for f in frames])
    train_windows = windows[split == TRAIN]
    cap = config.transfer.max_windows_per_track
    unprepared = ~ids.isin(prepared_ids).to_numpy()
    selection, selection_cost = selection_line(config, tracks)
    return Plan(
        selection=selection, selection_cost=selection_cost,
        tracks={s: int((split == s).sum()) for s in SPLITS if (split == s).any()},
        to_prepare=int(unprepared.sum()),
        audio_seconds=float(frames[unprepared].sum() * config.features.hop_length / config.features.sample_rate),
        store_bytes=_frames_bytes(frames, config.features),
        store_bytes_to_prepare=_frames_bytes(frames[unprepared], config.features),
        lengths=lengths_text(lengths.sources),
        training_artists=training_artists,
        factors=factors,
        factor_tasks=factor_tasks,
        nets=tuple(nets),
        transfers=len(steps),
        transfer_epochs=config.transfer.epochs,
        windows_per_net=int(windows.sum()),
        mlp_windows_per_epoch=int(np.minimum(train_windows, cap).sum() if cap else train_windows.sum()),
        warnings=tuple(warnings),
        patience=config.train.patience,
        crops_per_track=config.train.crops_per_track,
        crops_range=(int(train_crops.min()), int(train_crops.max())) if train_crops.size else (1, 1),
    )


def _rate(step: Callable[[], object], items: float, warmup: int = 3, min_seconds: float = 0.5) -> float:
    """Items per second of `step` (each call handles `items`), after `warmup` calls (kernels are chosen and
    memory allocated in the first ones), timed over at least min_seconds."""
    for _ in range(warmup):
        step()
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_seconds or calls == 0:
        step()
        calls += 1
    return items * calls / elapsed


def measure_throughput(config: Config, audio_path: str | None = None) -> Throughput:
    """Time decoding + features (on `audio_path`, or a generated MP3), a few training steps of a width-1 STN,
    its window features and the transfer MLP, on the configured device: a few seconds on a CPU."""
    features: FeatureConfig = config.features
    with tempfile.TemporaryDirectory() as scratch:
        probe = str(Path(scratch) / "probe.mp3")
        noise = np.random.default_rng(0).standard_normal(int(PROBE_SECONDS * 44100)).astype(np.float32)
        write_audio(probe, 0.1 * noise, 44100)
        try:
            decode_segment(audio_path or probe, features.sample_rate, Segment.of(features))
        except AudioDecodeError:  # the collection's file is prepare's to report; time the probe
            audio_path = None
        audio_path = audio_path or probe
        extract = extractor_for(features)
        extract(np.zeros(features.sample_rate, np.float32))  # builds the mel filters once

        def decode_step() -> None:
            extract(decode_segment(audio_path, features.sample_rate, Segment.of(features))[0])

        seconds = decode_segment(audio_path, features.sample_rate, Segment.of(features))[0].size / features.sample_rate
        decode_realtime = _rate(decode_step, seconds, warmup=1, min_seconds=0.0)
    device = resolve_device(config.run.device)
    train = config.train
    net = STN(8, 1.0, features.n_mels).to(device)
    memory = torch.channels_last if train.channels_last else torch.contiguous_format
    net = net.to(memory_format=memory)
    batch = torch.randn(train.batch_size, 1, train.patch_frames, features.n_mels, device=device)
    batch = batch.contiguous(memory_format=memory)
    target = torch.randint(0, 8, (train.batch_size,), device=device)
    optimizer = torch.optim.Adam(net.parameters())

    def train_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=train.amp):
            loss = torch.nn.functional.cross_entropy(net(batch), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def infer_step() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.transfer.amp):
            net.features(batch)

    train_rate = _rate(train_step, train.batch_size)
    net.eval()
    infer_rate = _rate(infer_step, train.batch_size)
    mlp = build_mlp(net.feature_dim, 8, config.transfer.hidden, config.transfer.dropout).to(device)
    mlp_optimizer = torch.optim.Adam(mlp.parameters(), foreach=True)  # as agf.transfer.mlp.train_mlp
    windows = torch.randn(config.transfer.batch_size, net.feature_dim, device=device)
    labels = torch.randint(0, 8, (config.transfer.batch_size,), device=device)

    def mlp_step() -> None:
        loss = torch.nn.functional.cross_entropy(mlp(windows), labels)
        mlp_optimizer.zero_grad()
        loss.backward()
        mlp_optimizer.step()

    return Throughput(decode_realtime, train_rate, infer_rate, _rate(mlp_step, config.transfer.batch_size),
                      count_params(net))
