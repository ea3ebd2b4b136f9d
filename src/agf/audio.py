"""Audio in and out: any MP3/OGG-Vorbis/FLAC/WAV file -> mono float32 at one sample rate, and back to a file.

Decoding tries PyAV (FFmpeg) first and falls back to soundfile (libsndfile) when PyAV fails; a file that
neither can read raises AudioDecodeError, whatever went wrong, so a bad file in a large collection is a
status to record, never a crash. What the decoders' libraries say while decoding (FFmpeg's log, lines libsndfile's
MP3 reader libmpg123 writes to the terminal) is captured and attached to the file it concerns: to the
AudioDecodeError's reason, or to AudioInfo.notes. The rules that make a decoded file unusable live here too, for
prepare and prediction alike: `truncation` (shorter than its metadata or its own header declare) and
`silence_reason` (an RMS level under features.silence_rms_db).

`decode` returns a file's samples whole (prepare); `decode_into` / `decode_segment_into` hand the same samples to a
sink piece by piece as PyAV decodes them (prediction: memory independent of the file's length).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar

import av
import av.logging
import numpy as np
import soundfile

from agf.config import FeatureConfig
from agf.errors import AudioDecodeError
from agf.fileio import atomic_path


@dataclass(frozen=True)
class AudioInfo:
    """Technical facts of a decoded input file."""

    sample_rate: int  # of the input file
    channels: int  # of the input file
    duration: float  # true duration in seconds of the decoded input (not the header's claim)
    decoder: str  # "pyav" or "soundfile"
    # Seconds the file's own header declares (an MP3's Xing/VBRI frame count, FLAC's STREAMINFO, ...); NaN when
    # it declares none (FFmpeg's guess from the bitrate of an MP3 without such a header is no declaration).
    declared_duration: float = float("nan")
    decode_limit: float | None = None  # the max_duration decoding stopped at (None: the whole file)
    notes: tuple[str, ...] = ()  # what the decoder's libraries reported while decoding (damaged frames, ...)


# A file that decodes to less than this share of the duration declared for it, by the track's metadata or by the
# file's own header, is truncated (a damaged or partial file). Header durations are frame counts, not estimates
# (see AudioInfo.declared_duration), so good files decode to all of it; a cut download keeps a fraction.
TRUNCATED_SHARE = 0.5
# FFmpeg's log line when it guesses a duration from the bitrate and the file size (an MP3 without Xing/VBRI header).
_ESTIMATED_DURATION = "Estimating duration from bitrate"
# The integer dtypes of PCM audio (WAV's 8-bit samples are unsigned), which float_samples scales to [-1, 1).
_PCM_DTYPES = frozenset(np.dtype(name) for name in ("int8", "int16", "int32", "uint8"))
# At most this many of a decoder's distinct messages are attached to a file (a damaged MP3 gives one per frame).
MAX_DECODER_NOTES = 3


def truncation(info: AudioInfo, metadata_duration: float = float("nan")) -> str | None:
    """Why a decoded file is truncated, or None: it decoded to less than TRUNCATED_SHARE of the seconds its
    metadata (NaN: unknown) or its own header declare, counted up to the decode limit when decoding stopped there."""
    for declared, by in ((metadata_duration, "its metadata"), (info.declared_duration, "its header")):
        # min() keeps a NaN declared duration, and a comparison with NaN is False: unknown is never truncated.
        if info.duration < TRUNCATED_SHARE * min(declared, info.decode_limit or np.inf):
            return f"decoded {info.duration:.1f} s of the {declared:.1f} s {by} declares (a damaged or partial file)"
    return None


def level_db(value: float) -> float:
    """A linear level in dBFS, floored at -200 dB."""
    return float(20.0 * np.log10(max(value, 1e-10)))


def rms_db(samples: np.ndarray) -> float:
    """The RMS level of samples in dBFS (floored at -200 dB; no samples: -200 dB)."""
    return level_db(float(np.sqrt(np.dot(samples, samples) / samples.size)) if samples.size else 0.0)


def silence_reason(rms_level_db: float, threshold_db: float) -> str | None:
    """Why audio of this RMS level counts as silent (below threshold_db, features.silence_rms_db: digital silence
    or near-silence, which carries no genre), or None."""
    if rms_level_db < threshold_db:
        return f"RMS level {rms_level_db:.1f} dBFS is below the silence threshold of {threshold_db:g} dBFS"
    return None


class SampleSink(Protocol):
    """Where decode_into hands the mono float32 samples of a file, piece by piece, as they are decoded."""

    def add(self, samples: np.ndarray) -> None:
        """Take the next piece of samples."""

    def discard(self) -> None:
        """Drop what was taken (the decoder failed part-way, or the file holds no samples)."""


SinkT = TypeVar("SinkT", bound=SampleSink)


class _Collected:
    """A sink that keeps every piece, for decode(): the whole signal."""

    def __init__(self) -> None:
        self.pieces: list[np.ndarray] = []

    def add(self, samples: np.ndarray) -> None:
        self.pieces.append(samples)

    def discard(self) -> None:
        self.pieces.clear()

    def samples(self) -> np.ndarray:
        """The pieces as one float32 array."""
        if len(self.pieces) == 1:
            return self.pieces[0]
        return np.concatenate(self.pieces) if self.pieces else np.zeros(0, np.float32)


class _Counted:
    """A sink that counts the samples, for the place of a centred segment."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, samples: np.ndarray) -> None:
        self.count += samples.size

    def discard(self) -> None:
        self.count = 0


class _Span:
    """Forwards to `sink` the samples whose index in the decoded signal lies in [start, stop) (stop None: all that
    come); counts every sample it is given."""

    def __init__(self, sink: SampleSink, start: int, stop: int | None) -> None:
        self.sink, self.start, self.stop = sink, start, stop
        self.received = 0

    def add(self, samples: np.ndarray) -> None:
        first = self.received
        self.received += samples.size
        low = max(self.start - first, 0)
        high = samples.size if self.stop is None else min(self.stop - first, samples.size)
        if high > low:
            self.sink.add(samples[low:high])

    def discard(self) -> None:
        self.sink.discard()


def decode(
    path: str | Path, sample_rate: int = 22050, max_duration: float | None = None
) -> tuple[np.ndarray, AudioInfo]:
    """Any MP3/OGG-Vorbis/FLAC/WAV, any rate/channels -> mono float32 1-D at sample_rate.

    With max_duration (seconds), only the file's first max_duration seconds are decoded and returned
    (AudioInfo.duration is then the decoded part's).
    """
    collected, info = decode_into(path, sample_rate, _Collected, max_duration)
    return collected.samples(), info


def decode_into(
    path: str | Path, sample_rate: int, new_sink: Callable[[], SinkT], max_duration: float | None = None,
    keep: tuple[int, int | None] = (0, None),
) -> tuple[SinkT, AudioInfo]:
    """decode(), the samples handed to a sink (made by new_sink) piece by piece as they are decoded, so that
    memory does not grow with the file's length; the sink of a decoder that fails part-way is discarded and the
    next decoder gets a new one. Only the samples of index range `keep` = [start, stop) (stop None: to the end)
    of the decoded signal reach the sink. PyAV streams; its soundfile fallback (files FFmpeg cannot read)
    decodes and resamples the whole file, then hands it over.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if max_duration is not None and not max_duration > 0:
        raise ValueError(f"max_duration must be positive seconds, got {max_duration}")
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "no such file; check the audio directory and the track table's audio_path")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "empty file (0 bytes); re-download or drop this track")
    limit = None if max_duration is None else int(round(max_duration * sample_rate))
    stops = [stop for stop in (keep[1], limit) if stop is not None]
    stop = min(stops) if stops else None

    def new_span() -> _Span:
        return _Span(new_sink(), keep[0], stop)

    # Both decoders wrap C libraries that raise many exception types on bad input (FFmpegError subclasses,
    # LibsndfileError, ValueError, RuntimeError, ...): any of them means "this decoder cannot read the file".
    # While FFmpeg's log is captured, PyAV's exceptions quote its last error; the soundfile fallback notes on its
    # exception what libsndfile's libraries printed: the reason carries what the decoders said.
    span = new_span()
    try:
        info = _decode_pyav(path, sample_rate, max_duration, span)
    except Exception as pyav_error:
        span.discard()
        span = new_span()
        try:
            info = _decode_soundfile(path, sample_rate, max_duration, span)
        except Exception as soundfile_error:
            span.discard()
            raise AudioDecodeError(
                path, f"pyav: {_one_line(pyav_error)}; soundfile: {_soundfile_reason(soundfile_error)}"
            ) from soundfile_error
    if span.received == 0:
        span.discard()
        raise AudioDecodeError(path, f"no audio samples decoded ({info.decoder}); the file holds no audio")
    return span.sink, replace(info, decode_limit=max_duration)


def float_samples(samples: np.ndarray) -> np.ndarray:
    """A waveform as float32: floats as they are; integer PCM (int8, int16, int32, and uint8 centred on 128)
    scaled to [-1, 1) by its full scale. ValueError for any other dtype (bool, complex, int64, object, ...)."""
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    if samples.dtype in _PCM_DTYPES:
        full_scale = 2.0 ** (8 * samples.dtype.itemsize - 1)
        centre = full_scale if samples.dtype.kind == "u" else 0.0
        return (samples.astype(np.float32) - np.float32(centre)) / np.float32(full_scale)
    raise ValueError(f"a waveform of dtype {samples.dtype} is not audio samples; pass floats in [-1, 1] or integer "
                     "PCM (int16, int32, int8 or uint8)")


@dataclass(frozen=True)
class Segment:
    """The part of each track that is used: at most max_duration seconds (None: all) from `offset`: 'start',
    'centre' or a number of seconds (agf.config.FeatureConfig holds the setting)."""

    max_duration: float | None = None
    offset: str | float = "start"

    @classmethod
    def of(cls, features: FeatureConfig) -> Segment:
        """The segment the feature settings keep."""
        return cls(features.max_duration, features.offset)

    def decode_limit(self) -> float | None:
        """Seconds of the file that must be decoded to cut the segment (None: the whole file)."""
        if self.max_duration is None or self.offset == "centre":
            return None
        return (0.0 if self.offset == "start" else float(self.offset)) + self.max_duration

    def fixed_bounds(self, sample_rate: int) -> tuple[int, int | None] | None:
        """The segment's sample range [start, stop) whatever the track's length (stop None: to the end), to be
        cut to the samples there are; None for a centred segment, whose place depends on the length."""
        if self.offset == "centre":
            return None
        start = 0 if self.offset == "start" else round(float(self.offset) * sample_rate)
        return start, None if self.max_duration is None else start + round(self.max_duration * sample_rate)

    def bounds(self, n_samples: int, sample_rate: int) -> tuple[int, int]:
        """The segment's sample range [start, stop) in a decoded track of n_samples (empty past the end)."""
        fixed = self.fixed_bounds(sample_rate)
        if fixed is None:
            length = n_samples if self.max_duration is None else min(n_samples, round(self.max_duration * sample_rate))
            start = (n_samples - length) // 2
            return start, start + length
        start, stop = fixed
        return min(start, n_samples), n_samples if stop is None else min(stop, n_samples)


def _segment_limit(segment: Segment, max_duration: float | None) -> float | None:
    """Seconds to decode for a segment under prediction's max_duration cap (None: the whole file)."""
    limits = [limit for limit in (segment.decode_limit(), max_duration) if limit is not None]
    return min(limits) if limits else None


def decode_segment(
    path: str | Path, sample_rate: int, segment: Segment, max_duration: float | None = None
) -> tuple[np.ndarray, AudioInfo]:
    """decode() of the segment of a file only, decoding no more of it than the segment needs.

    `max_duration` caps the seconds decoded before the segment is cut (prediction's --max-duration).
    AudioInfo.duration is the decoded part's duration (the whole file's unless a limit stopped decoding).
    """
    samples, info = decode(path, sample_rate, _segment_limit(segment, max_duration))
    start, stop = segment.bounds(samples.size, sample_rate)
    return samples[start:stop], info


def decode_segment_into(
    path: str | Path, sample_rate: int, segment: Segment, new_sink: Callable[[], SinkT],
    max_duration: float | None = None,
) -> tuple[SinkT, AudioInfo]:
    """decode_segment() into a sink (see decode_into): the same samples, in pieces, in memory independent of the
    file's length. A centred segment's place depends on the decoded length: the file is then decoded twice, the
    first time only to count its samples."""
    limit = _segment_limit(segment, max_duration)
    keep = segment.fixed_bounds(sample_rate)
    if keep is None:
        counted, _ = decode_into(path, sample_rate, _Counted, limit)
        keep = segment.bounds(counted.count, sample_rate)
    return decode_into(path, sample_rate, new_sink, limit, keep)


def _decode_pyav(path: Path, sample_rate: int, max_duration: float | None, sink: SampleSink) -> AudioInfo:
    """_read_pyav with FFmpeg's log captured: its errors become the notes (PyAV's exceptions quote the last one
    themselves while the log is on), and a duration FFmpeg only estimated from the bitrate is no declared one."""
    with _ffmpeg_log() as log:
        info = _read_pyav(path, sample_rate, max_duration, sink)
    estimated = any(_ESTIMATED_DURATION in message for _, _, message in log)
    return replace(info, declared_duration=float("nan") if estimated else info.declared_duration,
                            notes=_ffmpeg_errors(log))


def _read_pyav(path: Path, sample_rate: int, max_duration: float | None, sink: SampleSink) -> AudioInfo:
    """Decode the first audio stream with FFmpeg, resample it with FFmpeg's resampler, average the channels, and
    hand each resampled piece to the sink as it comes.

    The channels are averaged here (as librosa and the soundfile fallback do) rather than by FFmpeg's
    downmix, which scales stereo by 1/sqrt(2) per channel and would make the level depend on the decoder.
    """
    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else np.nan
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        input_samples = 0
        input_rate = stream.codec_context.sample_rate
        wanted = np.inf if max_duration is None or not input_rate else max_duration * input_rate
        for frame in container.decode(stream):
            input_samples += frame.samples
            for out in resampler.resample(frame):
                sink.add(out.to_ndarray().mean(axis=0, dtype=np.float32))
            if input_samples >= wanted:
                break
        for out in resampler.resample(None):
            sink.add(out.to_ndarray().mean(axis=0, dtype=np.float32))
        input_channels = stream.codec_context.layout.nb_channels
    if not input_rate:
        raise ValueError("the audio stream has no sample rate")
    duration = input_samples / input_rate if max_duration is None else min(input_samples / input_rate, max_duration)
    return AudioInfo(input_rate, input_channels, duration, "pyav", declared)


def _decode_soundfile(path: Path, sample_rate: int, max_duration: float | None, sink: SampleSink) -> AudioInfo:
    """Decode with libsndfile, average the channels and resample with soxr (through librosa), the whole file at
    once, into the sink. What libsndfile's libraries write to the terminal meanwhile becomes the notes (or the
    exception's)."""
    said: list[str] = []
    try:
        with _terminal_lines(said), soundfile.SoundFile(path) as handle:
            input_rate = handle.samplerate
            wanted = -1 if max_duration is None else int(np.ceil(max_duration * input_rate))
            frames = handle.read(frames=wanted, dtype="float32", always_2d=True)
    except Exception as error:
        if said:
            error.add_note(f"(the decoder said: {' | '.join(_distinct(said))})")
        raise
    sink.add(to_mono(frames.T, input_rate, sample_rate))
    return AudioInfo(int(input_rate), int(frames.shape[1]), frames.shape[0] / input_rate, "soundfile",
                     notes=_distinct(said))


@contextmanager
def _ffmpeg_log() -> Iterator[list[tuple[int, str, str]]]:
    """FFmpeg's log records (level, component, message) of this thread while the block runs, warnings and worse,
    captured: neither dropped (PyAV's default) nor printed without the file's name."""
    previous, skipping = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(max(previous or 0, av.logging.WARNING))
    av.logging.set_skip_repeated(False)  # else a file's repeated message is counted out during the next file
    try:
        with av.logging.Capture() as records:
            yield records
    finally:
        av.logging.set_level(previous)
        av.logging.set_skip_repeated(skipping)


def _ffmpeg_errors(records: Iterable[tuple[int, str, str]]) -> tuple[str, ...]:
    """The error messages (or worse) of FFmpeg log records, as 'component: message'."""
    return _distinct(f"{name}: {message}" for level, name, message in records if level <= av.logging.ERROR)


@contextmanager
def _terminal_lines(lines: list[str]) -> Iterator[None]:
    """Add to `lines` what C libraries write straight to file descriptor 2 (the terminal) while the block runs:
    libmpg123's 'Note: Illegal Audio-MPEG-Header ...' under libsndfile, which names no file."""
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines += sink.read().decode(errors="replace").splitlines()


def _distinct(messages: Iterable[str]) -> tuple[str, ...]:
    """The first MAX_DECODER_NOTES distinct non-empty messages, each on one line."""
    return tuple(dict.fromkeys(" ".join(m.split()) for m in messages if m.strip()))[:MAX_DECODER_NOTES]


def to_mono(samples: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """(n,) or (channels, n) samples at sample_rate -> mono float32 (channels averaged) at target_rate (soxr)."""
    planar = np.asarray(samples, dtype=np.float32)
    if planar.ndim == 2:
        planar = planar.mean(axis=0, dtype=np.float32)
    if planar.ndim != 1:
        raise ValueError(f"samples must be (n,) or (channels, n), got shape {np.shape(samples)}")
    if sample_rate != target_rate and planar.size:
        import librosa  # its resampler loads SciPy: only for waveforms and the soundfile fallback

        planar = librosa.resample(planar, orig_sr=sample_rate, target_sr=target_rate, res_type="soxr_hq")
    return np.ascontiguousarray(planar, dtype=np.float32)


def _one_line(error: BaseException, message: str | None = None) -> str:
    """An exception as one line: its type, its message (or `message`) and its notes (what the decoder said)."""
    text = f"{type(error).__name__}: {error if message is None else message}"
    return " ".join(" ".join([text, *getattr(error, "__notes__", ())]).split())


def _soundfile_reason(error: BaseException) -> str:
    """libsndfile's error as one line. For a file it cannot parse (e.g. a damaged MP3 handed to its mpg123
    reader) it says 'File does not exist or is not a regular file' although the file exists: say what it means."""
    if "File does not exist" in str(error):
        return _one_line(error, "not a format libsndfile can read, or damaged")
    return _one_line(error)


_MP3_LAYOUTS = {1: "mono", 2: "stereo"}
_SOUNDFILE_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


def write_audio(
    path: str | Path, samples: np.ndarray, sample_rate: int, bitrate: int | None = None, mp3_speed: int | None = None
) -> None:
    """samples: (n,) mono or (channels, n) float in [-1,1]; format from suffix: .mp3 .ogg .flac .wav (atomic write).

    `bitrate` (bit/s, constant) applies to .mp3 only (None: the encoder's default); `mp3_speed` is LAME's
    algorithm quality 0 (best, slowest) to 9 (fastest; 7 encodes ~1.8x faster than the default here), .mp3 only.
    .ogg is written at Vorbis's default quality; .wav and .flac hold 16-bit PCM. Values outside [-1, 1] are clipped.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    planar = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    if planar.ndim != 2 or planar.shape[0] > 8:
        raise ValueError(
            f"{path}: samples must be (n,) or (channels, n) with at most 8 channels, got shape {np.shape(samples)}"
        )
    planar = np.clip(planar, -1.0, 1.0)
    if suffix == ".mp3":
        if planar.shape[0] not in _MP3_LAYOUTS:
            raise ValueError(f"{path}: MP3 holds 1 or 2 channels, got {planar.shape[0]}")
        with atomic_path(path) as tmp:
            _write_mp3(tmp, planar, sample_rate, bitrate, mp3_speed)
        return
    if suffix not in _SOUNDFILE_FORMATS:
        raise ValueError(f"{path}: unknown audio format {suffix!r}; use .mp3, .ogg, .flac or .wav")
    if bitrate is not None or mp3_speed is not None:
        raise ValueError(f"{path}: bitrate and mp3_speed apply to .mp3 only; leave them None for {suffix}")
    file_format, subtype = _SOUNDFILE_FORMATS[suffix]
    with atomic_path(path) as tmp:
        soundfile.write(tmp, planar.T, sample_rate, subtype=subtype, format=file_format)


def _write_mp3(path: Path, planar: np.ndarray, sample_rate: int, bitrate: int | None, speed: int | None) -> None:
    """Encode (1 or 2, n) float32 samples to MP3 with LAME (through PyAV)."""
    layout = _MP3_LAYOUTS[planar.shape[0]]
    with av.open(str(path), "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=sample_rate, layout=layout)
        if bitrate is not None:
            stream.codec_context.bit_rate = bitrate
        if speed is not None:
            stream.codec_context.options = {"compression_level": str(speed)}
        if planar.shape[1]:  # FFmpeg cannot encode an empty frame; no frame gives a file without audio
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar), format="fltp", layout=layout)
            frame.sample_rate = sample_rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
