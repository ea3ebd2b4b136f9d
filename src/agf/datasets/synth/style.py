"""The style space of the synthetic collection, and how a style becomes the notes and sounds of one track.

A Style is a point in a space of named parameters (tempo, swing, drum sounds, the timbre and envelope of
bass, pad and lead, brightness, distortion, noise, reverb), each stored on the unit interval, plus discrete
choices (drum pattern family, bass-line behaviour, pad playing style, modes, chord progressions, harmonic
rhythm). A genre is a prototype built from a hand-written archetype; sub-genres, artists and albums are
random variations of it. An artist's Signature fixes what makes its tracks sound alike (its drum pattern,
bass figure, motif, keys, timbre colour); track_spec realises one track of it as a render.TrackSpec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from agf.datasets.synth.render import DrumKit, Part, Timbre, TrackSpec

# How far a genre's unanchored parameters spread around the middle of their range (1 = the whole range).
GENRE_SPREAD = 0.8
# Standard deviations, in unit-interval terms, of the variations below a genre.
SUBGENRE_SPREAD = 0.08
ARTIST_SPREAD = 0.14
ALBUM_SPREAD = 0.05
# Probability that a sub-genre / artist swaps each discrete choice (drums, bass, pad) for another one.
SUBGENRE_SWITCH = 0.25
ARTIST_SWITCH = 0.15
N_HARMONICS = 16
INSTRUMENTS = ("bass", "pad", "lead")


@dataclass(frozen=True)
class Param:
    """A style parameter's range (log ranges are interpolated geometrically) and where in it
    (0..1) a genre's value typically lies when its archetype does not fix it."""

    lo: float
    hi: float
    log: bool = False
    typical: float = 0.5

    def value(self, unit: float) -> float:
        """The parameter value at position `unit` (0..1) of the range."""
        if self.log:
            return float(self.lo * (self.hi / self.lo) ** unit)
        return float(self.lo + (self.hi - self.lo) * unit)

    def unit(self, value: float) -> float:
        """The position (0..1) of `value` in the range."""
        if self.log:
            return float(np.clip(math.log(value / self.lo) / math.log(self.hi / self.lo), 0.0, 1.0))
        return float(np.clip((value - self.lo) / (self.hi - self.lo), 0.0, 1.0))


def _instrument_params(name: str, register: tuple[float, float], attack: tuple[float, float],
                       decay: tuple[float, float]) -> dict[str, Param]:
    """The timbre and envelope parameters of one pitched instrument."""
    return {
        f"{name}_level": Param(0.2, 1.0),
        f"{name}_slope": Param(0.4, 3.0),  # harmonic roll-off exponent: low = bright, buzzy
        f"{name}_odd": Param(0.0, 1.0),  # 1 = odd harmonics only (hollow, clarinet/square-like)
        f"{name}_pluck": Param(0.0, 1.0),  # how much brighter the attack is than the steady tone
        f"{name}_attack": Param(*attack, log=True),
        f"{name}_decay": Param(*decay, log=True),
        f"{name}_sustain": Param(0.0, 0.9),
        f"{name}_release": Param(0.03, 0.6, log=True),
        f"{name}_register": Param(*register),  # MIDI pitch of the lowest tonic
    }


PARAMS: dict[str, Param] = {
    "tempo": Param(66.0, 176.0),
    "swing": Param(0.0, 0.33),
    "looseness": Param(0.0, 0.012),
    "drum_level": Param(0.1, 1.0),
    "kick_pitch": Param(38.0, 80.0, log=True),
    "kick_decay": Param(0.06, 0.45, log=True),
    "snare_tone": Param(140.0, 320.0, log=True),
    "snare_decay": Param(0.04, 0.3, log=True),
    "snare_color": Param(800.0, 7000.0, log=True),
    "hat_decay": Param(0.015, 0.2, log=True),
    "hat_cutoff": Param(4000.0, 12000.0, log=True),
    **_instrument_params("bass", (28.0, 43.0), (0.002, 0.03), (0.08, 1.0)),
    **_instrument_params("pad", (50.0, 62.0), (0.005, 0.6), (0.2, 2.0)),
    **_instrument_params("lead", (62.0, 78.0), (0.002, 0.08), (0.08, 1.2)),
    "lead_vibrato": Param(0.0, 0.012),
    "lead_density": Param(0.2, 0.75),  # share of 16th steps that start a motif note
    "width": Param(0.0, 0.8),  # stereo spread of the pad voices
    "brightness": Param(1500.0, 16000.0, log=True),
    "drive": Param(0.0, 1.0, typical=0.1),
    "noise": Param(0.0, 0.12, typical=0.25),
    "noise_color": Param(0.0, 0.98),
    "reverb": Param(0.0, 0.6, typical=0.35),
    "reverb_time": Param(0.2, 2.5, log=True),
}
PARAM_INDEX = {name: i for i, name in enumerate(PARAMS)}
# What differs between albums of one artist: the production, not the playing.
PRODUCTION = ("brightness", "drive", "noise", "noise_color", "reverb", "reverb_time", "width")

MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
}
# Chord roots as scale degrees (0 = tonic).
PROGRESSIONS: tuple[tuple[int, ...], ...] = (
    (0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 0), (1, 4, 0, 0), (0, 0, 3, 3), (0, 6, 5, 6),
    (0, 3, 0, 4), (5, 3, 0, 4), (0, 2, 5, 4), (0, 5, 1, 4), (0, 3, 6, 2),
)


def _steps(*steps: int, p: float = 1.0) -> dict[int, float]:
    """Hit probabilities for the given 16th steps of a bar."""
    return {step: p for step in steps}


def _family(kick: dict[int, float], snare: dict[int, float], hat: dict[int, float]) -> np.ndarray:
    """A drum pattern family: (3, 16) hit probabilities for kick, snare, hat."""
    probs = np.zeros((3, 16))
    for row, hits in enumerate((kick, snare, hat)):
        for step, p in hits.items():
            probs[row, step] = p
    return probs


EIGHTHS = tuple(range(0, 16, 2))
SIXTEENTHS = tuple(range(16))
DRUM_FAMILIES: dict[str, np.ndarray] = {
    "four on the floor": _family(
        _steps(0, 4, 8, 12), _steps(4, 12, p=0.9), {**_steps(*SIXTEENTHS, p=0.25), **_steps(2, 6, 10, 14)}
    ),
    "backbeat": _family({**_steps(0, 8), **_steps(6, 10, p=0.4)}, _steps(4, 12), _steps(*EIGHTHS)),
    "breakbeat": _family(
        {**_steps(0, 10), **_steps(3, 7, p=0.5)}, {**_steps(4, 12), **_steps(9, 15, p=0.3)}, _steps(*SIXTEENTHS, p=0.6)
    ),
    "half-time": _family({**_steps(0), **_steps(7, 10, 11, p=0.6)}, _steps(8), _steps(*SIXTEENTHS, p=0.85)),
    "shuffle": _family(_steps(0, 8), _steps(4, 12), _steps(0, 3, 4, 7, 8, 11, 12, 15)),
    "sparse": _family({**_steps(0, p=0.7), **_steps(8, p=0.3)}, _steps(12, p=0.25), _steps(*EIGHTHS, p=0.2)),
    "clave": _family(_steps(0, 6, 8, 14), _steps(3, 6, 10, 12), _steps(*EIGHTHS, p=0.8)),
    "driving": _family(_steps(*EIGHTHS, p=0.8), _steps(4, 12), _steps(*EIGHTHS)),
}
# Bass figures over one bar: rows (step, length in steps, scale degrees above the chord root, octave).
BASS_FIGURES: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    "pulse": tuple((s, 2, 0, 0) for s in EIGHTHS),
    "sustain": ((0, 16, 0, 0),),
    "walking": ((0, 4, 0, 0), (4, 4, 2, 0), (8, 4, 4, 0), (12, 4, 5, 0)),
    "syncopated": ((0, 3, 0, 0), (3, 3, 0, 0), (6, 2, 4, 0), (10, 2, 0, 1), (12, 4, 4, 0)),
    "octave": tuple((s, 2, 0, (s // 2) % 2) for s in EIGHTHS),
    "arpeggio": tuple((s, 2, (0, 2, 4, 2)[i % 4], 0) for i, s in enumerate(EIGHTHS)),
}
PAD_STYLES = ("sustain", "stabs", "arpeggio")


@dataclass(frozen=True)
class Archetype:
    """A hand-written genre prototype: its discrete choices and anchored parameter values."""

    name: str
    drums: str
    bass: str
    pad: str
    modes: tuple[str, ...]
    chord_steps: int  # 16th steps per chord
    anchors: dict[str, float] = field(default_factory=dict)


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype("Glasswave", "four on the floor", "pulse", "sustain", ("minor", "dorian"), 16,
              {"tempo": 122, "brightness": 9000, "drive": 0.1, "pad_attack": 0.2, "lead_odd": 0.7}),
    Archetype("Ironcore", "driving", "pulse", "stabs", ("phrygian", "minor"), 16,
              {"tempo": 160, "drive": 0.95, "brightness": 6000, "pad_slope": 0.6, "drum_level": 0.9}),
    Archetype("Dustfolk", "sparse", "sustain", "arpeggio", ("major", "mixolydian"), 32,
              {"tempo": 96, "drive": 0.0, "brightness": 5000, "pad_pluck": 0.9, "pad_decay": 0.5, "drum_level": 0.25}),
    Archetype("Velvet Soul", "backbeat", "syncopated", "sustain", ("dorian", "major"), 16,
              {"tempo": 90, "swing": 0.12, "drive": 0.15, "pad_slope": 2.2, "brightness": 7000}),
    Archetype("Brass Swing", "shuffle", "walking", "stabs", ("major", "dorian"), 8,
              {"tempo": 140, "swing": 0.3, "drive": 0.05, "lead_slope": 1.0, "lead_odd": 0.2, "drum_level": 0.5}),
    Archetype("Tidal Ambient", "sparse", "sustain", "sustain", ("lydian", "major"), 32,
              {"tempo": 75, "drive": 0.0, "reverb": 0.55, "reverb_time": 2.2, "brightness": 3500, "drum_level": 0.12,
               "pad_attack": 0.5}),
    Archetype("Frost Hop", "half-time", "sustain", "stabs", ("minor", "harmonic minor"), 16,
              {"tempo": 86, "noise": 0.1, "noise_color": 0.9, "brightness": 4500, "bass_register": 29, "kick_decay": 0.4}),
    Archetype("Coral Dub", "clave", "syncopated", "stabs", ("major", "mixolydian"), 16,
              {"tempo": 76, "reverb": 0.5, "reverb_time": 1.5, "bass_slope": 2.8, "brightness": 5500}),
    Archetype("Neon Trance", "four on the floor", "octave", "arpeggio", ("minor", "harmonic minor"), 16,
              {"tempo": 140, "brightness": 13000, "pad_slope": 0.7, "lead_slope": 0.8, "reverb": 0.35}),
    Archetype("Rust Blues", "shuffle", "arpeggio", "stabs", ("mixolydian",), 16,
              {"tempo": 84, "swing": 0.28, "drive": 0.45, "lead_vibrato": 0.01, "brightness": 5000}),
    Archetype("Circuit Funk", "breakbeat", "syncopated", "stabs", ("dorian", "mixolydian"), 16,
              {"tempo": 106, "swing": 0.08, "drive": 0.3, "bass_pluck": 0.9, "lead_pluck": 0.8, "brightness": 10000}),
    Archetype("Moss Rock", "backbeat", "pulse", "sustain", ("major", "mixolydian"), 16,
              {"tempo": 128, "drive": 0.6, "pad_slope": 0.9, "brightness": 7500, "drum_level": 0.8}),
)


@dataclass(frozen=True)
class Style:
    """A point in the style space: unit-interval values (PARAMS order) and discrete choices."""

    units: np.ndarray
    drums: str
    bass: str
    pad: str
    modes: tuple[str, ...]
    progressions: tuple[tuple[int, ...], ...]
    chord_steps: int

    def value(self, name: str) -> float:
        """A parameter's value in its own unit (BPM, Hz, seconds, ...)."""
        return PARAMS[name].value(self.units[PARAM_INDEX[name]])


def prototype_style(archetype: Archetype, rng: np.random.Generator) -> Style:
    """A genre's style: anchored parameters fixed, the others spread around their typical values."""
    typical = np.array([param.typical for param in PARAMS.values()])
    units = np.clip(typical + GENRE_SPREAD * (rng.random(len(PARAMS)) - 0.5), 0.0, 1.0)
    for name, value in archetype.anchors.items():
        units[PARAM_INDEX[name]] = PARAMS[name].unit(value)
    chosen = rng.choice(len(PROGRESSIONS), size=3, replace=False)
    return Style(units, archetype.drums, archetype.bass, archetype.pad, archetype.modes,
                 tuple(PROGRESSIONS[i] for i in chosen), archetype.chord_steps)


def vary_style(style: Style, spread: float, switch: float, rng: np.random.Generator,
               names: tuple[str, ...] | None = None) -> Style:
    """A variation: Gaussian steps of the (named, else all) parameters; discrete choices swapped with prob. switch."""
    steps = rng.normal(0.0, spread, len(PARAMS))
    if names is not None:
        steps *= np.isin(list(PARAMS), names)
    swaps = rng.random(3) < switch
    return replace(
        style,
        units=np.clip(style.units + steps, 0.0, 1.0),
        drums=str(rng.choice(list(DRUM_FAMILIES))) if swaps[0] else style.drums,
        bass=str(rng.choice(list(BASS_FIGURES))) if swaps[1] else style.bass,
        pad=str(rng.choice(PAD_STYLES)) if swaps[2] else style.pad,
    )


def blend_styles(base: Style, other: Style, weight: float, rng: np.random.Generator) -> Style:
    """A style between two genres: parameters interpolated, each discrete choice taken from `other` with prob. weight."""
    take = rng.random(4) < weight
    return replace(
        base,
        units=(1.0 - weight) * base.units + weight * other.units,
        drums=other.drums if take[0] else base.drums,
        bass=other.bass if take[1] else base.bass,
        pad=other.pad if take[2] else base.pad,
        modes=other.modes if take[3] else base.modes,
    )


@dataclass(frozen=True)
class Signature:
    """What makes an artist recognisable: its style and the figures it plays in every track."""

    style: Style
    drum_pattern: np.ndarray  # (3, 16) velocities of kick, snare, hat; 0 = no hit
    bass_figure: np.ndarray  # rows (step, length, degree above the chord root, octave)
    stab_steps: np.ndarray  # pad stab positions in a bar
    motif: np.ndarray  # rows (step, length, scale degree) over two bars
    keys: tuple[int, ...]  # preferred tonic pitch classes
    mode: str
    progressions: tuple[tuple[int, ...], ...]
    colours: np.ndarray  # (3, N_HARMONICS) per-instrument harmonic colour (bass, pad, lead)


def _motif(density: float, rng: np.random.Generator) -> np.ndarray:
    """A two-bar melody: onsets favour even steps, pitches are a bounded random walk over scale degrees."""
    weights = np.where(np.arange(32) % 2 == 0, 1.5, 0.5) * density
    onsets = np.flatnonzero(rng.random(32) < weights)
    if onsets.size < 3:
        onsets = np.sort(rng.choice(np.arange(0, 32, 2), size=3, replace=False))
    lengths = np.minimum(np.diff(np.append(onsets, 32)), 4)
    degrees = np.clip(rng.choice([0, 2, 4]) + np.cumsum(rng.choice([-2, -1, -1, 1, 1, 2], onsets.size)), -3, 9)
    return np.stack([onsets, lengths, degrees], axis=1).astype(float)


def artist_signature(style: Style, rng: np.random.Generator) -> Signature:
    """Draw an artist's fixed figures and preferences from its style."""
    probs = DRUM_FAMILIES[style.drums]
    drum_pattern = (rng.random(probs.shape) < probs) * rng.uniform(0.55, 1.0, probs.shape)
    figure = np.array(BASS_FIGURES[style.bass], dtype=float)
    keep = (rng.random(len(figure)) > 0.15) | (figure[:, 0] == 0)
    stab_candidates = np.array([0, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14])
    stab_steps = np.sort(rng.choice(stab_candidates, size=int(rng.integers(3, 6)), replace=False))
    n_progressions = int(rng.integers(1, 3))
    chosen = rng.choice(len(style.progressions), size=n_progressions, replace=False)
    return Signature(
        style=style,
        drum_pattern=drum_pattern,
        bass_figure=figure[keep],
        stab_steps=stab_steps.astype(float),
        motif=_motif(style.value("lead_density"), rng),
        keys=tuple(int(k) for k in rng.choice(12, size=2, replace=False)),
        mode=str(rng.choice(style.modes)),
        progressions=tuple(style.progressions[i] for i in chosen),
        colours=rng.lognormal(0.0, 0.4, (len(INSTRUMENTS), N_HARMONICS)),
    )


def album_production(signature: Signature, rng: np.random.Generator) -> Style:
    """An album's style: the artist's, with its own production (brightness, distortion, noise, room)."""
    return vary_style(signature.style, ALBUM_SPREAD, 0.0, rng, names=PRODUCTION)


def _pitches(tonic: int, mode: str, degrees: np.ndarray) -> np.ndarray:
    """MIDI pitches of scale degrees (any integer, octaves wrap) above a tonic MIDI pitch."""
    degrees = degrees.astype(int)
    return tonic + 12 * (degrees // 7) + np.array(MODES[mode])[degrees % 7]


def _tonic_in(register: float, key: int) -> int:
    """The lowest MIDI pitch of pitch class `key` at or above `register`."""
    low = int(round(register))
    return low + (key - low) % 12


def _timbre(style: Style, instrument: str, colour: np.ndarray) -> Timbre:
    """An instrument's Timbre from its style parameters and the artist's harmonic colour."""
    k = np.arange(1, N_HARMONICS + 1)
    value = {name: style.value(f"{instrument}_{name}") for name in ("odd", "slope", "pluck", "attack", "decay",
                                                                   "sustain", "release")}
    shape = np.where(k % 2 == 0, 1.0 - value["odd"], 1.0) * colour
    shape[0] = max(shape[0], 0.3)
    return Timbre(
        harmonics=k ** -value["slope"] * shape,
        attack_harmonics=k ** -(value["slope"] * (1.0 - 0.75 * value["pluck"])) * shape,
        attack=value["attack"],
        decay=value["decay"],
        sustain=value["sustain"],
        release=value["release"],
    )


@dataclass(frozen=True)
class _Grid:
    """The bars a clip spans and its harmony: chord root (scale degree) at each step."""

    first_bar: int
    last_bar: int
    phase: int  # the clip starts at this 16th of a bar
    progression: tuple[int, ...]
    chord_steps: int

    def bar_steps(self, positions: np.ndarray) -> np.ndarray:
        """Clip steps of in-bar positions, for every bar the clip spans (bar-major)."""
        bars = np.arange(self.first_bar, self.last_bar + 1)
        return (bars[:, None] * 16 + positions[None, :] - self.phase).ravel()

    def roots(self, steps: np.ndarray) -> np.ndarray:
        """The chord root under each clip step."""
        chord = np.floor((steps + self.phase) / self.chord_steps).astype(int) % len(self.progression)
        return np.array(self.progression)[chord]


def _notes(steps: np.ndarray, lengths: np.ndarray, pitches: np.ndarray, velocities: np.ndarray) -> np.ndarray:
    """Note rows (step, length, pitch, velocity)."""
    return np.stack(np.broadcast_arrays(steps, lengths, pitches, velocities), axis=1).astype(float)


def _bass(sig: Signature, grid: _Grid, tonic: int, rng: np.random.Generator) -> np.ndarray:
    """The bass figure over every bar, following the chord roots."""
    figure = sig.bass_figure
    steps = grid.bar_steps(figure[:, 0])
    count = steps.size // len(figure)
    degrees = grid.roots(steps) + np.tile(figure[:, 2], count)
    pitches = _pitches(tonic, sig.mode, degrees) + 12 * np.tile(figure[:, 3], count)
    return _notes(steps, np.tile(figure[:, 1], count), pitches, rng.uniform(0.8, 1.0, steps.size))


def _pad_voices(sig: Signature, pad_style: str, grid: _Grid, register: float, key: int,
                rng: np.random.Generator) -> list[np.ndarray]:
    """Chord notes: held chords, rhythmic stabs, or one arpeggiated voice, folded into the pad register."""
    low = int(round(register))
    tonic = _tonic_in(register, key)

    def fold(pitches: np.ndarray) -> np.ndarray:
        return low + (pitches - low) % 12

    if pad_style == "arpeggio":
        steps = grid.bar_steps(np.arange(0, 16, 2, dtype=float))
        tones = np.array([0, 2, 4, 2])[(np.arange(steps.size)) % 4]
        pitches = fold(_pitches(tonic, sig.mode, grid.roots(steps) + tones))
        return [_notes(steps, 2.0, pitches, rng.uniform(0.6, 0.9, steps.size))]
    if pad_style == "stabs":
        steps, length = grid.bar_steps(sig.stab_steps), 1.5
    else:
        starts = np.arange(grid.first_bar * 16, (grid.last_bar + 1) * 16, grid.chord_steps, dtype=float)
        steps, length = starts - grid.phase, float(grid.chord_steps)
    roots = grid.roots(steps)
    velocity = rng.uniform(0.6, 0.85, steps.size)
    return [_notes(steps, length, fold(_pitches(tonic, sig.mode, roots + 2 * voice)), velocity) for voice in range(3)]


# Scale-degree corrections that move a note to the nearest chord tone (root, third, fifth) of a chord.
_TO_CHORD_TONE = np.array([0, -1, 0, -1, 0, -1, 1])


def _lead(sig: Signature, grid: _Grid, tonic: int, rng: np.random.Generator) -> np.ndarray:
    """The artist's motif, slightly varied per track, repeated every two bars with some phrases left out."""
    motif = sig.motif.copy()
    changed = rng.choice(len(motif), size=min(len(motif), int(rng.poisson(1.0))), replace=False)
    motif[changed, 2] += rng.choice([-1, 1], size=changed.size)
    phrases = np.arange(math.floor(grid.first_bar / 2), grid.last_bar // 2 + 1)
    played = phrases[(rng.random(phrases.size) < 0.8) | (phrases == 0)]
    steps = (played[:, None] * 32 + motif[None, :, 0] - grid.phase).ravel()
    degrees = np.tile(motif[:, 2], played.size).astype(int)
    strong = np.tile(motif[:, 0] % 4 == 0, played.size)
    roots = grid.roots(steps)
    degrees = np.where(strong, degrees + _TO_CHORD_TONE[(degrees - roots) % 7], degrees)
    velocity = np.where(strong, 0.9, 0.7) * rng.uniform(0.85, 1.0, steps.size)
    return _notes(steps, np.tile(motif[:, 1], played.size), _pitches(tonic, sig.mode, degrees), velocity)


def _drums(sig: Signature, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """Drum hits (kit part, step, velocity): the artist's pattern in every bar, with fills every fourth bar."""
    rows = []
    for kind in range(3):
        positions = np.flatnonzero(sig.drum_pattern[kind])
        steps = grid.bar_steps(positions.astype(float))
        velocity = np.tile(sig.drum_pattern[kind, positions], steps.size // max(positions.size, 1))
        rows.append(np.stack([np.full(steps.size, kind), steps, velocity * rng.uniform(0.85, 1.0, steps.size)], axis=1))
    fill_bars = [b for b in range(grid.first_bar, grid.last_bar + 1) if b % 4 == 3 and rng.random() < 0.5]
    for bar in fill_bars:
        steps = bar * 16 + np.arange(12, 16) - grid.phase
        rows.append(np.stack([np.ones(4), steps, np.linspace(0.5, 0.9, 4)], axis=1))
    return np.concatenate(rows)


def _kit(style: Style) -> DrumKit:
    """The drum sounds of a style."""
    names = ("kick_pitch", "kick_decay", "snare_tone", "snare_decay", "snare_color", "hat_decay", "hat_cutoff")
    return DrumKit(**{name: style.value(name) for name in names})


def track_spec(sig: Signature, production: Style, seconds: float, seed: int) -> TrackSpec:
    """One track of an artist on an album: tempo, key and progression drawn from the artist's, all parts written out."""
    rng = np.random.default_rng(seed)
    style = sig.style
    tempo = style.value("tempo") * (1.0 + rng.normal(0.0, 0.02))
    key = int(rng.choice(sig.keys))
    steps_total = math.ceil(seconds * tempo / 15.0)
    phase = int(rng.integers(16))
    grid = _Grid(-1, (steps_total + phase) // 16 + 1, phase,
                 sig.progressions[int(rng.integers(len(sig.progressions)))], style.chord_steps)
    timbres = {name: _timbre(style, name, colour) for name, colour in zip(INSTRUMENTS, sig.colours)}
    level = {name: style.value(f"{name}_level") * rng.uniform(0.85, 1.15) for name in INSTRUMENTS}
    width = production.value("width")
    pads = _pad_voices(sig, style.pad, grid, style.value("pad_register"), key, rng)
    pans = np.linspace(-width, width, len(pads)) if len(pads) > 1 else [rng.uniform(-width, width)]
    parts = (
        Part(_bass(sig, grid, _tonic_in(style.value("bass_register"), key), rng), timbres["bass"], level["bass"], 0.0),
        *(Part(notes, timbres["pad"], level["pad"] / len(pads) ** 0.5, float(p)) for notes, p in zip(pads, pans)),
        Part(_lead(sig, grid, _tonic_in(style.value("lead_register"), key), rng), timbres["lead"], level["lead"],
             float(rng.uniform(-0.3, 0.3)), vibrato=style.value("lead_vibrato")),
    )
    return TrackSpec(
        seed=int(rng.integers(2**63)),
        tempo=tempo,
        swing=style.value("swing"),
        drums=_drums(sig, grid, rng),
        kit=_kit(style),
        drum_level=style.value("drum_level"),
        looseness=style.value("looseness"),
        parts=parts,
        drive=production.value("drive"),
        brightness=production.value("brightness"),
        noise=production.value("noise"),
        noise_color=production.value("noise_color"),
        reverb=production.value("reverb"),
        reverb_time=production.value("reverb_time"),
    )
