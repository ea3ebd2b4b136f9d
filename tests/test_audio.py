"""Decoding every format/rate/layout to mono 22,050 Hz, the soundfile fallback, bad files, and writing."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from audio_cases import (
    FORMATS,
    make_damaged,
    make_empty,
    make_random_bytes,
    make_truncated_mp3,
    make_vbr_mp3_without_header,
    make_zero_samples_wav,
    write_case,
)

from agf import audio
from agf.audio import (
    AudioInfo,
    Segment,
    decode,
    decode_segment,
    decode_segment_into,
    float_samples,
    silence_reason,
    truncation,
    write_audio,
)
from agf.errors import AudioDecodeError

TARGET_RATE = 22050
SECONDS = 2.0
TONE_HZ = 1000.0
TOLERANCE_S = 0.005


def tone_peak(samples: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """The frequency (Hz) and sine amplitude of the strongest spectral peak."""
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples * window))
    peak = int(spectrum.argmax())
    return peak * sample_rate / len(samples), 2 * spectrum[peak] / window.sum()


def simulate_pyav_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the PyAV decoder fail as it does on a file FFmpeg cannot read."""

    def fail(path: Path, sample_rate: int, max_duration: float | None, sink: audio.SampleSink) -> AudioInfo:
        raise ValueError("simulated FFmpeg failure")

    monkeypatch.setattr(audio, "_decode_pyav", fail)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sample_rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("fmt", FORMATS)
def test_decodes_every_format_rate_and_layout(tmp_path: Path, fmt: str, sample_rate: int, channels: int) -> None:
    path = write_case(tmp_path, fmt, sample_rate, channels, SECONDS, freq=TONE_HZ)
    samples, info = decode(path, TARGET_RATE)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - SECONDS * TARGET_RATE) <= TOLERANCE_S * TARGET_RATE
    assert (info.sample_rate, info.channels, info.decoder, info.notes) == (sample_rate, channels, "pyav", ())
    assert info.duration == pytest.approx(SECONDS, abs=TOLERANCE_S)
    # Its header declares what it holds: a good file is never truncated.
    assert info.declared_duration == pytest.approx(SECONDS, abs=TOLERANCE_S) and truncation(info) is None
    frequency, amplitude = tone_peak(samples, TARGET_RATE)
    assert frequency == pytest.approx(TONE_HZ, abs=2.0)
    # The channels are averaged (0.5 and 0.3 -> 0.4; an FFmpeg downmix would give 0.57); MP3 loses a few %.
    assert amplitude == pytest.approx(0.5 if channels == 1 else 0.4, rel=0.1)


def test_decodes_to_any_target_rate(tmp_path: Path) -> None:
    path = write_case(tmp_path, "mp3", 44100, 2, SECONDS, freq=TONE_HZ)
    samples, info = decode(path, 16000)
    assert abs(len(samples) - SECONDS * 16000) <= TOLERANCE_S * 16000
    assert tone_peak(samples, 16000)[0] == pytest.approx(TONE_HZ, abs=2.0)
    assert info.sample_rate == 44100


@pytest.mark.parametrize("fmt", FORMATS)
def test_soundfile_fallback_matches_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    path = write_case(tmp_path, fmt, 44100, 2, SECONDS, freq=TONE_HZ)
    pyav_samples, _ = decode(path, TARGET_RATE)
    simulate_pyav_failure(monkeypatch)
    samples, info = decode(path, TARGET_RATE)
    assert (info.sample_rate, info.channels, info.decoder, info.notes) == (44100, 2, "soundfile", ())
    assert info.duration == pytest.approx(SECONDS, abs=TOLERANCE_S)
    assert samples.dtype == np.float32
    assert abs(len(samples) - len(pyav_samples)) <= TOLERANCE_S * TARGET_RATE
    assert tone_peak(samples, TARGET_RATE)[0] == pytest.approx(TONE_HZ, abs=2.0)
    # Same downmix on both paths: the level does not depend on the decoder.
    assert np.sqrt(np.mean(samples**2)) == pytest.approx(np.sqrt(np.mean(pyav_samples**2)), rel=0.01)


def test_both_decoders_failing_names_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_random_bytes(tmp_path / "noise.mp3")
    simulate_pyav_failure(monkeypatch)
    with pytest.raises(AudioDecodeError) as caught:
        decode(path)
    message = str(caught.value)
    assert message == f"{path}: {caught.value.reason}"
    assert "pyav: ValueError: simulated FFmpeg failure" in message
    assert "soundfile: " in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "make_bad_file"),
    [
        ("empty.mp3", make_empty),
        ("noise.mp3", make_random_bytes),
        ("none.wav", make_zero_samples_wav),
        ("missing.mp3", Path),
    ],
    ids=["empty", "random-bytes", "zero-samples", "missing"],
)
def test_bad_files_raise_audio_decode_error_naming_the_path(
    tmp_path: Path, name: str, make_bad_file: Callable[[Path], Path]
) -> None:
    path = make_bad_file(tmp_path / name)
    with pytest.raises(AudioDecodeError) as caught:
        decode(path)
    assert caught.value.path == str(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert caught.value.reason
    copy = pickle.loads(pickle.dumps(caught.value))  # crosses worker-process boundaries intact
    assert (type(copy), copy.path, copy.reason) == (AudioDecodeError, str(path), caught.value.reason)


@pytest.mark.timeout(60)
def test_truncated_mp3_decodes_what_is_there(tmp_path: Path) -> None:
    samples, info = decode(make_truncated_mp3(tmp_path / "truncated.mp3", seconds=4.0, fraction=0.5))
    assert info.decoder == "pyav"
    assert 1.7 < info.duration < 2.3
    assert len(samples) == pytest.approx(info.duration * TARGET_RATE, abs=TOLERANCE_S * TARGET_RATE)
    assert np.isfinite(samples).all()


def test_write_audio_honours_mp3_bitrate_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    sizes = {
        bitrate: write_case(tmp_path / str(bitrate), "mp3", 44100, 2, 4.0, music=True, bitrate=bitrate).stat().st_size
        for bitrate in (64000, 192000)
    }
    for bitrate, size in sizes.items():
        assert size * 8 / 4.0 == pytest.approx(bitrate, rel=0.1)
        assert [p.name for p in (tmp_path / str(bitrate)).iterdir()] == ["music_44100_2ch_0.mp3"]


def test_write_audio_rejects_unknown_format_and_misplaced_bitrate(tmp_path: Path) -> None:
    samples = np.zeros(1000, np.float32)
    with pytest.raises(ValueError, match=r"\.aac"):
        write_audio(tmp_path / "x.aac", samples, 22050)
    with pytest.raises(ValueError, match="bitrate"):
        write_audio(tmp_path / "x.flac", samples, 22050, bitrate=128000)
    with pytest.raises(ValueError, match="1 or 2 channels"):
        write_audio(tmp_path / "x.mp3", np.zeros((3, 1000), np.float32), 22050)
    assert list(tmp_path.iterdir()) == []


def test_write_audio_clips_and_round_trips_lossless(tmp_path: Path) -> None:
    samples = np.array([[0.0, 0.5, 1.5, -2.0], [0.25, -0.25, 0.0, 1.0]], np.float32)
    write_audio(tmp_path / "x.wav", samples, 8000)
    decoded, info = decode(tmp_path / "x.wav", 8000)
    assert (info.sample_rate, info.channels) == (8000, 2)
    np.testing.assert_allclose(decoded, np.clip(samples, -1, 1).mean(axis=0), atol=1e-4)


def test_decode_error_never_says_an_existing_file_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError) as caught:
        decode(make_random_bytes(tmp_path / "noise.mp3"))
    assert "does not exist" not in caught.value.reason and "not a format libsndfile can read" in caught.value.reason


@pytest.mark.parametrize("fmt", ["mp3", "flac"])
def test_max_duration_decodes_the_beginning_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    path = write_case(tmp_path, fmt, 44100, 2, seconds=6.0)
    whole, _ = decode(path, 22050)
    first, info = decode(path, 22050, max_duration=2.5)
    assert first.size == round(2.5 * 22050) and info.duration == pytest.approx(2.5, abs=0.05)
    assert np.allclose(first[:22050], whole[:22050], atol=1e-4)
    if fmt == "flac":  # the soundfile fallback cuts the same way
        simulate_pyav_failure(monkeypatch)
        fallback, info = decode(path, 22050, max_duration=2.5)
        assert fallback.size == round(2.5 * 22050) and info.decoder == "soundfile"
    with pytest.raises(ValueError, match="max_duration"):
        decode(path, 22050, max_duration=0)


def test_a_file_shorter_than_its_own_header_declares_is_truncated(tmp_path: Path) -> None:
    """A cut 12-s MP3 whose LAME header still declares 12 s decodes to 4 s: truncated, with no metadata at all."""
    path = make_truncated_mp3(tmp_path / "cut.mp3", seconds=12.0, fraction=0.33)
    _, info = decode(path)
    assert info.declared_duration == pytest.approx(12.0, abs=0.05) and info.duration == pytest.approx(4.0, abs=0.2)
    assert truncation(info) == "decoded 3.9 s of the 12.0 s its header declares (a damaged or partial file)"
    assert "its metadata declares" in truncation(info, metadata_duration=12.0)  # the metadata is checked first
    # Decoding stopped at a limit the file covers: the part needed is all there.
    assert truncation(decode(path, max_duration=3.0)[1]) is None


def test_a_duration_ffmpeg_estimates_from_the_bitrate_is_no_declaration(tmp_path: Path) -> None:
    """A VBR MP3 without Xing header (quiet start): FFmpeg guesses 15 s for its 12 s; agf declares nothing."""
    _, info = decode(make_vbr_mp3_without_header(tmp_path / "vbr.mp3", seconds=12.0))
    assert info.duration == pytest.approx(12.0, abs=0.1)
    assert np.isnan(info.declared_duration) and truncation(info) is None


def test_decoder_chatter_is_attached_to_its_file_not_printed(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """libmpg123 (under libsndfile) prints '[src/libmpg123/parse.c:...] warning: ...' for random bytes named .mp3,
    and FFmpeg logs 'CRC mismatch' for a damaged Ogg page: both go with the file, none to the terminal."""
    with pytest.raises(AudioDecodeError) as caught:
        decode(make_random_bytes(tmp_path / "noise.mp3"))
    assert "(the decoder said: " in caught.value.reason and "libmpg123" in caught.value.reason
    assert "\n" not in caught.value.reason
    _, info = decode(make_damaged(write_case(tmp_path, "ogg", 44100, 2, 6.0, music=True)))
    assert info.notes and all("CRC mismatch" in note for note in info.notes)
    assert capfd.readouterr().err == ""


def test_integer_pcm_is_scaled_and_other_dtypes_are_refused() -> None:
    assert float_samples(np.array([-32768, 0, 16384], np.int16)).tolist() == [-1.0, 0.0, 0.5]
    assert float_samples(np.array([-2**31, 2**30], np.int32)).tolist() == [-1.0, 0.5]
    assert float_samples(np.array([0, 128, 192], np.uint8)).tolist() == [-1.0, 0.0, 0.5]
    assert float_samples(np.array([-128, 64], np.int8)).tolist() == [-1.0, 0.5]
    floats = np.array([0.25, -0.5], np.float64)
    assert float_samples(floats).dtype == np.float32 and float_samples(floats).tolist() == [0.25, -0.5]
    for bad in (np.array([True]), np.array([1j]), np.array([0.5], dtype=object), np.array([1], np.int64)):
        with pytest.raises(ValueError, match=f"dtype {bad.dtype} is not audio samples"):
            float_samples(bad)


def test_silence_is_one_rule_of_the_rms_level() -> None:
    assert silence_reason(-200.0, -60.0) == "RMS level -200.0 dBFS is below the silence threshold of -60 dBFS"
    assert silence_reason(-59.9, -60.0) is None


class Pieces:
    """A sample sink that keeps what it is given, piece by piece, and whether it was discarded."""

    def __init__(self) -> None:
        self.pieces: list[np.ndarray] = []
        self.discarded = False

    def add(self, samples: np.ndarray) -> None:
        self.pieces.append(samples.copy())

    def discard(self) -> None:
        self.discarded = True


@pytest.mark.parametrize(
    ("segment", "cap"),
    [(Segment(), None), (Segment(2.0, 1.5), None), (Segment(2.0, "centre"), None), (Segment(3.0, 9.0), None),
     (Segment(None, 1.0), 2.5), (Segment(4.0, "centre"), 3.0)],
    ids=["whole", "offset", "centre", "past-the-end", "offset-capped", "centre-capped"],
)
def test_a_segment_decoded_into_a_sink_is_the_segment_decoded_whole(tmp_path: Path, segment: Segment,
                                                                    cap: float | None) -> None:
    """decode_segment_into hands over, in pieces, exactly the samples decode_segment returns."""
    path = write_case(tmp_path, "mp3", 44100, 2, 6.0, music=True, seed=3)
    whole, whole_info = decode_segment(path, TARGET_RATE, segment, cap)
    sink, info = decode_segment_into(path, TARGET_RATE, segment, Pieces, cap)
    assert info == whole_info and not sink.discarded
    assert len(sink.pieces) > 10 or whole.size == 0  # handed over as decoded, not whole
    streamed = np.concatenate(sink.pieces) if sink.pieces else np.zeros(0, np.float32)
    np.testing.assert_array_equal(streamed, whole)


def test_a_decoder_failing_part_way_leaves_its_sink_and_the_fallback_starts_afresh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_case(tmp_path, "flac", 44100, 1, SECONDS, freq=TONE_HZ)
    expected, _ = decode(path, TARGET_RATE)
    sinks: list[Pieces] = []

    def new_sink() -> Pieces:
        sinks.append(Pieces())
        return sinks[-1]

    def fail_part_way(path: Path, sample_rate: int, max_duration: float | None, sink: audio.SampleSink) -> AudioInfo:
        sink.add(np.ones(1000, np.float32))
        raise ValueError("simulated FFmpeg failure part-way")

    monkeypatch.setattr(audio, "_decode_pyav", fail_part_way)
    sink, info = decode_segment_into(path, TARGET_RATE, Segment(), new_sink)
    assert info.decoder == "soundfile" and [s.discarded for s in sinks] == [True, False] and sink is sinks[1]
    assert np.concatenate(sink.pieces).size == pytest.approx(expected.size, abs=TOLERANCE_S * TARGET_RATE)
