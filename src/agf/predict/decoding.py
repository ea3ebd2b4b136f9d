"""Prediction's input side: a file or waveform -> the log-mel the nets take, in memory independent of its length.

A file is decoded, resampled and turned into log-mel frames a block at a time (agf.audio.decode_segment_into,
agf.features.LogMelStream): no step holds the whole signal, its spectrum or its float32 log-mel. The frames
are kept as float16 dB before the top_db floor, in memory up to MEMORY_FRAMES (a 30-s clip stays there) and in
a spool file beyond; the floor (the track's loudest value - top_db) is known at the end and applied as windows
are read (`SpooledMel.rows`), which gives the same float16 values as flooring in float32 first, since rounding
to float16 keeps order. Windows cannot be scored before the end: every window depends on that floor.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from agf.audio import Segment, decode_segment_into, level_db, silence_reason, truncation
from agf.config import FeatureConfig
from agf.errors import AgfError
from agf.features import LogMelStream, db_floor, extractor_for
from agf.predict.inputs import AUDIO_SUFFIXES

# Log-mel frames held in memory before they go to a spool file: 4,096 frames (95 s at the default 22,050 Hz and
# hop 512) of float16 are 1 MB for 128 bands.
MEMORY_FRAMES = 4096


@dataclass(frozen=True)
class SpooledMel:
    """A track's (frames, n_mels) float16 log-mel in a spool file, before its top_db floor: read a range at a time."""

    path: str
    shape: tuple[int, int]
    floor: np.float16  # the top_db floor, applied as rows are read

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as the feature store would hold them: (stop - start, n_mels) float16, floored."""
        n_mels = self.shape[1]
        with open(self.path, "rb") as handle:
            handle.seek(start * n_mels * 2)
            frames = np.fromfile(handle, dtype=np.float16, count=(stop - start) * n_mels)
        return np.maximum(frames.reshape(-1, n_mels), self.floor)

    def discard(self) -> None:
        """Remove the spool file."""
        Path(self.path).unlink(missing_ok=True)


Mel = np.ndarray | SpooledMel  # a log-mel in memory (float16, floored) or spooled


def mel_rows(mel: Mel, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) of a log-mel, in memory or spooled."""
    return mel.rows(start, stop) if isinstance(mel, SpooledMel) else mel[start:stop]


@dataclass(frozen=True)
class Decoded:
    """One input as the nets take it: its log-mel, or the reason it has none."""

    source: str
    mel: Mel | None  # (frames, n_mels) float16, as the feature store holds it
    duration: float = 0.0
    error: str | None = None
    notes: tuple[str, ...] = ()

    def discard(self) -> None:
        """Remove the spool file of a spooled log-mel (nothing to do for one in memory)."""
        if isinstance(self.mel, SpooledMel):
            self.mel.discard()


@dataclass(frozen=True)
class DecodeJob:
    """What a decoding process needs for one file; spool_dir: where a long log-mel is spooled (None: the
    system's temporary directory)."""

    path: str
    features: FeatureConfig
    max_duration: float | None
    spool_dir: str | None = None


class MelWriter:
    """A sink for decoded samples (agf.audio.SampleSink): their log-mel frames block by block (float16 dB before
    the floor, spooled past MEMORY_FRAMES), their loudest frame value and their sum of squares (the RMS level)."""

    def __init__(self, features: FeatureConfig, spool_dir: str | None) -> None:
        self._features = features
        self._spool_dir = spool_dir
        self._stream = LogMelStream(extractor_for(features))
        self._held: list[np.ndarray] = []  # blocks in memory, until the spool file opens
        self._held_frames = 0
        self._spool_path: str | None = None
        self._spool_file: BinaryIO | None = None
        self._max_db = np.float32(-np.inf)
        self._square_sum = 0.0

    def add(self, samples: np.ndarray) -> None:
        """Take the next mono samples."""
        self._square_sum += float(np.dot(samples, samples))
        for block in self._stream.add(samples):
            self._keep(block)

    def _keep(self, block: np.ndarray) -> None:
        """Keep one block of frames (float32 dB) as float16, in memory or in the spool file."""
        if not block.size:
            return
        self._max_db = max(self._max_db, block.max())
        frames = block.astype(np.float16)
        self._held.append(frames)
        self._held_frames += len(frames)
        if self._spool_file is None and self._held_frames > MEMORY_FRAMES:
            handle, self._spool_path = tempfile.mkstemp(prefix="agf-mel-", suffix=".f16", dir=self._spool_dir)
            self._spool_file = os.fdopen(handle, "wb")
        if self._spool_file is not None:
            for held in self._held:
                held.tofile(self._spool_file)
            self._held = []

    def discard(self) -> None:
        """Drop the frames and remove the spool file."""
        self._held = []
        if self._spool_file is not None:
            self._spool_file.close()
            Path(str(self._spool_path)).unlink(missing_ok=True)
            self._spool_file = self._spool_path = None

    def decoded(self, source: str, notes: tuple[str, ...] = ()) -> Decoded:
        """The samples taken as the nets take them: their log-mel, or why they have none (none at all, or
        silence: the rule and threshold prepare flags 'silent' tracks with)."""
        n_samples = self._stream.n_samples
        seconds = n_samples / self._features.sample_rate
        rms = level_db(float(np.sqrt(self._square_sum / n_samples))) if n_samples else 0.0
        silent = silence_reason(rms, self._features.silence_rms_db)
        if not n_samples or silent:
            self.discard()
            return Decoded(source, None, seconds, f"silent: {silent}" if n_samples else "no samples", notes)
        self._keep(self._stream.finish())
        floor = np.float16(db_floor(self._max_db, self._features.top_db))
        if self._spool_file is None:
            return Decoded(source, np.maximum(np.concatenate(self._held), floor), seconds, None, notes)
        self._spool_file.close()
        mel = SpooledMel(str(self._spool_path), (self._held_frames, self._features.n_mels), floor)
        return Decoded(source, mel, seconds, None, notes)


def decode_samples(source: str, samples: np.ndarray, features: FeatureConfig, notes: tuple[str, ...] = (),
                   spool_dir: str | None = None) -> Decoded:
    """Mono samples at features.sample_rate as the nets take them (see MelWriter.decoded)."""
    writer = MelWriter(features, spool_dir)
    writer.add(np.asarray(samples, dtype=np.float32))
    return writer.decoded(source, notes)


def decode_file(job: DecodeJob) -> Decoded:
    """Decode one file to its log-mel (run in a worker process); a bad file gives its reason, never an error. A
    file shorter than its own header declares is truncated (agf.audio.truncation, as prepare flags it)."""
    if not Path(job.path).exists():
        return Decoded(job.path, None, error="no such file or directory")
    if Path(job.path).is_dir():
        suffixes = ", ".join(sorted(AUDIO_SUFFIXES))
        return Decoded(job.path, None, error=f"a directory without audio files (searched for {suffixes})")
    try:
        writer, info = decode_segment_into(job.path, job.features.sample_rate, Segment.of(job.features),
                                           lambda: MelWriter(job.features, job.spool_dir), job.max_duration)
    except AgfError as exc:
        return Decoded(job.path, None, error=getattr(exc, "reason", str(exc)))
    truncated = truncation(info)
    if truncated:
        writer.discard()
        return Decoded(job.path, None, info.duration, f"truncated: {truncated}", info.notes)
    return writer.decoded(job.path, info.notes)
