"""Per-track features: log-mel spectrogram, MFCC and delta-MFCC frames."""

from agf.features.spectral import SpectralExtractor, TrackFeatures, delta_mfcc

__all__ = ["SpectralExtractor", "TrackFeatures", "delta_mfcc"]
