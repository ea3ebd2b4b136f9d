"""Per-track spectral features: the log-mel spectrogram (the nets' input) and MFCCs (the m/d dictionaries' input).

Computes what librosa computes (centered frames with zero padding, periodic Hann window, power spectrum, Slaney
mel filters, power_to_db with ref 1.0, amin 1e-10 and top_db; MFCC as the orthonormal DCT-II of the log-mel),
to within float32 rounding (< 1e-3 dB), but with torch's STFT and matmuls, which are faster. Torch's thread
count is the caller's to set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import librosa
import numpy as np
import scipy.fft
import torch

from agf.config import FeatureConfig

_AMIN = 1e-10


@dataclass
class TrackFeatures:
    """One track's frame-level features, time-major."""

    mel: np.ndarray  # (frames, n_mels) float16, log-mel in dB
    mfcc: np.ndarray  # (frames, n_mfcc) float32


class SpectralExtractor:
    """Built once per FeatureConfig (mel basis, DCT matrix, window preloaded), called per track."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self._window = torch.hann_window(config.n_fft, periodic=True, dtype=torch.float32)
        mel_basis = librosa.filters.mel(
            sr=config.sample_rate,
            n_fft=config.n_fft,
            n_mels=config.n_mels,
            fmin=config.fmin,
            fmax=config.fmax,
            htk=False,
            norm="slaney",
        )
        self._mel_basis_t = torch.from_numpy(np.ascontiguousarray(mel_basis.T, dtype=np.float32))
        dct = scipy.fft.dct(np.eye(config.n_mels), type=2, norm="ortho", axis=0)[: config.n_mfcc]
        self._dct_t = torch.from_numpy(np.ascontiguousarray(dct.T, dtype=np.float32))

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for `n_samples` samples: 1 + n_samples // hop_length."""
        return 1 + n_samples // self.config.hop_length

    def log_mel(self, samples: np.ndarray) -> np.ndarray:
        """Mono samples at config.sample_rate -> (frames, n_mels) float32 log-mel power in dB."""
        signal = np.asarray(samples, dtype=np.float32)
        if signal.ndim != 1:
            raise ValueError(f"samples must be 1-D mono, got shape {signal.shape}")
        # Centered frames, as librosa's center=True with pad_mode='constant' (also for input shorter than n_fft).
        half = self.config.n_fft // 2
        padded = torch.nn.functional.pad(torch.from_numpy(signal), (half, half))
        spectrum = torch.stft(
            padded,
            n_fft=self.config.n_fft,
            hop_length=self.config.hop_length,
            window=self._window,
            center=False,
            return_complex=True,
        )
        power = (spectrum * spectrum.conj()).real  # |X|^2, (bins, frames)
        mel_power = (power.T @ self._mel_basis_t).numpy()
        return librosa.power_to_db(mel_power, ref=1.0, amin=_AMIN, top_db=self.config.top_db).astype(
            np.float32, copy=False
        )

    def mfcc(self, log_mel: np.ndarray) -> np.ndarray:
        """(frames, n_mels) log-mel in dB -> (frames, n_mfcc) float32 MFCCs (orthonormal DCT-II)."""
        return (torch.tensor(log_mel, dtype=torch.float32) @ self._dct_t).numpy()

    def __call__(self, samples: np.ndarray) -> TrackFeatures:
        """Mono samples at config.sample_rate -> the track's log-mel (float16) and MFCCs."""
        log_mel = self.log_mel(samples)
        return TrackFeatures(mel=log_mel.astype(np.float16), mfcc=self.mfcc(log_mel))


@lru_cache(maxsize=4)
def extractor_for(config: FeatureConfig) -> SpectralExtractor:
    """One preloaded extractor per process and config (mel basis and DCT built once)."""
    return SpectralExtractor(config)


def delta_mfcc(mfcc: np.ndarray) -> np.ndarray:
    """First-order differences of consecutive MFCC frames: (frames-1, n_mfcc) float32."""
    return np.diff(np.asarray(mfcc, dtype=np.float32), axis=0)
