"""Per-track features: log-mel spectrogram, MFCC and delta-MFCC frames."""

from agf.features.spectral import (
    SpectralExtractor,
    TrackFeatures,
    delta_mfcc,
    extractor_for,
)

__all__ = ["SpectralExtractor", "TrackFeatures", "delta_mfcc", "extractor_for"]
