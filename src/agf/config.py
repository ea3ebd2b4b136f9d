"""The one typed configuration of agf: a section per pipeline stage, loaded from TOML.

Every stage function takes its own section. Unknown keys are rejected by name, so a typo in a
config file is an error, not a silently ignored setting. Defaults are the paper's values but for the
deviations docs/protocol.md lists, each with its reason; the `paper` and `fma-medium-paper` presets set every
model and feature setting to the paper's value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

from agf.aggregation import AGGREGATIONS, Aggregation
from agf.errors import ConfigError
from agf.tasks import ARCHS, FACTOR_TASKS, TASKS

# One 1-s patch: 43 frames of 512 samples at 22,050 Hz. The net input length and the shortest usable track.
PATCH_FRAMES = 43
# The smallest input of the nets (agf.models.nets): four 2x2 poolings halve time four times, and frequency is
# halved five times (one (1, 2) pool, four 2x2 pools); smaller inputs pool down to nothing.
MIN_PATCH_FRAMES = 16
# train.crops_per_track = 0: one training crop per CROP_SECONDS of a track's audio per epoch, at least 1, at most
# MAX_CROPS_PER_TRACK (also the largest value it may be set to).
CROP_SECONDS = 30.0
MAX_CROPS_PER_TRACK = 16
MIN_MELS = 32
# Chosen by measurement (docs/factors.md, "Artist bags"): informative artist-group targets.
DIVIDE_BAGS_DEFAULT: tuple[str, ...] = ("m", "d")
ESSENTIA_BINARY_DEFAULT = "standardise"
# Keys that were removed, and where their setting lives now.
MOVED_KEYS: dict[str, str] = {
    "train.seed": "grid.seeds (the seeds of nets and transfer MLPs; `agf train/transfer --seed N`)",
    "transfer.seed": "grid.seeds (the seeds of nets and transfer MLPs; `agf train/transfer --seed N`)",
}


class Range(NamedTuple):
    """The values a number may take: low <= value (low < value when low_open), value <= high likewise."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value: float) -> bool:
        """Whether value lies in the range."""
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        """The range in words, e.g. 'at least 1', 'in (0, 1]', 'in [0, 4294967296)'."""
        low, high = _number(self.low), _number(self.high)
        if self.high is None:
            return f"{'more than' if self.low_open else 'at least'} {low}"
        if self.low is None:
            return f"{'less than' if self.high_open else 'at most'} {high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _number(value: float | None) -> str:
    """A range bound as written: whole numbers in full (2**32 as 4294967296), others as %g; None as ''."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


AT_LEAST_1 = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
FRACTION = Range(0, 1, high_open=True)
SHARE = Range(0, 1)
# Every seed (corpus, splits, noise, factors, run seeds): what NumPy's and scikit-learn's generators take.
SEED = Range(0, 2**32, high_open=True)
# The synthetic corpus: its longest track (a full-length one; FMA's clips are 30 s) and the most sub-genres a
# genre can have (agf.datasets.synth names them from this many prefixes).
MAX_CLIP_SECONDS = 600.0
MAX_SUBGENRES = 12
# The sample rates an MP3 (the corpus's format) can have.
MP3_SAMPLE_RATES: tuple[int, ...] = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

# Set while `lenient` is active: the problems found while building a config, by section (an unknown top-level key
# under its own name).
_lenient: ContextVar[dict[str, list[str]] | None] = ContextVar("agf_lenient_config", default=None)


@contextlib.contextmanager
def lenient() -> Iterator[dict[str, list[str]]]:
    """Within the block a config is built whatever its problems, so that `agf check` can list them all: a section
    out of range keeps its values (config_problems lists them), a value of the wrong type or an unknown key is
    recorded in the yielded {section: problems} and the setting keeps its default."""
    found: dict[str, list[str]] = {}
    token = _lenient.set(found)
    try:
        yield found
    finally:
        _lenient.reset(token)


def config_problems(config: Config) -> dict[str, list[str]]:
    """Every problem of every section of a config, by section name (sections without problems left out)."""
    found = {item.name: getattr(config, item.name).problems() for item in dataclasses.fields(config)}
    return {name: problems for name, problems in found.items() if problems}


class Section:
    """A config section: checks its settings when built (from TOML or by dataclasses.replace)."""

    NAME: ClassVar[str] = ""
    RANGES: ClassVar[dict[str, Range]] = {}
    # Settings added after outputs were keyed on the section, with the value that computes what the section did
    # before them: left out of key_settings at that value, so existing work directories stay valid.
    ADDED_SETTINGS: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems and _lenient.get() is None:
            raise ConfigError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every setting out of its range or not a finite number, as 'section.key = value: must be ...' (for a
        list, 'section.key: value must be ...' per value), then other_problems."""
        found = []
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            allowed = self.RANGES.get(item.name)
            # (how the value is named, the number): a list's values one by one
            named = [(f": {v!r}", v) for v in value] if isinstance(value, tuple) else [(f" = {value!r}:", value)]
            for name, number in named:
                if isinstance(number, float) and not math.isfinite(number):
                    found.append(f"{self.NAME}.{item.name}{name} must be a finite number")
                elif allowed is not None and number is not None and not allowed.allows(number):
                    found.append(f"{self.NAME}.{item.name}{name} must be {allowed.describe()}")
        return found + self.other_problems()

    def other_problems(self) -> list[str]:
        """Checks across settings of the section (none by default)."""
        return []


def _letters(section: str, name: str, values: tuple[str, ...], allowed: tuple[str, ...], empty: bool) -> list[str]:
    """A problem when `values` holds letters outside `allowed` (or nothing, unless `empty` is allowed)."""
    unknown = sorted(set(values) - set(allowed))
    if unknown or (not values and not empty):
        return [f"{section}.{name} = {list(values)!r}: use {'' if empty else 'one or more of '}{', '.join(allowed)}"]
    return []


@dataclass(frozen=True)
class DatasetConfig(Section):
    """Where the tracks come from and how they are split."""

    NAME: ClassVar[str] = "dataset"
    RANGES: ClassVar[dict[str, Range]] = {"val_fraction": FRACTION, "test_fraction": FRACTION, "seed": SEED}

    # fma: metadata_dir (tracks.csv, genres.csv) + audio_dir; manifest: the CSV;
    # synth: the corpus is rendered into WORKDIR/corpus with [synth] settings, then read as FMA.
    kind: Literal["fma", "manifest", "synth"] = "synth"
    metadata_dir: str = ""
    audio_dir: str = ""
    manifest: str = ""
    subset: Literal["small", "medium", "large", "full"] = "medium"
    # official: FMA's artist-disjoint split (or the manifest's / corpus's own); random: the paper's
    # stratified random split (not artist-disjoint); artist: a new artist-disjoint stratified split.
    split: Literal["official", "random", "artist"] = "official"
    val_fraction: float = 0.15
    test_fraction: float = 0.0
    # Seed of generated splits (random, artist).
    seed: int = 0
    strict: bool = False

    def other_problems(self) -> list[str]:
        if self.val_fraction + self.test_fraction >= 1:
            return [f"dataset.val_fraction + dataset.test_fraction = {self.val_fraction + self.test_fraction:g}: "
                    "must be less than 1 (the rest is the training split)"]
        return []


@dataclass(frozen=True)
class NoiseConfig(Section):
    """Label noise injected into any dataset's track table (agf.datasets.noise): album-level genre flips."""

    NAME: ClassVar[str] = "noise"
    RANGES: ClassVar[dict[str, Range]] = {"rate": FRACTION, "subgenre_rate": FRACTION, "seed": SEED}

    # Share of the eligible albums whose genre label is replaced (symmetric: every album; structured: the albums
    # of the confusable genres); 0: no noise injected. A rate that would leave a label half wrong is refused.
    rate: float = 0.0
    # symmetric: any other genre; structured: a genre declared confusable with it in `confusable`.
    kind: Literal["symmetric", "structured"] = "symmetric"
    # Confusable genre pairs for structured noise, as "Rock/Pop".
    confusable: tuple[str, ...] = ()
    # Share of albums whose sub-genre labels are replaced, independently of the genre flips.
    subgenre_rate: float = 0.0
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.rate > 0 or self.subgenre_rate > 0

    def other_problems(self) -> list[str]:
        found = [f"noise.confusable {pair!r}: write a pair of two different genres as 'A/B'"
                 for pair in self.confusable
                 if pair.count("/") != 1 or len({p.strip() for p in pair.split("/")} - {""}) != 2]
        if self.kind == "structured" and self.rate > 0 and not self.confusable:
            found.append("noise.kind = 'structured' needs noise.confusable pairs such as ['Rock/Pop']")
        return found


@dataclass(frozen=True)
class SynthConfig(Section):
    """The synthetic demo corpus (agf synth): a seeded generative model of a music collection."""

    NAME: ClassVar[str] = "synth"
    RANGES: ClassVar[dict[str, Range]] = {
        "n_genres": Range(2), "min_subgenres": AT_LEAST_1, "max_subgenres": Range(1, MAX_SUBGENRES),
        "artists_per_genre": AT_LEAST_1, "albums_per_artist": AT_LEAST_1, "tracks_per_album": AT_LEAST_1,
        "clip_seconds": Range(0, MAX_CLIP_SECONDS, low_open=True), "label_noise": SHARE, "straddle_fraction": SHARE,
        "confusable_pairs": NON_NEGATIVE, "subgenre_borrow": SHARE, "albums_zipf": NON_NEGATIVE,
        "bitrate": AT_LEAST_1, "seed": SEED,
    }

    n_genres: int = 8
    min_subgenres: int = 2
    max_subgenres: int = 3
    artists_per_genre: int = 6
    albums_per_artist: int = 2
    tracks_per_album: int = 5
    clip_seconds: float = 10.0
    # Share of albums whose genre label is wrong (FMA labels whole albums).
    label_noise: float = 0.15
    # Share of artists whose style mixes in a second genre.
    straddle_fraction: float = 0.1
    # Pairs of genres made confusable: the second genre of a pair is a close variant of the first's prototype.
    confusable_pairs: int = 0
    # Share of sub-genres that borrow from another genre (their style moves 30-50 % towards its prototype).
    subgenre_borrow: float = 0.0
    # 0: every artist has albums_per_artist albums. > 1: album counts follow a Zipf law with this exponent,
    # capped at albums_per_artist (most artists 1 album, a few many; FMA's tracks per artist are this skewed).
    albums_zipf: float = 0.0
    sample_rate: int = 44100
    bitrate: int = 128000
    # Seed of the whole corpus: genres, artists, albums, label noise and audio.
    seed: int = 0

    def other_problems(self) -> list[str]:
        found = []
        if self.min_subgenres > self.max_subgenres:
            found.append(f"synth.min_subgenres = {self.min_subgenres}: must be at most max_subgenres "
                         f"({self.max_subgenres})")
        if self.confusable_pairs > self.n_genres // 2:
            found.append(f"synth.confusable_pairs = {self.confusable_pairs}: must be at most n_genres // 2 "
                         f"({self.n_genres // 2})")
        if self.sample_rate not in MP3_SAMPLE_RATES:
            found.append(f"synth.sample_rate = {self.sample_rate}: must be a rate MP3 has: "
                         + ", ".join(map(str, MP3_SAMPLE_RATES)))
        if 0 < self.albums_zipf <= 1:
            found.append(f"synth.albums_zipf = {self.albums_zipf!r}: must be 0 (off) or a Zipf exponent above 1")
        return found


@dataclass(frozen=True)
class FeatureConfig(Section):
    """Decoding and per-track features; every field is part of the feature-store key."""

    NAME: ClassVar[str] = "features"
    RANGES: ClassVar[dict[str, Range]] = {
        "sample_rate": Range(1000), "n_fft": Range(16), "hop_length": AT_LEAST_1, "n_mels": Range(MIN_MELS),
        "fmin": NON_NEGATIVE, "fmax": POSITIVE, "top_db": POSITIVE, "n_mfcc": AT_LEAST_1, "min_frames": AT_LEAST_1,
        "silence_rms_db": Range(high=0), "max_duration": POSITIVE,
    }

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float = 80.0
    n_mfcc: int = 25
    # A track shorter than this many frames cannot give one training patch: status too_short.
    min_frames: int = PATCH_FRAMES
    # A track whose RMS level is below this (dBFS) is flagged silent.
    silence_rms_db: float = -60.0
    # The segment of each track that is used (prepare, transfer and prediction alike): at most max_duration
    # seconds (None: the whole track) starting at `offset`: 'start', 'centre' (centred, as FMA's 30-s clips are
    # cut from full tracks) or a number of seconds (a shorter track keeps what it has from there).
    max_duration: float | None = None
    offset: Literal["start", "centre"] | float = "start"

    ADDED_SETTINGS: ClassVar[dict[str, Any]] = {"max_duration": None, "offset": "start"}

    def other_problems(self) -> list[str]:
        found = []
        if isinstance(self.offset, float) and self.offset < 0:
            found.append(f"features.offset = {self.offset!r}: seconds must be at least 0 (or 'start', 'centre')")
        if self.offset == "centre" and self.max_duration is None:
            found.append("features.offset = 'centre' needs features.max_duration (the length of the centred segment)")
        if self.fmax is not None and not self.fmin < self.fmax <= self.sample_rate / 2:
            found.append(f"features.fmax = {self.fmax!r}: must be above fmin ({self.fmin:g}) and at most half the "
                         f"sample rate ({self.sample_rate / 2:g})")
        if self.n_mfcc > self.n_mels:
            found.append(f"features.n_mfcc = {self.n_mfcc}: must be at most n_mels ({self.n_mels})")
        return found


@dataclass(frozen=True)
class FactorConfig(Section):
    """Artist Group Factors: dictionaries, artist bags of words and LDA (tasks m, d, e, s)."""

    NAME: ClassVar[str] = "factors"
    RANGES: ClassVar[dict[str, Range]] = {
        "n_words": NON_NEGATIVE, "n_topics": NON_NEGATIVE, "frames_per_track": NON_NEGATIVE,
        "dictionary_samples": NON_NEGATIVE, "kmeans_batch_size": AT_LEAST_1,
        "lda_max_iter": AT_LEAST_1, "essentia_timeout_s": POSITIVE, "seed": SEED,
    }

    tasks: tuple[str, ...] = FACTOR_TASKS
    # Dictionary words and LDA topics; 0: sized to the artists that fit them (agf.factors.sizing).
    n_words: int = 2048
    n_topics: int = 40
    # Frames per track sampled for fitting the m/d dictionaries (0 = all frames).
    frames_per_track: int = 0
    # At most this many of those frames, drawn at random, fit the K-means (0 = all of them, as the authors did).
    # MiniBatch K-means over all frames grows faster than the collection (more steps, each slower): over 4 M
    # frames it took 161 s here, 17 M at FMA large's size would take tens of minutes per dictionary; 1 M take 21 s.
    dictionary_samples: int = 1_000_000
    kmeans_batch_size: int = 4096
    # scikit-learn's default, as in the authors' code; 10 fits LDA over 5,000 artists in under a minute.
    lda_max_iter: int = 10
    # Tasks whose artist bags are divided by the artist's number of tracks (the authors' released code divides
    # all four: m, d, e and s; its Essentia AGF defaults to normalize=True). Dividing leaves an e or s bag of about
    # one word, so LDA returns its prior: near-uniform targets (docs/factors.md); agf divides m and d only.
    divide_bags: tuple[str, ...] = DIVIDE_BAGS_DEFAULT
    # Essentia columns are quantile-normalised to a normal distribution (QuantileTransformer, fitted on the fit
    # tracks only); the binary ones (the one-hot keys and scales) as this says: 'standardise' (z-scores, the
    # spread of a quantile-normalised column), 'drop', or 'quantile' (every column quantile-normalised: the
    # paper's; binary ones map to about +-5.2, outliers that dominate the K-means distances).
    essentia_binary: Literal["standardise", "drop", "quantile"] = ESSENTIA_BINARY_DEFAULT
    # A track whose Essentia extraction runs longer than this is recorded as failed and skipped.
    essentia_timeout_s: float = 300.0
    # The authors' leaky protocol: dictionaries, normalisation and LDA are fitted on the training AND validation
    # tracks (their labels and audio), so the validation split that selects models has seen the artist groups.
    # The test split is never fitted on.
    leaky: bool = False
    # A control (seeded), each answering one question: 'random-groups': the artists' group mixtures permuted
    # across artists, so every track of an artist still shares one target (artist identity kept, the audio
    # similarity the groups found gone); 'per-track': the fit tracks' targets permuted across tracks, the same
    # marginal distribution with no artist information (an artist's tracks no longer share a target).
    control: Literal["none", "random-groups", "per-track"] = "none"
    # Seed of the dictionaries (K-means), the quantile normaliser, LDA and the controls.
    seed: int = 0
    # Give the validation tracks of tasks m, d and s targets too, inferred from their own words (frames, labels)
    # by the dictionaries and LDA fitted on the fit tracks, never fitted on: the nets can then choose their epoch
    # and stop early on artist groups of new artists, not on genre alone (an MTN) or by rule (an artist-group STN
    # keeps its last epoch). No effect with `leaky` (validation tracks are fit tracks) or under a control.
    val_targets: bool = False

    ADDED_SETTINGS: ClassVar[dict[str, Any]] = {"val_targets": False}

    def other_problems(self) -> list[str]:
        found = ["factors.n_topics = 1: give at least 2 topics, or 0 (sized to the data)"] if self.n_topics == 1 else []
        return found + (_letters("factors", "tasks", self.tasks, FACTOR_TASKS, empty=True)
                + _letters("factors", "divide_bags", self.divide_bags, FACTOR_TASKS, empty=True))


@dataclass(frozen=True)
class TrainConfig(Section):
    """Source-net training (STN, MTN, wSTN)."""

    NAME: ClassVar[str] = "train"
    RANGES: ClassVar[dict[str, Range]] = {
        "epochs": AT_LEAST_1, "batch_size": AT_LEAST_1, "lr": POSITIVE, "weight_decay": NON_NEGATIVE,
        "patch_frames": Range(MIN_PATCH_FRAMES), "width_factor": NON_NEGATIVE, "loader_workers": NON_NEGATIVE,
        "gain_db": NON_NEGATIVE, "time_mask_frames": NON_NEGATIVE, "freq_mask_bins": NON_NEGATIVE,
        "mixup_alpha": NON_NEGATIVE, "l2_loss": NON_NEGATIVE, "crops_per_track": Range(0, MAX_CROPS_PER_TRACK),
        "patience": NON_NEGATIVE,
    }
    ADDED_SETTINGS: ClassVar[dict[str, Any]] = {
        "gain_db": 0.0, "time_mask_frames": 0, "freq_mask_bins": 0, "mixup_alpha": 0.0, "l2_loss": 0.0,
        "crops_per_track": 1, "patience": 0,
    }

    # The most epochs a net trains (an MTN: epochs x its number of tasks); with patience, a cap.
    epochs: int = 200
    # Early stopping: stop once the selection score (mean validation loss) has not improved for `patience` epochs
    # (an MTN: patience x its number of tasks, as its epochs); train.epochs caps the run. 0: off, every epoch is
    # trained. Needs select_epoch = 'best_val'. A net without validation targets trains to the cap.
    patience: int = 0
    # Random crops of each training track per epoch (independent offsets): 1, one crop (the paper's); N, N crops;
    # 0, sized to the track's length: one crop per CROP_SECONDS (30 s) of audio, rounded down, at least 1 and at
    # most MAX_CROPS_PER_TRACK (so FMA's 30-s clips keep the paper's one crop, a 3-minute track gets 6).
    crops_per_track: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    # Adam's weight decay on convolution and dense weights (not biases, not batch-norm): agf's L2.
    weight_decay: float = 1e-5
    # The authors' L2 instead (set weight_decay = 0 with it): beta x the sum of squared convolution and dense
    # weights and batch-norm scales (gammas; Lasagne's regularizable parameters, not biases or batch-norm shifts)
    # added to the loss; their beta 1e-5. 0: off.
    l2_loss: float = 0.0
    patch_frames: int = PATCH_FRAMES
    # The weights kept: 'best_val', the epoch of the lowest mean validation loss (early stopping on the
    # validation split); 'last', the last epoch (a fixed epoch budget, no selection: the paper's protocol).
    select_epoch: Literal["best_val", "last"] = "best_val"
    # MTN: 'epoch' draws one task per epoch (the authors' code), 'batch' draws one per batch.
    schedule: Literal["epoch", "batch"] = "epoch"
    # wSTN width factor; 0 = computed to match the parameter count of the compared setup.
    width_factor: float = 0.0
    # bf16 autocast (CPU or CUDA); false: fp32 throughout, as the paper.
    amp: bool = True
    channels_last: bool = True
    loader_workers: int = 1
    # Augmentation of training crops (0 = off; validation crops are never augmented), for small collections:
    # a random gain in [-gain_db, +gain_db] dB per crop; SpecAugment-style masks, one time mask of up to
    # time_mask_frames frames and one frequency mask of up to freq_mask_bins mel bands per crop; mixup of crops
    # and targets within a batch with weights drawn from Beta(mixup_alpha, mixup_alpha).
    gain_db: float = 0.0
    time_mask_frames: int = 0
    freq_mask_bins: int = 0
    mixup_alpha: float = 0.0

    def other_problems(self) -> list[str]:
        if self.patience and self.select_epoch == "last":
            return [f"train.patience = {self.patience} with train.select_epoch = 'last': early stopping selects on "
                    "validation; set select_epoch = 'best_val', or patience = 0 for a fixed epoch budget"]
        return []


@dataclass(frozen=True)
class TransferConfig(Section):
    """Window features of source nets -> MLP -> track probabilities."""

    NAME: ClassVar[str] = "transfer"
    RANGES: ClassVar[dict[str, Range]] = {
        "epochs": AT_LEAST_1, "hidden": AT_LEAST_1, "dropout": FRACTION, "lr": POSITIVE, "batch_size": AT_LEAST_1,
        "window_hop": AT_LEAST_1, "max_windows_per_track": NON_NEGATIVE, "l2_loss": NON_NEGATIVE,
    }
    ADDED_SETTINGS: ClassVar[dict[str, Any]] = {
        "max_windows_per_track": 0, "aggregations": (Aggregation.PROBS.value,), "standardize": False, "l2_loss": 0.0,
        "calibrate": True,
    }

    epochs: int = 50
    hidden: int = 1024
    dropout: float = 0.5
    lr: float = 1e-3
    # Windows per MLP step; the paper used 64 across its experiments.
    batch_size: int = 256
    # The authors' L2 term of the transfer MLP: beta x the sum of its two dense layers' squared weights added to
    # the loss (their transfer script did so; its beta is not recorded, their nets' was 1e-5). 0: off (agf's).
    l2_loss: float = 0.0
    window_hop: int = 21
    # 'best_val': the MLP epoch of the lowest validation log loss; 'last': the last epoch (no selection).
    select_epoch: Literal["best_val", "last"] = "best_val"
    # Window features under bf16 autocast with channels_last: 3.2x faster on CPU here, 0.5 % relative error;
    # false: fp32, as the paper.
    amp: bool = True
    # Windows of each training track the MLP sees per epoch, drawn at random every epoch (0: all): full-length
    # tracks give hundreds of windows each, and a few per track and epoch train the MLP in minutes.
    max_windows_per_track: int = 0
    # How window evidence becomes a track's probabilities; with several, each is fitted and the one of the
    # lowest validation log loss is kept: 'probs', the mean of the window probabilities (the paper's);
    # 'log_probs', the mean of their logarithms (renormalised); 'pooled', an MLP on the track's mean and
    # standard deviation of window features (the authors' follow-up work). ["probs"] alone: the paper's, fixed,
    # nothing chosen on validation.
    aggregations: tuple[str, ...] = (Aggregation.PROBS.value, Aggregation.LOG_PROBS.value)
    # Temperature-scale this transfer's track probabilities (and its source nets' genre-head baselines') on the
    # validation tracks: in choosing among the aggregations and in `agf evaluate`. false: temperature 1, the
    # paper's raw probabilities (needed where validation is also the reported split: no test split).
    calibrate: bool = True
    # Standardise the MLP's input by the training windows' mean and standard deviation (folded into the first
    # layer after training, so the saved MLP takes raw features). Without it the MLP lost to the source net's own
    # genre head on validation in 3 of 10 cases (docs/transfer.md); with it, in none. false: the MLP sees the
    # raw features, as the paper.
    standardize: bool = True

    def other_problems(self) -> list[str]:
        return _letters("transfer", "aggregations", self.aggregations, AGGREGATIONS, empty=False)


@dataclass(frozen=True)
class GridConfig(Section):
    """Which task subsets and architectures to run, over which seeds."""

    NAME: ClassVar[str] = "grid"
    RANGES: ClassVar[dict[str, Range]] = {"seeds": SEED}

    tasks: tuple[str, ...] = TASKS
    archs: tuple[str, ...] = ARCHS
    # Empty = all non-empty subsets of `tasks`; otherwise e.g. ["g", "gm", "gmdes"].
    subsets: tuple[str, ...] = ()
    # Run seeds: each seed trains every net and transfer MLP once (initialisation, crops, dropout, shuffling)
    # and fits the classical baseline. Splits, corpus and factors have their own seeds (dataset, synth, factors).
    seeds: tuple[int, ...] = (0,)

    def other_problems(self) -> list[str]:
        found = _letters("grid", "tasks", self.tasks, TASKS, empty=False)
        found += _letters("grid", "archs", self.archs, ARCHS, empty=False)
        if not self.seeds:
            found.append("grid.seeds = []: give at least one run seed, e.g. [0]")
        return found


@dataclass(frozen=True)
class SelectConfig(Section):
    """How the model a run ends with is chosen (agf.selection, docs/selection.md)."""

    NAME: ClassVar[str] = "select"
    RANGES: ClassVar[dict[str, Range]] = {"folds": Range(2, 10), "min_val_artists": AT_LEAST_1,
                                          "fold_seeds": AT_LEAST_1}

    # 'validation': every choice (epochs, aggregation, temperature, model) on the validation split, the model fitted
    # on train. 'crossval': by artist-grouped cross-validation over train + validation (`folds` folds, each training
    # `fold_seeds` run seeds), every choice on out-of-fold predictions, then the final model fitted on train + validation
    # with the chosen epochs (agf.pipeline.crossval). 'auto': 'crossval' when some genre of the training split has
    # fewer than `min_val_artists` artists in the validation split (a small collection), else 'validation'.
    mode: Literal["auto", "validation", "crossval"] = "validation"
    folds: int = 3
    min_val_artists: int = 3
    # Run seeds each fold trains (grid.seeds in turn; at most their number): with 2 or more, how a model's seeds
    # combine (mean or geometric mean) is chosen on out-of-fold predictions too; 1 halves the folds' cost, and the
    # seeds are then averaged.
    fold_seeds: int = 1


# The factor controls of agf.factors (FactorConfig.control), and the study's models: an artist-group model with a
# control is named 'ARCH-CONTROL'.
FACTOR_CONTROLS: tuple[str, ...] = ("none", "random-groups", "per-track")
STUDY_MODELS: tuple[str, ...] = ("genre", "stn", "mtn", "wstn", *(f"{arch}-{control}" for control in
                                                                  FACTOR_CONTROLS[1:] for arch in ("stn", "mtn")))
NOISE_KINDS: tuple[str, ...] = ("symmetric", "structured")


@dataclass(frozen=True)
class StudyConfig(Section):
    """`agf study`: the label-noise study (agf.study), over corpus seeds x split seeds x noise kinds x rates x
    grid.seeds."""

    NAME: ClassVar[str] = "study"
    RANGES: ClassVar[dict[str, Range]] = {
        "min_artists": AT_LEAST_1, "noise_rates": FRACTION, "corpus_seeds": SEED, "split_seeds": SEED,
    }

    noise_rates: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4)
    # symmetric: flips to any other genre; structured: flips within the corpus's confusable genre pairs.
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    # Sub-genre labels are noised too, at the same rate, independently of the genre flips.
    subgenre_noise: bool = True
    # Each corpus seed renders its own corpus (synth.seed); each split seed draws its own artist-disjoint split of
    # every corpus (dataset.seed) and its own label noise. Splits are cheap: the audio and features are reused.
    corpus_seeds: tuple[int, ...] = (0, 1, 2)
    split_seeds: tuple[int, ...] = (0,)
    # The artist-group tasks of the artist-group models (e.g. ['m']: MFCC groups, which never see a label).
    artist_tasks: tuple[str, ...] = ("m",)
    # genre: genre-only STN (the baseline of every comparison); stn / mtn: genre + artist groups; wstn: a genre
    # STN as large as the MTN; *-random-groups / *-per-track: the same with a control's targets (factors.control).
    models: tuple[str, ...] = STUDY_MODELS
    # Artists each genre must have in the validation and in the test split.
    min_artists: int = 5

    def other_problems(self) -> list[str]:
        found = _letters("study", "noise_kinds", self.noise_kinds, NOISE_KINDS, empty=False)
        found += _letters("study", "artist_tasks", self.artist_tasks, FACTOR_TASKS, empty=False)
        found += _letters("study", "models", self.models, STUDY_MODELS, empty=False)
        if "genre" not in self.models:
            found.append("study.models: must include 'genre' (the baseline every model is compared with)")
        if not self.noise_rates or not self.corpus_seeds or not self.split_seeds:
            found.append("study.noise_rates, study.corpus_seeds and study.split_seeds: give at least one value each")
        return found


@dataclass(frozen=True)
class RunConfig(Section):
    """Resources: where to run and how many processes."""

    NAME: ClassVar[str] = "run"
    RANGES: ClassVar[dict[str, Range]] = {"workers": AT_LEAST_1, "threads": NON_NEGATIVE}
    ADDED_SETTINGS: ClassVar[dict[str, Any]] = {"scheduler": ""}

    device: str = "auto"
    workers: int = 2
    workdir: str = "work"
    # torch / BLAS threads of the main process (training, window features, the MLP); 0: torch's default
    # (OMP_NUM_THREADS when set, else the cores). Set 1 when other busy processes share the cores: two threads
    # next to one made steps up to 20x slower here.
    threads: int = 0
    # Where per-item work runs (docs/dask.md): "" on `workers` local processes; "local" on a dask LocalCluster of
    # `workers` single-thread processes; otherwise the address of a running dask scheduler (tcp://host:8786).
    scheduler: str = ""


@dataclass(frozen=True)
class Config:
    """The whole pipeline's settings."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    factors: FactorConfig = field(default_factory=FactorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    run: RunConfig = field(default_factory=RunConfig)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a field annotation; lists become tuples. Raise ConfigError on mismatch."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported setting type {annotation!r}")


def _unknown_key(prefix: str, name: str, names: set[str]) -> str:
    """The problem of a key `name` that is not a setting of [prefix] (or of the top level)."""
    moved = MOVED_KEYS.get(f"{prefix}.{name}")
    if moved:
        return f"{prefix}.{name} is no longer a setting: use {moved}"
    where = f"[{prefix}]" if prefix else "the top level"
    return f"unknown key {prefix + '.' if prefix else ''}{name} in {where}; known keys: {', '.join(sorted(names))}"


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    """Instantiate dataclass `cls` from a dict, rejecting unknown keys and values of the wrong type by their dotted
    name, every one at once (while `lenient`: recorded, and the setting keeps its default)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    # (section, problem): every section's problems, reported at once
    problems = [(prefix or name, _unknown_key(prefix, name, names)) for name in sorted(set(data) - names)]
    kwargs = {}
    for name, value in data.items():
        if name not in names:
            continue
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        try:
            if dataclasses.is_dataclass(hint):
                if not isinstance(value, dict):
                    raise ConfigError(f"{key}: expected a table [{key}]")
                kwargs[name] = _build(hint, value, key)
            else:
                kwargs[name] = _coerce(value, hint, key)
        except ConfigError as exc:
            problems.append((key.split(".")[0], str(exc)))
    found = _lenient.get()
    if problems and found is None:
        raise ConfigError("; ".join(problem for _, problem in problems))
    for section, problem in problems:
        found.setdefault(section, []).append(problem)
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a validated Config from nested dicts (as parsed from TOML)."""
    return _build(Config, data, "")


def load_config(path: str | Path) -> Config:
    """Load and validate a TOML config file, or a preset name such as 'demo'."""
    path = resolve_config_path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return config_from_dict(data)


PRESETS_DIR = Path(__file__).parent / "presets"


def resolve_config_path(path: str | Path) -> Path:
    """A path to a TOML file, or the name of a preset shipped with agf."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    preset = PRESETS_DIR / f"{path}.toml"
    if preset.is_file():
        return preset
    names = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.toml")))
    raise ConfigError(f"no config file {str(path)!r} and no preset of that name (presets: {names or 'none'})")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config (or one section) as plain nested dicts, tuples as lists; None values dropped (TOML has no null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(dataclasses.asdict(config))


def key_settings(config: Any) -> dict[str, Any]:
    """A config or section as config_to_dict gives it, without the settings a section added later that are at
    their neutral value (Section.ADDED_SETTINGS): what keys outputs, so existing work directories stay valid."""
    if isinstance(config, Config):
        return {section.name: key_settings(getattr(config, section.name)) for section in dataclasses.fields(config)}
    added = getattr(config, "ADDED_SETTINGS", {})
    return {name: value for name, value in config_to_dict(config).items()
            if not (name in added and getattr(config, name) == added[name])}


def config_to_toml(config: Config) -> str:
    """The config as TOML text that load_config reads back to an equal config."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    data = config_to_dict(config)
    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, section in data.items():
        if isinstance(section, dict):
            lines.append(f"\n[{name}]")
            lines += [f"{k} = {value(v)}" for k, v in section.items()]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we write must read back
    return text
