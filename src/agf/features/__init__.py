"""Per-track features: log-mel spectrogram, MFCC and delta-MFCC frames."""

from agf.features.spectral import (
    LogMelStream,
    SpectralExtractor,
    TrackFeatures,
    db_floor,
    delta_mfcc,
    extractor_for,
)

__all__ = ["LogMelStream", "SpectralExtractor", "TrackFeatures", "db_floor", "delta_mfcc", "extractor_for"]
