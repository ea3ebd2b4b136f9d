"""Rendering one synthetic track: a TrackSpec (notes, drum hits, sounds, effects) -> stereo samples.

Everything is vectorised over the whole clip. Pitched parts are monophonic wavetable voices whose
phase is the running sum of the note frequencies, shaped by an attack/decay/sustain/release envelope
that crossfades from a brighter attack colour to the steady tone (a plucked or struck sound). Drums
are one-shot sounds (a pitch-swept sine kick, a tone-plus-noise snare, a high-passed noise hat) added
at each hit, scaled by its velocity. The mix then goes through the genre's effects:
saturation, a brightness low-pass, a noise floor and a decorrelated stereo reverb.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np
from scipy import signal

TABLE_SIZE = 4096
# Parts of a drum kit, in the order of TrackSpec.drums[:, 0], with their mix gain and pan.
DRUM_GAINS = (1.0, 0.7, 0.3)
DRUM_PANS = (0.0, -0.15, 0.3)
ONE_SHOT_SECONDS = 0.6
PEAK = 0.89  # -1 dBFS


@dataclass(frozen=True)
class Timbre:
    """The sound of a pitched instrument: harmonic amplitudes (steady and at the attack) and envelope (s)."""

    harmonics: np.ndarray
    attack_harmonics: np.ndarray
    attack: float
    decay: float
    sustain: float
    release: float


@dataclass(frozen=True)
class Part:
    """One monophonic pitched line: notes as rows (step, length in steps, MIDI pitch, velocity)."""

    notes: np.ndarray
    timbre: Timbre
    level: float
    pan: float
    vibrato: float = 0.0


@dataclass(frozen=True)
class DrumKit:
    """Synthesis settings of the kick, snare and hi-hat (Hz and decay times in s)."""

    kick_pitch: float
    kick_decay: float
    snare_tone: float
    snare_decay: float
    snare_color: float
    hat_decay: float
    hat_cutoff: float


@dataclass(frozen=True)
class TrackSpec:
    """Everything needed to render one clip; steps are 16th notes from the start of the clip."""

    seed: int
    tempo: float
    swing: float
    drums: np.ndarray  # rows (kit part 0/1/2, step, velocity)
    kit: DrumKit
    drum_level: float
    looseness: float  # timing jitter of drum hits (s)
    parts: tuple[Part, ...]
    drive: float  # 0..1 saturation of the pitched parts
    brightness: float  # low-pass cutoff of the mix (Hz)
    noise: float  # noise floor RMS relative to the music
    noise_color: float  # 0 white .. ~1 brown
    reverb: float  # wet level
    reverb_time: float  # RT60 (s)


def step_seconds(steps: np.ndarray, tempo: float, swing: float) -> np.ndarray:
    """Time (s) of 16th-note grid positions; odd steps are delayed by `swing` of a step."""
    odd = np.floor(steps) % 2 == 1
    return (steps + swing * odd) * (15.0 / tempo)


def wavetable(harmonics: np.ndarray, n_harmonics: int) -> np.ndarray:
    """One cycle of the first n_harmonics partials, peak-normalised."""
    count = max(1, min(n_harmonics, harmonics.size))
    cycle = np.arange(TABLE_SIZE) / TABLE_SIZE
    partials = np.sin(2 * np.pi * np.arange(1, count + 1)[:, None] * cycle[None, :])
    table = harmonics[:count] @ partials
    return (table / max(np.abs(table).max(), 1e-9)).astype(np.float32)


def note_index(onsets: np.ndarray, n_samples: int) -> np.ndarray:
    """For every sample, 1 + the index of the (sorted) note sounding there; 0 before the first onset."""
    bounds = np.clip(onsets, 0, n_samples)
    counts = np.diff(np.concatenate([[0], bounds, [n_samples]]))
    return np.repeat(np.arange(onsets.size + 1), counts)


def render_part(part: Part, tempo: float, swing: float, n_samples: int, sample_rate: int) -> np.ndarray:
    """A monophonic line as mono float32 samples: each note sounds until the next one starts.

    The envelope rises over `attack`, decays towards `sustain` with time constant `decay` (the attack
    colour fades with it) and releases with time constant `release` once the note's length has passed.
    """
    notes = part.notes[np.argsort(part.notes[:, 0], kind="stable")]
    steps, lengths, pitches, velocities = notes.T
    onsets = np.round(step_seconds(steps, tempo, swing) * sample_rate).astype(np.int64)
    note = note_index(onsets, n_samples)
    # Index 0 is the silence before the first note.
    onsets = np.concatenate([[0], onsets])
    frequencies = np.concatenate([[1.0], librosa.midi_to_hz(pitches)])
    velocities = np.concatenate([[0.0], velocities]).astype(np.float32)
    held = np.concatenate([[0.0], lengths * (15.0 / tempo)]).astype(np.float32)
    timbre = part.timbre
    clock = np.arange(n_samples, dtype=np.float32)
    age = (clock - onsets.astype(np.float32)[note]) * np.float32(1.0 / sample_rate)
    cycles = (frequencies / sample_rate)[note]
    if part.vibrato:
        cycles *= 1.0 + part.vibrato * np.sin(np.float32(2 * np.pi * 5.5 / sample_rate) * clock)
    np.cumsum(cycles, out=cycles)
    cycles -= np.floor(cycles)
    position = (cycles * TABLE_SIZE).astype(np.int32)
    n_harmonics = int(0.45 * sample_rate / frequencies.max())
    steady = wavetable(timbre.harmonics, n_harmonics)[position]
    bright = wavetable(timbre.attack_harmonics, n_harmonics)[position]
    fading = np.exp(age * np.float32(-1.0 / timbre.decay))
    gain = np.minimum(age * np.float32(1.0 / timbre.attack), np.float32(1.0))
    gain *= np.float32(timbre.sustain) + np.float32(1.0 - timbre.sustain) * fading
    gain *= np.exp(np.maximum(age - held[note], np.float32(0.0)) * np.float32(-1.0 / timbre.release))
    gain *= velocities[note]
    return (steady + fading * (bright - steady)) * gain


def drum_sounds(kit: DrumKit, sample_rate: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One-shot kick, snare and hi-hat samples, each peak-normalised and cut where they have died away."""
    t = np.arange(int(ONE_SHOT_SECONDS * sample_rate)) / sample_rate
    sweep = kit.kick_pitch * (1.0 + 2.5 * np.exp(-t / 0.025))
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / sample_rate) * np.exp(-t / kit.kick_decay)
    top = 0.45 * sample_rate
    band = [min(kit.snare_color, top) / 1.6, min(kit.snare_color * 1.6, top)]
    bandpass = signal.butter(2, band, "bandpass", fs=sample_rate, output="sos")
    rattle = signal.sosfilt(bandpass, rng.standard_normal(t.size))
    snare = 0.6 * np.sin(2 * np.pi * kit.snare_tone * t) * np.exp(-t / 0.04)
    snare = snare + rattle / rattle.std() * np.exp(-t / kit.snare_decay) * 0.5
    highpass = signal.butter(2, min(kit.hat_cutoff, top), "highpass", fs=sample_rate, output="sos")
    hiss = signal.sosfilt(highpass, rng.standard_normal(t.size))
    hat = hiss * np.exp(-t / kit.hat_decay)
    lengths = [7.0 * kit.kick_decay, 7.0 * max(kit.snare_decay, 0.04), 7.0 * kit.hat_decay]
    return [
        (sound[: int(length * sample_rate)] / np.abs(sound).max()).astype(np.float32)
        for sound, length in zip((kick, snare, hat), lengths)
    ]


def render_drums(spec: TrackSpec, n_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The drum kit as stereo float32 samples (2, n): every hit adds its one-shot at its velocity."""
    out = np.zeros((2, n_samples), dtype=np.float32)
    if spec.drums.size == 0:
        return out
    kinds, steps, velocities = spec.drums.T
    times = step_seconds(steps, spec.tempo, spec.swing) + rng.normal(0.0, spec.looseness, steps.size)
    positions = np.round(times * sample_rate).astype(np.int64)
    for kind, sound in enumerate(drum_sounds(spec.kit, sample_rate, rng)):
        track = np.zeros(n_samples + sound.size, dtype=np.float32)
        hits = (kinds == kind) & (positions >= 0) & (positions < n_samples)
        for position, velocity in zip(positions[hits], velocities[hits]):
            track[position : position + sound.size] += np.float32(velocity) * sound
        add_panned(out, track[:n_samples] * np.float32(DRUM_GAINS[kind]), DRUM_PANS[kind])
    return out


def add_panned(out: np.ndarray, mono: np.ndarray, position: float) -> None:
    """Add mono samples into stereo `out` (2, n) with a constant-power pan; position -1 left .. 1 right."""
    angle = (position + 1.0) * np.pi / 4
    out[0] += np.float32(np.cos(angle)) * mono
    out[1] += np.float32(np.sin(angle)) * mono


def saturate(samples: np.ndarray, drive: float) -> np.ndarray:
    """tanh distortion; drive 0 is nearly clean, 1 is heavy."""
    gain = 1.0 + 14.0 * drive**2
    peak = max(float(np.abs(samples).max()), 1e-9)
    return np.tanh(samples * np.float32(gain / peak)) * np.float32(peak / np.tanh(gain))


def coloured_noise(shape: tuple[int, int], color: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise, white (color 0) to brown-ish (color near 1) via a one-pole low-pass."""
    white = rng.standard_normal(shape, dtype=np.float32)
    noise = signal.lfilter([np.float32(1.0 - color)], [np.float32(1.0), np.float32(-color)], white, axis=-1)
    return noise / noise.std()


def reverb(samples: np.ndarray, rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Wet signal of a diffuse room: the mono sum convolved with a decaying noise tail per channel."""
    t = np.arange(int(min(rt60, 2.5) * sample_rate)) / sample_rate
    tails = rng.standard_normal((2, t.size)) * np.exp(-6.9 * t / rt60)
    tails /= np.sqrt((tails**2).sum(axis=1, keepdims=True))
    mono = samples.mean(axis=0, keepdims=True)
    return signal.fftconvolve(mono, tails.astype(np.float32), axes=-1)[:, : mono.shape[1]]


def render_track(spec: TrackSpec, seconds: float, sample_rate: int) -> np.ndarray:
    """Render a clip of `seconds` as float32 stereo (2, n), peak at -1 dBFS."""
    rng = np.random.default_rng(spec.seed)
    n_samples = int(round(seconds * sample_rate))
    tonal = np.zeros((2, n_samples), dtype=np.float32)
    for part in spec.parts:
        line = render_part(part, spec.tempo, spec.swing, n_samples, sample_rate)
        add_panned(tonal, line * np.float32(part.level), part.pan)
    mix = saturate(tonal, spec.drive) + np.float32(spec.drum_level) * render_drums(spec, n_samples, sample_rate, rng)
    lowpass = signal.butter(2, min(spec.brightness, 0.45 * sample_rate), "lowpass", fs=sample_rate, output="sos")
    mix = signal.sosfilt(lowpass.astype(np.float32), mix, axis=-1)
    mix += np.float32(spec.noise * mix.std()) * coloured_noise(mix.shape, spec.noise_color, rng)
    mix += np.float32(spec.reverb) * reverb(mix, spec.reverb_time, sample_rate, rng)
    return (mix * np.float32(PEAK / max(float(np.abs(mix).max()), 1e-9))).astype(np.float32)
