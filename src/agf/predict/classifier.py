"""GenreClassifier: a bundle loaded once, applied to files or waveforms of any rate, length and channel count.

A track's prediction aggregates every window covering it (the windows of the transfer stage: patch_frames
long, every hop_frames, plus one flush with the end). Every member of the bundle (agf.predict.bundle) scores the
same windows: its transfer aggregates them as the transfer did (BundleMember.aggregation, see agf.transfer.mlp):
the mean of the windows' genre probabilities ('probs'), of their logarithms, renormalised ('log_probs'), or the
pooled MLP on the mean and standard deviation of the window features ('pooled'); its head net's genre head gives
the mean of its window probabilities (as the transfer's baselines); a 'blend' member averages the two. Window
features come from the source nets (under bf16 autocast when the bundle says so, rounded to float16 as the
transfer stage stored them). The members' track probabilities are combined (agf.aggregation.combine_members) and
temperature-scaled by the bundle's calibration (fitted on validation by the evaluation, agf.calibration).
predict_many decodes the next files in worker processes while the nets compute, batches windows across files, and
holds at most one batch of windows and a few decoded files at a time; a file is decoded to its log-mel a block at
a time and a long log-mel is spooled to a file (agf.predict.decoding), so a long file or a huge directory runs in
memory independent of their length.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from agf.audio import Segment, float_samples, to_mono
from agf.calibration import apply_temperature
from agf.device import resolve_device
from agf.errors import PredictError
from agf.aggregation import combine_members, pool_moments, probs_from_mean_terms, window_terms
from agf.parallel import available_cores, map_ordered
from agf.predict.bundle import Bundle, BundleMember, load_bundle
from agf.predict.decoding import Decoded, DecodeJob, Mel, decode_file, decode_samples, mel_rows
from agf.transfer.windowing import genre_head_logits, window_batch, window_starts

WAVEFORM = "<waveform>"
# At most this many decoding processes by default (beyond it, one GPU is rarely waiting for audio).
MAX_DECODE_WORKERS = 8
# Files decoded ahead of the nets: enough to keep the decoders busy while the nets score a batch (a 512-window
# batch is about 8 clips of 30 s), few enough to bound memory (each holds at most 1 MB of log-mel in memory,
# agf.predict.decoding.MEMORY_FRAMES; a longer one is spooled to a file).
DECODE_AHEAD = 32


@dataclass(frozen=True)
class Prediction:
    """The genre probabilities of one input, or why it could not be classified."""

    source: str  # the file path as given, or '<waveform>'
    genres: tuple[str, ...]
    probabilities: np.ndarray | None  # (len(genres),) float64 summing to 1; None when it failed
    n_windows: int = 0
    duration: float = 0.0  # seconds of audio classified
    error: str | None = None
    notes: tuple[str, ...] = ()  # what the decoder reported about a file it still decoded (damaged frames, ...)

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, float]:
        """{genre: probability}, in the model's genre order."""
        if self.probabilities is None:
            raise PredictError(f"{self.source}: {self.error}")
        return {g: float(p) for g, p in zip(self.genres, self.probabilities)}

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The k most probable genres with their probabilities, most probable first."""
        ranked = sorted(self.as_dict().items(), key=lambda item: -item[1])
        return ranked[: max(1, k)]


def default_decode_workers() -> int:
    """Decoding processes beside the nets: all cores but one, at most MAX_DECODE_WORKERS; 0 on one core."""
    return min(MAX_DECODE_WORKERS, available_cores() - 1)


@dataclass
class _Pending:
    """A track whose windows are being scored: the running sum of its window terms (see _window_terms)."""

    item: Decoded
    remaining: int = 0
    n_windows: int = 0
    total: np.ndarray | None = field(default=None, repr=False)


class GenreClassifier:
    """A genre model (see agf.predict.bundle) on one device, loaded once and reused for every input."""

    def __init__(self, bundle: Bundle, device: str | torch.device = "auto", batch_windows: int = 512,
                 amp: bool | None = None) -> None:
        if batch_windows < 1:
            raise PredictError(f"batch_windows must be at least 1, got {batch_windows}")
        self.bundle = bundle
        self.device = resolve_device(device)
        self.batch_windows = batch_windows
        self.amp = bundle.amp if amp is None else amp
        self._memory_format = torch.channels_last if self.amp else torch.contiguous_format
        for member in bundle.members:
            for source in member.nets:
                source.net.to(self.device, memory_format=self._memory_format).eval()
            if member.mlp is not None:
                member.mlp.to(self.device).eval()
        # Each member's head columns in the bundle's genre order (None without a head).
        self._head_columns = [None if m.head_genres is None else [m.head_genres.index(g) for g in bundle.genres]
                              for m in bundle.members]

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto", batch_windows: int = 512,
             amp: bool | None = None) -> GenreClassifier:
        """Load a bundle directory made by `agf export` (checked; never unpickled)."""
        return cls(load_bundle(path), device, batch_windows, amp)

    @property
    def genres(self) -> tuple[str, ...]:
        return self.bundle.genres

    def predict(self, audio: str | Path | np.ndarray, sr: int | None = None,
                max_duration: float | None = None) -> dict[str, float]:
        """{genre: probability} of one file, or of a waveform ((n,) or (channels, n) samples at rate `sr`: floats in
        [-1, 1], or integer PCM (int16, int32, int8, uint8), scaled to [-1, 1)).

        Raises PredictError for a file that cannot be decoded, audio shorter than one window, silence, a file
        shorter than its header declares, or a waveform of another dtype.
        """
        if isinstance(audio, (str, Path)) and sr is not None:
            raise PredictError("sr is for waveforms; a file's sample rate is read from the file")
        with tempfile.TemporaryDirectory(prefix="agf-predict-") as spool_dir:
            if isinstance(audio, (str, Path)):
                decoded = decode_file(DecodeJob(str(audio), self.bundle.features, max_duration, spool_dir))
                if decoded.error is not None:
                    raise PredictError(f"{audio}: {decoded.error}")
            else:
                decoded = self._decode_waveform(np.asarray(audio), sr, max_duration, spool_dir)
            prediction = next(self._score([decoded]))
        return prediction.as_dict()

    def _decode_waveform(self, samples: np.ndarray, sr: int | None, max_duration: float | None,
                         spool_dir: str) -> Decoded:
        """A waveform as the nets take it: mono, resampled, cut to max_duration, then to the features' segment."""
        if sr is None or sr <= 0:
            raise PredictError("a waveform needs its sample rate: predict(samples, sr=44100)")
        if samples.ndim == 2 and samples.shape[0] > samples.shape[1]:
            raise PredictError(f"waveform of shape {samples.shape}: pass (n,) mono or (channels, n) samples")
        try:
            samples = float_samples(samples)
            if not np.isfinite(samples).all():
                raise PredictError("the waveform holds NaN or infinite samples")
            mono = to_mono(samples, sr, self.bundle.features.sample_rate)
        except ValueError as exc:
            raise PredictError(str(exc)) from None
        rate = self.bundle.features.sample_rate
        if max_duration is not None:
            mono = mono[: int(round(max_duration * rate))]
        start, stop = Segment.of(self.bundle.features).bounds(mono.size, rate)
        return decode_samples(WAVEFORM, mono[start:stop], self.bundle.features, spool_dir=spool_dir)

    def predict_many(self, paths: Iterable[str | Path], max_duration: float | None = None, workers: int = 0,
                     progress: bool = False, total: int | None = None) -> Iterator[Prediction]:
        """One Prediction per path, in order, as they finish; a bad file gives a Prediction with its error.

        With `workers` > 0 (e.g. default_decode_workers()), that many processes decode the next files while the
        nets compute; they are started with 'spawn', so a script using them needs `if __name__ == "__main__":`.
        """
        with tempfile.TemporaryDirectory(prefix="agf-predict-") as spool_dir:
            jobs = (DecodeJob(str(p), self.bundle.features, max_duration, spool_dir) for p in paths)
            decoded = map_ordered(decode_file, jobs, workers, in_flight=DECODE_AHEAD)
            with tqdm(total=total, unit="file", desc="predict", disable=not progress, dynamic_ncols=True) as bar:
                for prediction in self._score(decoded):
                    bar.update(1)
                    yield prediction

    def window_probabilities(self, mel: np.ndarray) -> np.ndarray:
        """(n_windows, n_genres) probabilities of every window of one (frames, n_mels) log-mel: each member's (its
        window MLP's, its head's or their mean) combined as the bundle combines tracks, not temperature-scaled (a
        pooled MLP classifies whole tracks only)."""
        if any(m.uses_transfer and m.aggregation.is_pooled for m in self.bundle.members):
            raise PredictError("this model classifies whole tracks (pooled window features): no window probabilities")
        starts = window_starts(mel.shape[0], self.bundle.patch_frames, self.bundle.hop_frames)
        return np.concatenate([self._combined_window_probs(window_batch(mel, starts[i: i + self.batch_windows],
                                                                        self.bundle.patch_frames))
                               for i in range(0, len(starts), self.batch_windows)])

    def track_probabilities(self, mean_terms: np.ndarray) -> np.ndarray:
        """A track's genre probabilities from the mean of its window terms (_window_terms): each member's, as its
        transfer and its head's baseline did, combined and calibrated by the bundle's temperature: what the
        evaluation scored."""
        bounds = np.cumsum([self._member_width(member) for member in self.bundle.members])[:-1]
        probs = [self._member_probs(member, terms)
                 for member, terms in zip(self.bundle.members, np.split(mean_terms, bounds))]
        return apply_temperature(combine_members(probs, self.bundle.combination)[None, :], self.bundle.temperature)[0]

    def _member_probs(self, member: BundleMember, mean_terms: np.ndarray) -> np.ndarray:
        """A member's track probabilities from the mean of its window terms (its transfer's, then its head's)."""
        parts = []
        if member.uses_transfer:
            parts.append(self._transfer_probs(member, mean_terms[: self._transfer_width(member)]))
        if member.uses_head:
            parts.append(mean_terms[-len(self.genres):])
        return np.mean(parts, axis=0)

    def _transfer_probs(self, member: BundleMember, mean_terms: np.ndarray) -> np.ndarray:
        """A member's transfer's track probabilities from the mean of its window terms, aggregated as it was."""
        if not member.aggregation.is_pooled:
            return probs_from_mean_terms(mean_terms, member.aggregation)
        pooled = torch.from_numpy(pool_moments(mean_terms)[None, :]).float().to(self.device)
        with torch.inference_mode():
            return torch.softmax(member.mlp(pooled), dim=1)[0].cpu().numpy().astype(np.float64)

    def _batch(self, windows: np.ndarray) -> torch.Tensor:
        """(n, 1, patch, n_mels) input of (n, patch, n_mels) windows, on the device in the nets' memory format."""
        return torch.from_numpy(windows).to(self.device).unsqueeze(1).contiguous(memory_format=self._memory_format)

    def _member_outputs(self, number: int, batch: torch.Tensor) -> tuple[torch.Tensor | None, np.ndarray | None]:
        """Member `number`'s (n, D) float32 window features, rounded to float16 as the transfer stored them (its
        nets' in order; None without a transfer), and (n, n_genres) float32 head probabilities in the bundle's genre
        order (None without a head). Only the nets its output uses run."""
        member = self.bundle.members[number]
        features, head = [], None
        with torch.inference_mode():
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                for index, source in enumerate(member.nets):
                    if not (member.uses_transfer or index == member.head):
                        continue
                    activations = source.net.features(batch)
                    if member.uses_transfer:
                        features.append(activations.float().half())
                    if index == member.head:
                        logits = genre_head_logits(source.net, activations).float()
                        head = torch.softmax(logits, dim=1)[:, self._head_columns[number]].cpu().numpy()
            return (torch.cat(features, dim=1).float() if member.uses_transfer else None), head

    def _combined_window_probs(self, windows: np.ndarray) -> np.ndarray:
        """(n, n_genres) probabilities of (n, patch, n_mels) windows: the members' combined (window MLPs only)."""
        batch = self._batch(windows)
        probs = []
        for number, member in enumerate(self.bundle.members):
            features, head = self._member_outputs(number, batch)
            parts = ([self._mlp_probs(member, features)] if features is not None else []) + \
                ([head] if head is not None else [])
            probs.append(np.mean(parts, axis=0))
        return combine_members(probs, self.bundle.combination)

    def _mlp_probs(self, member: BundleMember, features: torch.Tensor) -> np.ndarray:
        """(n, n_genres) float32 probabilities of a member's window MLP on (n, D) window features."""
        with torch.inference_mode():
            return torch.softmax(member.mlp(features), dim=1).cpu().numpy()

    def _window_terms(self, windows: np.ndarray) -> np.ndarray:
        """What a track averages over its windows (float64 rows), member by member: for its transfer, each window's
        features and their squares when pooled (the mean and std follow from their means), else
        agf.aggregation.window_terms of its window MLP's probabilities; then its head's window probabilities."""
        batch = self._batch(windows)
        terms = []
        for number, member in enumerate(self.bundle.members):
            features, head = self._member_outputs(number, batch)
            if features is not None and member.aggregation.is_pooled:
                values = features.cpu().numpy().astype(np.float64)
                terms.append(np.concatenate([values, values**2], axis=1))
            elif features is not None:
                terms.append(window_terms(self._mlp_probs(member, features), member.aggregation))
            if head is not None:
                terms.append(head.astype(np.float64))
        return np.concatenate(terms, axis=1)

    def _too_short(self, item: Decoded) -> Decoded:
        """The item, or its failure when it is shorter than one window."""
        if item.error is None and (item.mel is None or item.mel.shape[0] < self.bundle.patch_frames):
            return Decoded(item.source, None, item.duration,
                           f"{item.duration:.2f} s of audio is shorter than the model's "
                           f"{self.bundle.window_seconds:.2f}-s window", item.notes)
        return item

    def _score(self, items: Iterable[Decoded]) -> Iterator[Prediction]:
        """Predictions of decoded inputs, in order: windows batched across inputs, batch_windows at a time, each
        batch's frames read from its log-mel as it is cut (a spooled log-mel is removed once its track is done)."""
        waiting: deque[_Pending] = deque()
        batch: list[tuple[_Pending, np.ndarray]] = []
        size = 0
        for raw in items:
            pending = _Pending(self._too_short(raw))
            waiting.append(pending)
            if pending.item.error is None:
                mel = pending.item.mel
                starts = window_starts(mel.shape[0], self.bundle.patch_frames, self.bundle.hop_frames)
                pending.remaining = pending.n_windows = len(starts)
                pending.total = np.zeros(self._terms_width)
                for first in range(0, len(starts), self.batch_windows):
                    piece = self._windows(mel, starts[first: first + self.batch_windows])
                    batch.append((pending, piece))
                    size += len(piece)
                    if size >= self.batch_windows:
                        self._run(batch)
                        batch, size = [], 0
            yield from self._finished(waiting)
        if batch:
            self._run(batch)
        yield from self._finished(waiting)

    def _windows(self, mel: Mel, starts: np.ndarray) -> np.ndarray:
        """(n, patch, n_mels) float32 windows starting at `starts` (ascending), read from the frames they span."""
        patch = self.bundle.patch_frames
        return window_batch(mel_rows(mel, int(starts[0]), int(starts[-1]) + patch), starts - starts[0], patch)

    def _transfer_width(self, member: BundleMember) -> int:
        """The width of a member's transfer's window terms: the MLP's input for 'pooled' (features and squares),
        else the genres; 0 without a transfer."""
        if not member.uses_transfer:
            return 0
        return member.mlp_input_dim if member.aggregation.is_pooled else len(self.genres)

    def _member_width(self, member: BundleMember) -> int:
        """The width of a member's window terms: its transfer's, then its head's (the genres)."""
        return self._transfer_width(member) + (len(self.genres) if member.uses_head else 0)

    @property
    def _terms_width(self) -> int:
        """The width of a window's terms: every member's."""
        return sum(self._member_width(member) for member in self.bundle.members)

    def _run(self, batch: list[tuple[_Pending, np.ndarray]]) -> None:
        """Score one batch of windows and add each window's terms to its track's sum."""
        terms = self._window_terms(np.concatenate([windows for _, windows in batch]))
        offset = 0
        for pending, windows in batch:
            pending.total += terms[offset: offset + len(windows)].sum(axis=0)
            pending.remaining -= len(windows)
            offset += len(windows)

    def _finished(self, waiting: deque[_Pending]) -> Iterator[Prediction]:
        """Pop and yield the leading tracks whose windows are all scored."""
        while waiting and waiting[0].remaining == 0:
            pending = waiting.popleft()
            item = pending.item
            item.discard()
            if item.error is not None:
                yield Prediction(item.source, self.genres, None, 0, item.duration, item.error, item.notes)
                continue
            yield Prediction(item.source, self.genres, self.track_probabilities(pending.total / pending.n_windows),
                             pending.n_windows, item.duration, notes=item.notes)
