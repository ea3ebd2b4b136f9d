"""Log-mel and MFCC features: agreement with librosa on decoded MP3 music, shapes, edge cases."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
from audio_cases import music_like, write_case
from hypothesis import given, settings
from hypothesis import strategies as st

from agf.audio import decode
from agf.config import FeatureConfig
from agf.errors import ConfigError
from agf.features import LogMelStream, SpectralExtractor, TrackFeatures, db_floor, delta_mfcc
from agf.features.spectral import mel_filters

DEFAULT = FeatureConfig()
# The released code's MFCC front end: 40 mel bands, 13 coefficients, n_fft 2048, hop 1024 (with a band limit).
RELEASED = FeatureConfig(n_fft=2048, hop_length=1024, n_mels=40, n_mfcc=13, fmin=20.0, fmax=8000.0)
EXTRACTOR = SpectralExtractor(DEFAULT)


@pytest.fixture(scope="module")
def decoded_music(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Five seconds of music-like audio written as a 44.1 kHz stereo MP3 and decoded to 22,050 Hz mono."""
    path = write_case(tmp_path_factory.mktemp("music"), "mp3", 44100, 2, 5.0, music=True, seed=1)
    samples, _ = decode(path, DEFAULT.sample_rate)
    return samples


def librosa_log_mel(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The reference: librosa's mel spectrogram in dB, time-major."""
    power = librosa.feature.melspectrogram(
        y=samples,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        htk=False,
        norm="slaney",
    )
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=config.top_db).T


@pytest.mark.parametrize("config", [DEFAULT, RELEASED], ids=["paper", "released-mfcc"])
def test_log_mel_matches_librosa_on_decoded_mp3(decoded_music: np.ndarray, config: FeatureConfig) -> None:
    log_mel = SpectralExtractor(config).log_mel(decoded_music)
    reference = librosa_log_mel(decoded_music, config)
    assert log_mel.dtype == np.float32
    assert log_mel.shape == reference.shape == (1 + len(decoded_music) // config.hop_length, config.n_mels)
    assert np.abs(log_mel - reference).max() < 1e-3
    assert log_mel.max() - log_mel.min() <= config.top_db + 1e-3


@pytest.mark.parametrize("config", [DEFAULT, RELEASED], ids=["paper", "released-mfcc"])
def test_mfcc_matches_librosa(decoded_music: np.ndarray, config: FeatureConfig) -> None:
    extractor = SpectralExtractor(config)
    log_mel = extractor.log_mel(decoded_music)
    reference = librosa.feature.mfcc(S=log_mel.T, n_mfcc=config.n_mfcc).T
    mfcc = extractor(decoded_music).mfcc
    assert mfcc.dtype == np.float32
    assert mfcc.shape == (log_mel.shape[0], config.n_mfcc)
    assert np.abs(mfcc - reference).max() < 1e-3


def test_call_returns_time_major_float16_mel(decoded_music: np.ndarray) -> None:
    features = EXTRACTOR(decoded_music)
    frames = EXTRACTOR.n_frames(len(decoded_music))
    assert isinstance(features, TrackFeatures)
    assert features.mel.dtype == np.float16
    assert features.mel.shape == (frames, DEFAULT.n_mels)
    assert features.mfcc.shape == (frames, DEFAULT.n_mfcc)
    np.testing.assert_array_equal(features.mel, EXTRACTOR.log_mel(decoded_music).astype(np.float16))


def test_delta_mfcc_differences_consecutive_frames(decoded_music: np.ndarray) -> None:
    mfcc = EXTRACTOR(decoded_music).mfcc
    delta = delta_mfcc(mfcc)
    assert delta.dtype == np.float32
    assert delta.shape == (mfcc.shape[0] - 1, mfcc.shape[1])
    np.testing.assert_allclose(delta[10], mfcc[11] - mfcc[10], rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.cumsum(delta, axis=0) + mfcc[0], mfcc[1:], rtol=0, atol=1e-3)
    assert delta_mfcc(mfcc[:1]).shape == (0, DEFAULT.n_mfcc)


def test_short_clip_gives_finite_features() -> None:
    clip = music_like(0.3, DEFAULT.sample_rate, seed=2)
    features = EXTRACTOR(clip)
    assert features.mel.shape == (1 + len(clip) // DEFAULT.hop_length, DEFAULT.n_mels)
    assert np.isfinite(features.mel).all() and np.isfinite(features.mfcc).all()
    assert np.abs(EXTRACTOR.log_mel(clip) - librosa_log_mel(clip, DEFAULT)).max() < 1e-3


def test_silence_sits_at_the_amin_floor() -> None:
    features = EXTRACTOR(np.zeros(10 * DEFAULT.sample_rate, np.float32))
    assert features.mel.shape == (1 + 10 * DEFAULT.sample_rate // DEFAULT.hop_length, DEFAULT.n_mels)
    assert np.all(features.mel == -100.0)  # 10 * log10(amin = 1e-10)
    assert np.isfinite(features.mfcc).all()
    assert np.allclose(features.mfcc[:, 1:], 0.0, atol=1e-3)


def test_rejects_multichannel_input_and_impossible_config() -> None:
    with pytest.raises(ValueError, match="1-D mono"):
        EXTRACTOR(np.zeros((2, 1000), np.float32))
    with pytest.raises(ConfigError, match="n_mfcc = 40: must be at most n_mels"):
        SpectralExtractor(FeatureConfig(n_mels=32, n_mfcc=40))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    n_samples=st.integers(min_value=0, max_value=3 * DEFAULT.sample_rate),
    amplitude=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_shapes_follow_frame_formula_and_values_are_finite(n_samples: int, amplitude: float, seed: int) -> None:
    samples = (amplitude * np.random.default_rng(seed).uniform(-1, 1, n_samples)).astype(np.float32)
    features = EXTRACTOR(samples)
    frames = 1 + n_samples // DEFAULT.hop_length
    assert features.mel.shape == (frames, DEFAULT.n_mels)
    assert features.mfcc.shape == (frames, DEFAULT.n_mfcc)
    assert delta_mfcc(features.mfcc).shape == (frames - 1, DEFAULT.n_mfcc)
    assert np.isfinite(features.mel).all() and np.isfinite(features.mfcc).all()


@pytest.mark.parametrize("config", [DEFAULT, RELEASED], ids=["paper", "released-mfcc"])
def test_mel_filters_are_librosas_value_for_value(config: FeatureConfig) -> None:
    """Built with NumPy (computing a log-mel loads neither librosa's filters nor SciPy), bit for bit librosa's."""
    reference = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin,
                                    fmax=config.fmax, htk=False, norm="slaney")
    np.testing.assert_array_equal(mel_filters(config), reference)


# A short hop (many frames per block), a hop longer than half a frame (no frame left at the end), the defaults.
STREAM_CONFIGS = [FeatureConfig(n_fft=256, hop_length=64, n_mels=32, n_mfcc=13),
                  FeatureConfig(n_fft=256, hop_length=200, n_mels=32, n_mfcc=13), DEFAULT]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    config=st.sampled_from(STREAM_CONFIGS),
    n_samples=st.integers(min_value=0, max_value=DEFAULT.sample_rate),
    block_frames=st.integers(min_value=1, max_value=40),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_a_log_mel_streamed_in_pieces_is_the_whole_signals(config: FeatureConfig, n_samples: int, block_frames: int,
                                                          seed: int) -> None:
    """Pieces of any size, blocks of any length: frame for frame the whole-signal log-mel once the floor (relative
    to the loudest frame value) is applied, to float32 rounding (an FFT or matmul over fewer frames may round
    differently: up to 8e-6 dB seen)."""
    rng = np.random.default_rng(seed)
    samples = (0.5 * rng.standard_normal(n_samples) * np.linspace(0, 1, n_samples) ** 3).astype(np.float32)
    extractor = SpectralExtractor(config)
    stream = LogMelStream(extractor, block_frames)
    blocks, fed = [], 0
    while fed < n_samples:
        piece = int(rng.integers(1, 3 * config.n_fft))
        blocks += list(stream.add(samples[fed: fed + piece]))
        fed += piece
    assert all(len(block) == block_frames for block in blocks)
    frames = np.concatenate([*blocks, stream.finish()])
    assert stream.n_samples == n_samples
    floored = np.maximum(frames, db_floor(frames.max(), config.top_db))
    np.testing.assert_allclose(floored, extractor.log_mel(samples), rtol=0, atol=1e-4)
