"""Per-track spectral features: the log-mel spectrogram (the nets' input) and MFCCs (the m/d dictionaries' input).

Computes what librosa computes (centered frames with zero padding, periodic Hann window, power spectrum, Slaney
mel filters, power_to_db with ref 1.0, amin 1e-10 and top_db; MFCC as the orthonormal DCT-II of the log-mel),
to within float32 rounding (< 1e-3 dB), but with torch's STFT and matmuls, which are faster. The mel filters are
built here with NumPy, value for value as librosa.filters.mel builds them, so that computing a log-mel imports
neither librosa's filters nor SciPy (prediction does not load them). Torch's thread count is the caller's to set.

`LogMelStream` computes the same frames from a signal that arrives in pieces (prediction decodes a file a block
at a time), before the top_db floor: that floor is relative to the whole track's loudest value, known only at
its end (`db_floor`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import torch

from agf.config import FeatureConfig

_AMIN = 1e-10
# Frames a LogMelStream computes at a time (1024 hops of 512 samples: 24 s at 22,050 Hz; 0.5 MB of log-mel).
STREAM_BLOCK_FRAMES = 1024
# The Slaney mel scale (librosa's htk=False): linear below 1 kHz, logarithmic above.
_SLANEY_STEP_HZ = 200.0 / 3
_SLANEY_LOG_HZ = 1000.0
_SLANEY_LOG_MEL = _SLANEY_LOG_HZ / _SLANEY_STEP_HZ
_SLANEY_LOG_STEP = np.log(6.4) / 27.0


@dataclass
class TrackFeatures:
    """One track's frame-level features, time-major."""

    mel: np.ndarray  # (frames, n_mels) float16, log-mel in dB
    mfcc: np.ndarray  # (frames, n_mfcc) float32


def hz_to_mel(frequencies: np.ndarray) -> np.ndarray:
    """Hz -> mels on the Slaney scale (librosa.hz_to_mel with htk=False)."""
    hz = np.asarray(frequencies, dtype=np.float64)
    log_part = _SLANEY_LOG_MEL + np.log(np.maximum(hz, _SLANEY_LOG_HZ) / _SLANEY_LOG_HZ) / _SLANEY_LOG_STEP
    return np.where(hz >= _SLANEY_LOG_HZ, log_part, hz / _SLANEY_STEP_HZ)


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Mels on the Slaney scale -> Hz (librosa.mel_to_hz with htk=False)."""
    mel = np.asarray(mels, dtype=np.float64)
    log_part = _SLANEY_LOG_HZ * np.exp(_SLANEY_LOG_STEP * (np.maximum(mel, _SLANEY_LOG_MEL) - _SLANEY_LOG_MEL))
    return np.where(mel >= _SLANEY_LOG_MEL, log_part, _SLANEY_STEP_HZ * mel)


def mel_filters(config: FeatureConfig) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) float32 Slaney-normalised triangular mel filters: librosa.filters.mel(htk=False,
    norm='slaney') computed the same way (its float32 triangles, then the area normalisation)."""
    fft_hz = np.fft.rfftfreq(n=config.n_fft, d=1.0 / config.sample_rate)
    fmax = config.sample_rate / 2 if config.fmax is None else config.fmax
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(config.fmin), hz_to_mel(fmax), config.n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = np.subtract.outer(edges_hz, fft_hz)
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    triangles = np.maximum(0, np.minimum(rising, falling)).astype(np.float32)
    area_norm = 2.0 / (edges_hz[2:] - edges_hz[:-2])
    return (triangles * area_norm[:, None]).astype(np.float32)


def power_db(power: np.ndarray) -> np.ndarray:
    """Power -> dB with ref 1.0 and amin 1e-10, before any top_db floor (librosa.power_to_db's first step)."""
    return 10.0 * np.log10(np.maximum(_AMIN, power))


def db_floor(max_db: float, top_db: float) -> np.float32:
    """The top_db floor of a track whose loudest log-mel value is max_db: power_to_db's max - top_db, in float32."""
    return np.float32(max_db) - np.float32(top_db)


class SpectralExtractor:
    """Built once per FeatureConfig (mel basis and window preloaded, the DCT matrix on first use), called per track."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self._window = torch.hann_window(config.n_fft, periodic=True, dtype=torch.float32)
        self._mel_basis_t = torch.from_numpy(np.ascontiguousarray(mel_filters(config).T))

    @cached_property
    def _dct_t(self) -> torch.Tensor:
        """The (n_mels, n_mfcc) orthonormal DCT-II matrix (SciPy's, imported only for MFCCs)."""
        import scipy.fft

        dct = scipy.fft.dct(np.eye(self.config.n_mels), type=2, norm="ortho", axis=0)[: self.config.n_mfcc]
        return torch.from_numpy(np.ascontiguousarray(dct.T, dtype=np.float32))

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for `n_samples` samples: 1 + n_samples // hop_length."""
        return 1 + n_samples // self.config.hop_length

    def frames_db(self, padded: np.ndarray) -> np.ndarray:
        """(frames, n_mels) float32 log-mel in dB, before the top_db floor, of the frames that lie wholly inside
        `padded` (already padded samples: frame i starts at sample i * hop_length)."""
        spectrum = torch.stft(
            torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32)),
            n_fft=self.config.n_fft,
            hop_length=self.config.hop_length,
            window=self._window,
            center=False,
            return_complex=True,
        )
        power = (spectrum * spectrum.conj()).real  # |X|^2, (bins, frames)
        return power_db((power.T @ self._mel_basis_t).numpy())

    def log_mel(self, samples: np.ndarray) -> np.ndarray:
        """Mono samples at config.sample_rate -> (frames, n_mels) float32 log-mel power in dB."""
        signal = np.asarray(samples, dtype=np.float32)
        if signal.ndim != 1:
            raise ValueError(f"samples must be 1-D mono, got shape {signal.shape}")
        # Centered frames, as librosa's center=True with pad_mode='constant' (also for input shorter than n_fft).
        half = self.config.n_fft // 2
        log_spec = self.frames_db(np.pad(signal, (half, half)))
        return np.maximum(log_spec, db_floor(log_spec.max(), self.config.top_db))

    def mfcc(self, log_mel: np.ndarray) -> np.ndarray:
        """(frames, n_mels) log-mel in dB -> (frames, n_mfcc) float32 MFCCs (orthonormal DCT-II)."""
        return (torch.tensor(log_mel, dtype=torch.float32) @ self._dct_t).numpy()

    def __call__(self, samples: np.ndarray) -> TrackFeatures:
        """Mono samples at config.sample_rate -> the track's log-mel (float16) and MFCCs."""
        log_mel = self.log_mel(samples)
        return TrackFeatures(mel=log_mel.astype(np.float16), mfcc=self.mfcc(log_mel))


class LogMelStream:
    """The log-mel of a mono signal fed in pieces of any size: frame for frame what SpectralExtractor.log_mel
    computes for the whole signal, before the top_db floor, handed out block_frames frames at a time. Holds at
    most one block's samples, whatever the signal's length."""

    def __init__(self, extractor: SpectralExtractor, block_frames: int = STREAM_BLOCK_FRAMES) -> None:
        config = extractor.config
        self._extractor = extractor
        self._hop = config.hop_length
        self._half = config.n_fft // 2
        self._block_frames = block_frames
        self._block_span = config.n_fft + (block_frames - 1) * config.hop_length  # samples one block needs
        self._pieces: list[np.ndarray] = [np.zeros(self._half, np.float32)]  # the left zero padding
        self._held = self._half
        self.n_samples = 0

    def add(self, samples: np.ndarray) -> Iterator[np.ndarray]:
        """Feed the next samples; yields each (block_frames, n_mels) float32 block of frames they complete."""
        self._pieces.append(np.asarray(samples, dtype=np.float32))
        self._held += samples.size
        self.n_samples += samples.size
        if self._held < self._block_span:
            return
        buffer = np.concatenate(self._pieces)
        first = 0
        while buffer.size - first >= self._block_span:
            yield self._extractor.frames_db(buffer[first: first + self._block_span])
            first += self._block_frames * self._hop
        self._pieces, self._held = [buffer[first:]], buffer.size - first

    def finish(self) -> np.ndarray:
        """The frames left once the signal has ended (right zero padding): (frames, n_mels) float32, fewer than a
        block; with the blocks, 1 + n_samples // hop_length frames in all."""
        tail = np.concatenate([*self._pieces, np.zeros(self._half, np.float32)])
        self._pieces, self._held = [], 0
        if tail.size < self._extractor.config.n_fft:  # a hop longer than half a frame: no frame is left
            return np.zeros((0, self._extractor.config.n_mels), np.float32)
        return self._extractor.frames_db(tail)


@lru_cache(maxsize=4)
def extractor_for(config: FeatureConfig) -> SpectralExtractor:
    """One preloaded extractor per process and config (mel basis built once)."""
    return SpectralExtractor(config)


def delta_mfcc(mfcc: np.ndarray) -> np.ndarray:
    """First-order differences of consecutive MFCC frames: (frames-1, n_mfcc) float32."""
    return np.diff(np.asarray(mfcc, dtype=np.float32), axis=0)
