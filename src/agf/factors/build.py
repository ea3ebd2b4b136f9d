"""`agf factors`: the artist group factors of tasks m, d, e, s, built into a directory, resumably.

Per task, under OUT_DIR/<task>/:
    dictionary.npy          K-means centres (m, d: over frames; e: over quantile-normalised tracks)
    quantiles.npy           e only: the QuantileTransformer's quantiles (n_quantiles, dims) ...
    references.npy          ... and references (n_quantiles,), enough to rebuild the transform
    descriptors.json        e only: the Essentia descriptor names kept (the columns of the dictionary) and
                            which of them were quantile-normalised
    vocabulary.json         s only: the genre labels that are the words
    lda_components.npy      the LDA topic-word matrix (n_topics, n_words)
    artist_topics.parquet   artist_id, topic_0..topic_{K-1} (rows sum to 1)
    track_targets.parquet   track_id, topic_0..topic_{K-1}: the soft target of every fit track
    val_targets.parquet     factors.val_targets (m, d, s): the same for the validation tracks, inferred from their
                            words by the dictionary and LDA above (fitted without them)
    heatmap.png             mean topic mixture per genre
    summary.json            sizes, empty bags, perplexity, concentration, NMI with genre
    done.json               the completion marker (agf.workdir), written last, holding the key of the inputs

Only plain arrays, Parquet and JSON are written: loading a model file never executes code.
Fit tracks are the training tracks (FactorConfig.leaky = False) or the training and validation tracks (the
authors' leaky protocol); dictionaries, normalisation and LDA see nothing else. Fit tracks get targets; with
factors.val_targets the validation tracks (not fitted on) get targets inferred by those fitted parts, for choosing
epochs only. Test tracks never get targets and are never fitted on.
This module is the only one of agf.factors that touches the feature store.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.preprocessing import QuantileTransformer
from tqdm.auto import tqdm

from agf.config import FactorConfig
from agf.datasets.table import VAL, fit_splits, split_mask
from agf.errors import FactorError, PipelineError, TaskUnavailable
from agf.factors.bags import artist_bags
from agf.factors.dictionary import (
    assign_words,
    fit_dictionary,
    sample_rows,
    words_per_array,
)
from agf.factors.essentia_features import essentia_unavailable_reason, extract_many
from agf.factors.lda import TopicModel, fit_artist_topics
from agf.factors.plots import plot_genre_mixtures
from agf.factors.summary import genre_information, topic_concentration
from agf.fileio import (
    appending,
    read_json,
    stable_key,
    write_json_atomic,
    write_npy_atomic,
    write_parquet_atomic,
)
from agf.tasks import TASK_TITLES
from agf.workdir import clear_done, is_done, mark_done


FORMAT = 1
ESSENTIA_KIND = "essentia"
# The fit tracks' targets, then the validation tracks' inferred ones (factors.val_targets; absent without).
TARGET_FILES: tuple[str, ...] = ("track_targets.parquet", "val_targets.parquet")


class Store(Protocol):
    """What the factors stage needs of agf.store.FeatureStore."""

    root: Path

    def mfcc(self, track_id: str) -> np.ndarray: ...
    def dmfcc(self, track_id: str) -> np.ndarray: ...
    def has_array(self, kind: str, track_id: str) -> bool: ...
    def write_array(self, kind: str, track_id: str, array: np.ndarray) -> None: ...
    def read_array(self, kind: str, track_id: str) -> np.ndarray: ...


@dataclass
class FactorResult:
    """One task's artist group factors: per artist, per fit track, and the summary; with factors.val_targets, the
    validation tracks' inferred targets."""

    task: str
    artist_topics: pd.DataFrame
    track_targets: pd.DataFrame
    summary: dict[str, Any]
    val_targets: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(index=pd.Index([], name="track_id")))

    @property
    def available(self) -> bool:
        """Whether the task was built (False when e.g. Essentia is unavailable)."""
        return self.summary["status"] == "ok"


@dataclass
class Words:
    """A task's vocabulary size and, lazily, the word indices of each fit track that has data; `words_of` gives
    those of other tracks (a frame of the table: track_id, ...) by the fitted vocabulary (None: the task cannot)."""

    n_words: int
    track_ids: list[str]
    words: Iterable[np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)
    words_of: Callable[[pd.DataFrame], Iterable[np.ndarray]] | None = None


CONTROL_STREAM = 7  # the controls' random stream of factors.seed


def fit_tracks(tracks: pd.DataFrame, leaky: bool) -> pd.DataFrame:
    """The tracks everything is fitted on: the training split, or training + validation when `leaky` (the
    authors' protocol); never the test split."""
    chosen = tracks[split_mask(tracks, *fit_splits(leaky))]
    return chosen.sort_values("track_id").reset_index(drop=True)


def inferred_tracks(tracks: pd.DataFrame, config: FactorConfig) -> pd.DataFrame:
    """The tracks that get inferred targets: the validation split with factors.val_targets, unless they are fit
    tracks (leaky) or a control permutes the groups; else none."""
    if not config.val_targets or config.leaky or config.control != "none":
        return tracks.iloc[:0]
    return tracks[split_mask(tracks, VAL)].sort_values("track_id").reset_index(drop=True)


def build_factors(
    tracks: pd.DataFrame,
    store: Store,
    config: FactorConfig,
    out_dir: Path,
    workers: int = 2,
    progress: bool = True,
    load_only: bool = False,
    scheduler: str = "",
) -> dict[str, FactorResult]:
    """Build (or load, when finished earlier with the same inputs) each task of `config.tasks` from the usable
    tracks `tracks` (see FeatureStore.usable). With `load_only` (`agf report`), an unfinished task is a
    PipelineError, not work (e without Essentia here is reported unavailable, as when building). Essentia runs on
    `workers` processes, or as tasks of the dask cluster of `scheduler`."""
    fit = fit_tracks(tracks, config.leaky)
    if fit.empty:
        raise FactorError("the track table has no training tracks to fit artist group factors on; check its split")
    inferred = inferred_tracks(tracks, config)
    return {
        task: _build_or_load(task, fit, inferred, store, config, Path(out_dir) / task, workers, progress, load_only,
                             scheduler)
        for task in config.tasks
    }


def _build_or_load(
    task: str, fit: pd.DataFrame, inferred: pd.DataFrame, store: Store, config: FactorConfig, task_dir: Path,
    workers: int, progress: bool, load_only: bool, scheduler: str,
) -> FactorResult:
    """Load a finished task whose inputs are unchanged; otherwise build it, marker last."""
    key = _task_key(task, fit, inferred, store, config)
    if is_done(task_dir, key):
        return _load_result(task, task_dir)
    if load_only:
        reason = essentia_unavailable_reason() if task == "e" else None
        if reason:
            return _unavailable_result(task, reason)
        raise PipelineError(f"artist group factors of task {task} are not finished ({task_dir}); run `agf run` on "
                            "this work directory first")
    clear_done(task_dir)
    try:
        words = _BUILDERS[task](fit, store, config, task_dir, workers, progress, scheduler)
    except TaskUnavailable as exc:
        return _unavailable_result(task, str(exc))
    result = _fit_groups(task, fit, words, config, task_dir, inferred)
    _write_result(result, fit, task_dir)
    mark_done(task_dir, key, task=task)
    return result


def _task_key(task: str, fit: pd.DataFrame, inferred: pd.DataFrame, store: Store, config: FactorConfig) -> str:
    """A hash of everything a task's output depends on: settings, fit tracks, the tracks given inferred targets,
    and which have features (settings added later count only away from their neutral value)."""
    added = FactorConfig.ADDED_SETTINGS
    settings = {k: v for k, v in asdict(config).items() if k != "tasks" and not (k in added and v == added[k])}
    columns = ["track_id", "artist_id", "genre"] + (["subgenres"] if task == "s" else [])
    inputs = {c: fit[c].tolist() for c in columns}
    if len(inferred):
        inputs["inferred"] = {c: inferred[c].tolist() for c in columns if c != "genre"}
    if task != "s":
        inputs["store"] = Path(store.root).name
    return stable_key("factors", FORMAT, task, settings, inputs)


# -- vocabularies, one builder per task -------------------------------------------------


def _frame_words(
    task: str, read: Callable[[str], np.ndarray], fit: pd.DataFrame, store: Store, config: FactorConfig,
    task_dir: Path, progress: bool,
) -> Words:
    """Tasks m and d: a K-means dictionary over (sampled) frames, then every frame of a track is a word."""
    ids = fit["track_id"].tolist()
    rng = np.random.default_rng(config.seed)
    tracks = tqdm(ids, desc=f"{task}: frames", unit="track", disable=not progress, dynamic_ncols=True)
    with frames_on_disk((sample_rows(read(t), config.frames_per_track, rng) for t in tracks), task_dir) as frames:
        samples = sample_rows(frames, config.dictionary_samples, rng)
        dictionary = fit_dictionary(samples, config.n_words, config.kmeans_batch_size, config.seed)
        sampled = len(frames)
    write_npy_atomic(task_dir / "dictionary.npy", dictionary.centres)
    reads = (read(t) for t in tqdm(ids, desc=f"{task}: words", unit="track", disable=not progress,
                                   dynamic_ncols=True))
    info = {"dictionary_note": dictionary.note, "dictionary_samples": len(samples), "sampled_frames": sampled}

    def words_of(other: pd.DataFrame) -> Iterable[np.ndarray]:
        return words_per_array((read(t) for t in other["track_id"]), dictionary.centres)

    return Words(dictionary.n_words, ids, words_per_array(reads, dictionary.centres), info, words_of)


@contextmanager
def frames_on_disk(arrays: Iterable[np.ndarray], directory: Path) -> Iterator[np.ndarray]:
    """The rows of (rows, dims) arrays, one after another, as one read-only memory-mapped array: written to a
    temporary file in `directory` and deleted afterwards, so the dictionary's samples (every frame of every fit
    track with factors.frames_per_track = 0: 2.6 GB at FMA medium's size) never sit in memory."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".frames-*.tmp"):  # left by a killed run (the work-directory lock: not a live one)
        stale.unlink()
    path = directory / f".frames-{os.getpid()}.tmp"
    rows, dims, dtype = 0, 0, np.dtype(np.float32)
    try:
        with appending(path) as handle:
            for array in arrays:
                array = np.ascontiguousarray(array)
                rows, dims, dtype = rows + len(array), array.shape[1], array.dtype
                handle.write(array.tobytes())
        yield np.memmap(path, dtype=dtype, mode="r", shape=(rows, dims)) if rows else np.zeros((0, 0), dtype)
    finally:
        path.unlink(missing_ok=True)


def _mfcc_words(fit: pd.DataFrame, store: Store, config: FactorConfig, task_dir: Path, workers: int,
                progress: bool, scheduler: str) -> Words:
    """Task m: words over MFCC frames."""
    return _frame_words("m", store.mfcc, fit, store, config, task_dir, progress)


def _delta_words(fit: pd.DataFrame, store: Store, config: FactorConfig, task_dir: Path, workers: int,
                 progress: bool, scheduler: str) -> Words:
    """Task d: words over delta-MFCC frames (its own dictionary)."""
    return _frame_words("d", store.dmfcc, fit, store, config, task_dir, progress)


def _essentia_words(fit: pd.DataFrame, store: Store, config: FactorConfig, task_dir: Path, workers: int,
                    progress: bool, scheduler: str) -> Words:
    """Task e: Essentia vectors, NaN columns dropped, continuous columns quantile-normalised and binary ones as
    factors.essentia_binary says, K-means over tracks: one word each."""
    ids = fit["track_id"].tolist()
    paths = fit.set_index("track_id")["audio_path"]
    names, vectors, failures = _cached_essentia(store, [(t, paths[t]) for t in ids], workers, config.essentia_timeout_s,
                                                progress, scheduler)
    done = [t for t in ids if t in vectors]
    if not done:
        raise TaskUnavailable(f"no Essentia vectors for any of the {len(ids)} fit tracks "
                              f"(failures listed in {_essentia_dir(store) / 'failures.json'})")
    matrix = np.stack([vectors[t] for t in done])
    normalised, keep, quantiled, normaliser = normalise_descriptors(matrix, config.essentia_binary, config.seed)
    dictionary = fit_dictionary(normalised, config.n_words, config.kmeans_batch_size, config.seed)
    write_npy_atomic(task_dir / "dictionary.npy", dictionary.centres)
    write_npy_atomic(task_dir / "quantiles.npy", normaliser.quantiles_)
    write_npy_atomic(task_dir / "references.npy", normaliser.references_)
    write_json_atomic(task_dir / "descriptors.json", {
        "kept": [n for n, k in zip(names, keep) if k],
        "quantile_normalised": [n for n, q in zip(names, quantiled) if q],
    })
    labels = assign_words(normalised, dictionary.centres)
    info = {
        "dictionary_note": dictionary.note,
        "descriptors_total": len(names),
        "descriptors_kept": int(keep.sum()),
        "descriptors_binary": int((keep & ~quantiled).sum()) if config.essentia_binary == "standardise" else 0,
        "essentia_binary": config.essentia_binary,
        "essentia_failed_tracks": len(failures),
        "essentia_failures": str(_essentia_dir(store) / "failures.json"),
    }
    return Words(dictionary.n_words, done, (labels[i : i + 1] for i in range(len(done))), info)


def normalise_descriptors(
    matrix: np.ndarray, binary: str, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, QuantileTransformer]:
    """Essentia vectors (tracks x descriptors) -> (normalised kept columns, kept mask, quantile-normalised mask,
    the fitted QuantileTransformer).

    Columns with a NaN or infinite value are dropped. Continuous columns are quantile-normalised to a standard
    normal. Binary columns (only 0 and 1: the one-hot keys and scales) as `binary` says: 'standardise' gives
    z-scores (unit variance, like a normalised continuous column), 'drop' leaves them out, 'quantile' maps them
    like the others (the authors'; 0/1 become about -5.2/+5.2).
    """
    keep = np.isfinite(matrix).all(axis=0)
    is_binary = keep & np.array([np.isin(column, (0.0, 1.0)).all() for column in matrix.T], dtype=bool)
    if binary == "drop":
        keep &= ~is_binary
    quantiled = keep & ~is_binary if binary == "standardise" else keep
    normaliser = QuantileTransformer(output_distribution="normal", n_quantiles=min(1000, len(matrix)),
                                     random_state=seed)
    normalised = np.zeros((len(matrix), int(keep.sum())), dtype=np.float32)
    kept_quantiled = quantiled[keep]
    normalised[:, kept_quantiled] = normaliser.fit_transform(matrix[:, quantiled])
    if not kept_quantiled.all():  # standardised binary columns; a constant one becomes zeros
        values = matrix[:, keep & ~quantiled]
        spread = values.std(axis=0)
        normalised[:, ~kept_quantiled] = (values - values.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return normalised, keep, quantiled, normaliser


def _subgenre_words(fit: pd.DataFrame, store: Store, config: FactorConfig, task_dir: Path, workers: int,
                    progress: bool, scheduler: str) -> Words:
    """Task s: no dictionary; every (sub)genre label of a fit track is a word."""
    vocabulary = sorted({label for labels in fit["subgenres"] for label in labels})
    write_json_atomic(task_dir / "vocabulary.json", vocabulary)
    index = {label: i for i, label in enumerate(vocabulary)}
    words = (np.array([index[label] for label in labels], dtype=np.intp) for labels in fit["subgenres"])
    note = "" if vocabulary else "no subgenre labels among the fit tracks: every bag is empty"

    def words_of(other: pd.DataFrame) -> Iterable[np.ndarray]:  # labels no fit track has are not words
        return (np.array([index[label] for label in labels if label in index], dtype=np.intp)
                for labels in other["subgenres"])

    return Words(len(vocabulary), fit["track_id"].tolist(), words, {"dictionary_note": note}, words_of)


_BUILDERS: dict[str, Callable[..., Words]] = {
    "m": _mfcc_words,
    "d": _delta_words,
    "e": _essentia_words,
    "s": _subgenre_words,
}


# -- the Essentia cache in the feature store --------------------------------------------


def _essentia_dir(store: Store) -> Path:
    """Where the descriptor-name list and the failure log live, beside the cached vectors."""
    return Path(store.root) / ESSENTIA_KIND


def _cached_essentia(
    store: Store, jobs: list[tuple[str, str]], workers: int, timeout_s: float, progress: bool, scheduler: str
) -> tuple[list[str], dict[str, np.ndarray], dict[str, str]]:
    """Descriptor names, vectors by track id and failures by track id for `jobs`, extracting what is missing.

    Vectors are cached with store.write_array('essentia', ...); the layout (names, sorted, fixed by
    the first track analysed) is descriptors.json; failures.json holds the reason per failed track,
    and those tracks are not retried (delete the file to retry them).
    """
    folder = _essentia_dir(store)
    names_path, failures_path = folder / "descriptors.json", folder / "failures.json"
    names: list[str] | None = read_json(names_path) if names_path.exists() else None
    failures: dict[str, str] = read_json(failures_path) if failures_path.exists() else {}
    pending = [(t, p) for t, p in jobs if t not in failures and not store.has_array(ESSENTIA_KIND, t)]
    if pending:
        reason = essentia_unavailable_reason()
        if reason:
            raise TaskUnavailable(reason)
        for outcome in extract_many(pending, workers, timeout_s, progress, scheduler):
            if outcome.features is None:
                failures[outcome.track_id] = str(outcome.error)
                write_json_atomic(failures_path, failures)
                continue
            if names is None:
                names = sorted(outcome.features)
                write_json_atomic(names_path, names)
            vector = np.array([outcome.features.get(n, np.nan) for n in names], dtype=np.float32)
            store.write_array(ESSENTIA_KIND, outcome.track_id, vector)
    vectors = {t: np.asarray(store.read_array(ESSENTIA_KIND, t)) for t, _ in jobs
               if store.has_array(ESSENTIA_KIND, t)}
    if vectors and (names is None or any(len(v) != len(names) for v in vectors.values())):
        raise FactorError(f"{names_path}: missing or not matching the cached Essentia vectors; delete the "
                          f"'{ESSENTIA_KIND}' arrays of {store.root} and run again")
    wanted = {t for t, _ in jobs}
    return names or [], vectors, {t: r for t, r in failures.items() if t in wanted}


# -- bags, LDA, targets, summary --------------------------------------------------------


def _fit_groups(task: str, fit: pd.DataFrame, words: Words, config: FactorConfig, task_dir: Path,
                inferred: pd.DataFrame) -> FactorResult:
    """Artist bags -> LDA -> artist topics, per-track soft targets, summary and heatmap; the `inferred` tracks'
    targets from their artists' bags by the fitted LDA (when the task can give their words)."""
    artists = sorted(fit["artist_id"].unique())
    artist_of = dict(zip(fit["track_id"], fit["artist_id"]))
    pairs = zip((artist_of[t] for t in words.track_ids), words.words)
    bags, _ = artist_bags(artists, pairs, words.n_words, divide=task in config.divide_bags)
    model = fit_artist_topics(bags, config.n_topics, config.lda_max_iter, config.seed)
    val_targets = _inferred_targets(task, inferred, words, model, config)
    write_npy_atomic(task_dir / "lda_components.npy", model.components)
    columns = [f"topic_{k}" for k in range(config.n_topics)]
    order = control_order(len(artists), config.seed) if config.control == "random-groups" else np.arange(len(artists))
    artist_topics = pd.DataFrame(model.topics[order], index=pd.Index(artists, name="artist_id"), columns=columns)
    rows = pd.Index(fit["artist_id"])
    if config.control == "per-track":
        rows = rows[control_order(len(rows), config.seed)]
    track_targets = artist_topics.loc[rows].set_axis(pd.Index(fit["track_id"], name="track_id"))
    informed = ~pd.Series(model.empty[order], index=artists).loc[rows].to_numpy()
    summary = {
        "task": task,
        "title": TASK_TITLES[task],
        "status": "ok",
        "leaky": config.leaky,
        "control": config.control,
        "n_words": words.n_words,
        "n_topics": config.n_topics,
        "fit_tracks": len(fit),
        "tracks_with_words": len(words.track_ids),
        "artists": len(artists),
        "empty_bags": int(model.empty.sum()),
        "perplexity": model.perplexity,
        **topic_concentration(model.topics[~model.empty]),
        **genre_information(track_targets.to_numpy()[informed].argmax(axis=1), fit["genre"].to_numpy()[informed],
                            seed=config.seed),
        "target_tracks": len(track_targets),
        "val_target_tracks": len(val_targets),
        **words.info,
    }
    return FactorResult(task, artist_topics, track_targets, _json_safe(summary), val_targets)


def _inferred_targets(task: str, inferred: pd.DataFrame, words: Words, model: TopicModel,
                      config: FactorConfig) -> pd.DataFrame:
    """Soft targets of the `inferred` tracks: each track its artist's topic mixture, inferred by the fitted LDA
    from the bag of that artist's inferred tracks (its words by the fitted vocabulary); none when there are no
    such tracks or the task cannot give their words (e)."""
    columns = [f"topic_{k}" for k in range(config.n_topics)]
    if inferred.empty or words.words_of is None:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="track_id"), dtype=np.float64)
    artists = sorted(inferred["artist_id"].unique())
    bags, _ = artist_bags(artists, zip(inferred["artist_id"], words.words_of(inferred)), words.n_words,
                          divide=task in config.divide_bags)
    topics = pd.DataFrame(model.infer(bags), index=pd.Index(artists), columns=columns)
    return topics.loc[inferred["artist_id"]].set_axis(pd.Index(inferred["track_id"], name="track_id"))


def control_order(n: int, seed: int) -> np.ndarray:
    """A control's permutation: artist (random-groups) or fit track (per-track) i gets the groups of order[i]."""
    return np.random.default_rng([seed, CONTROL_STREAM]).permutation(n)


def _json_safe(summary: dict[str, Any]) -> dict[str, Any]:
    """NaN floats as None (JSON has no NaN)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in summary.items()}


def _write_result(result: FactorResult, fit: pd.DataFrame, task_dir: Path) -> None:
    """Write the tables, the heatmap and the summary of a built task (the marker comes after)."""
    write_parquet_atomic(task_dir / "artist_topics.parquet", result.artist_topics.reset_index())
    write_parquet_atomic(task_dir / "track_targets.parquet", result.track_targets.reset_index())
    if len(result.val_targets):
        write_parquet_atomic(task_dir / TARGET_FILES[1], result.val_targets.reset_index())
    else:  # an earlier build's, with factors.val_targets
        (task_dir / TARGET_FILES[1]).unlink(missing_ok=True)
    mixtures = result.track_targets.groupby(fit["genre"].to_numpy()).mean()
    nmi = result.summary["nmi_genre"]
    title = f"{result.task} ({TASK_TITLES[result.task]}): mean group mixture per genre"
    plot_genre_mixtures(mixtures, task_dir / "heatmap.png", title + ("" if nmi is None else f", NMI {nmi:.2f}"))
    write_json_atomic(task_dir / "summary.json", result.summary)


def _load_result(task: str, task_dir: Path) -> FactorResult:
    """A finished task read back from its directory."""
    artist_topics = pd.read_parquet(task_dir / "artist_topics.parquet").set_index("artist_id")
    fit_targets, *val_targets = (pd.read_parquet(task_dir / name).set_index("track_id") for name in TARGET_FILES
                                 if (task_dir / name).is_file())
    return FactorResult(task, artist_topics, fit_targets, read_json(task_dir / "summary.json"), *val_targets)


def _unavailable_result(task: str, reason: str) -> FactorResult:
    """The result of a task that could not be built here (no files are written, no marker)."""
    summary = {"task": task, "title": TASK_TITLES[task], "status": f"unavailable: {reason}"}
    return FactorResult(task, pd.DataFrame(index=pd.Index([], name="artist_id")),
                        pd.DataFrame(index=pd.Index([], name="track_id")), summary)


def load_track_targets(out_dir: Path, task: str) -> pd.DataFrame:
    """The soft targets of a finished task, the validation tracks' inferred ones included (factors.val_targets):
    index track_id, one float column per artist group."""
    task_dir = Path(out_dir) / task
    if not is_done(task_dir):
        raise FactorError(f"{task_dir}: no finished artist group factors for task {task!r}; run `agf factors`")
    return pd.concat([pd.read_parquet(task_dir / name).set_index("track_id") for name in TARGET_FILES
                      if name == TARGET_FILES[0] or (task_dir / name).is_file()])


def format_summary(results: dict[str, FactorResult]) -> str:
    """A plain-text table of the tasks' summaries, for the CLI."""
    header = (f"{'task':<5}{'words':>7}{'artists':>9}{'empty':>7}{'perplexity':>12}{'max p':>7}"
              f"{'rel H':>7}{'NMI':>7}{'shuffled':>10}")
    lines = [header, "-" * len(header)]
    notes = []
    for task, result in results.items():
        s = result.summary
        if not result.available:
            lines.append(f"{task:<5}{s['status']}")
            continue
        lines.append(
            f"{task:<5}{s['n_words']:>7}{s['artists']:>9}{s['empty_bags']:>7}{_number(s['perplexity'], 12, 1)}"
            f"{_number(s['mean_max_topic'], 7, 2)}{_number(s['mean_relative_entropy'], 7, 2)}"
            f"{_number(s['nmi_genre'], 7, 3)}{_number(s['nmi_shuffled_p95'], 10, 3)}"
        )
        notes.extend(_notes(task, s))
    legend = ("max p: mean largest group probability; rel H: mean entropy / log(groups); NMI: dominant group vs "
              "genre on fit tracks; shuffled: 95th percentile with genres shuffled")
    return "\n".join(lines + notes + [legend])


def _number(value: float | None, width: int, digits: int) -> str:
    """A right-aligned number, or '-' for a missing one."""
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _notes(task: str, summary: dict[str, Any]) -> Iterator[str]:
    """Footnotes of a task: dictionary reductions, inferred validation targets and Essentia dimensions."""
    if summary.get("dictionary_note"):
        yield f"  {task}: {summary['dictionary_note']}"
    if summary.get("val_target_tracks"):
        yield (f"  {task}: groups of {summary['val_target_tracks']} validation tracks inferred by the fitted factors "
               "(factors.val_targets), for choosing epochs only")
    if "descriptors_kept" in summary:
        failed = summary["essentia_failed_tracks"]
        yield (f"  {task}: {summary['descriptors_kept']} of {summary['descriptors_total']} Essentia dimensions kept, "
               f"{failed} track(s) failed" + (f" and skipped (why, per track: "
                                              f"{summary.get('essentia_failures', 'the store essentia/failures.json')})"
                                              if failed else ""))
