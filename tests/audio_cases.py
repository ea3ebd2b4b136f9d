"""Reusable audio test cases: music-like signals, tone files in every format, and broken files.

Import from any test file as `from audio_cases import ...` (pytest puts tests/ on the path).
Every generator is seeded, so a case is the same file on every run.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from agf.audio import write_audio

FORMATS: tuple[str, ...] = ("mp3", "ogg", "flac", "wav")


def music_like(seconds: float, sr: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Seeded music-like audio: enveloped harmonic notes, a bass line, kick/snare/hi-hat drums.

    Returns (n,) float32 for one channel, (channels, n) for more (the channels differ slightly); peak 0.9.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    out = np.zeros((channels, n))
    beat = 60.0 / rng.uniform(80, 160)
    for start in np.arange(0.0, seconds, beat / 2):
        first = int(start * sr)
        length = min(n - first, int(beat * sr))
        local = t[:length]
        pitch = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        envelope = np.exp(-local * rng.uniform(2, 8)) * np.minimum(1.0, local * 200)
        harmonics = sum(np.sin(2 * np.pi * pitch * k * local) / k**1.5 for k in range(1, 7))
        bass = np.sin(2 * np.pi * pitch / 4 * local) * np.exp(-local * 3)
        pan = rng.uniform(0.6, 1.0, size=(channels, 1))
        out[:, first : first + length] += pan * (0.3 * envelope * harmonics + 0.3 * bass)
        drum = rng.choice(["kick", "snare", "hat"])
        hit_length = min(length, int(0.15 * sr))
        hit_t = local[:hit_length]
        if drum == "kick":
            hit = np.sin(2 * np.pi * (60 + 100 * np.exp(-hit_t * 40)) * hit_t) * np.exp(-hit_t * 20)
        else:
            decay = 30 if drum == "snare" else 80
            hit = rng.standard_normal(hit_length) * np.exp(-hit_t * decay) * (0.4 if drum == "snare" else 0.15)
        out[:, first : first + hit_length] += 0.5 * hit
    out += 0.003 * rng.standard_normal(out.shape)
    out *= 0.9 / max(np.abs(out).max(), 1e-9)
    return (out[0] if channels == 1 else out).astype(np.float32)


def tone(freq: float, seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A sine at `freq` Hz (amplitude 0.5) over a little seeded noise, in phase on every channel.

    The noise keeps Vorbis from packing a whole short clip into one Ogg page, whose length FFmpeg
    cannot recover exactly (it reads the end trimming from page granule positions).
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    sine = 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / sr)
    planar = sine * np.linspace(1.0, 0.6, channels)[:, None] + 0.02 * rng.standard_normal((channels, n))
    return (planar[0] if channels == 1 else planar).astype(np.float32)


def write_case(
    directory: str | Path,
    fmt: str,
    sr: int,
    channels: int,
    seconds: float,
    freq: float = 1000.0,
    music: bool = False,
    seed: int = 0,
    bitrate: int | None = None,
) -> Path:
    """Write a tone (or music_like audio) as DIRECTORY/{tone,music}_<sr>_<channels>ch_<seed>.<fmt>; return the path."""
    path = Path(directory) / f"{'music' if music else 'tone'}_{sr}_{channels}ch_{seed}.{fmt}"
    samples = music_like(seconds, sr, seed, channels) if music else tone(freq, seconds, sr, channels, seed)
    write_audio(path, samples, sr, bitrate=bitrate if fmt == "mp3" else None)
    return path


def make_empty(path: str | Path) -> Path:
    """A zero-byte file at `path`."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def make_truncated_mp3(path: str | Path, seconds: float = 4.0, fraction: float = 0.5) -> Path:
    """At `path`: a music-like 44.1 kHz stereo MP3 cut after `fraction` of its bytes (an interrupted download)."""
    path = Path(path)
    full = path.with_name(f".full-{path.name}")
    write_audio(full, music_like(seconds, 44100, seed=7, channels=2), 44100)
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    full.unlink()
    return path


def make_vbr_mp3_without_header(path: str | Path, seconds: float = 12.0) -> Path:
    """At `path`: a VBR MP3 without Xing/VBRI header whose first third is near-silence (few bits per frame), so
    FFmpeg's duration, estimated from the first frames' bitrate, is longer than the file (what FMA files can be)."""
    path = Path(path)
    samples = music_like(seconds, 44100, seed=3, channels=2)
    quiet = len(samples[0]) // 3
    samples[:, :quiet] = 1e-5 * np.random.default_rng(0).standard_normal((2, quiet))
    with av.open(str(path), "w", format="mp3", options={"write_xing": "0"}) as container:
        stream = container.add_stream("libmp3lame", rate=44100, layout="stereo")
        stream.codec_context.flags |= av.codec.context.Flags.qscale  # variable bitrate at quality 4
        stream.codec_context.qscale = 4
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout="stereo")
        frame.sample_rate = 44100
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def make_damaged(path: str | Path, size: int = 300, seed: int = 0) -> Path:
    """Overwrite `size` bytes in the middle of the file at `path` with seeded random bytes (a damaged stretch)."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle: middle + size] = np.random.default_rng(seed).bytes(size)
    path.write_bytes(bytes(data))
    return path


def make_random_bytes(path: str | Path, size: int = 50_000, seed: int = 0) -> Path:
    """Seeded random bytes at `path` (name it .mp3 to pose as audio)."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(seed).bytes(size))
    return path


def make_zero_samples_wav(path: str | Path) -> Path:
    """A valid WAV file at `path` that holds no samples."""
    path = Path(path)
    write_audio(path, np.zeros(0, np.float32), 22050)
    return path
