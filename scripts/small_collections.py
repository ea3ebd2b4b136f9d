"""Small collections, today's protocol against the new one (issue 27 item 6): on collections of about 250 tracks drawn
from the hard synthetic corpus, the small-collection preset choosing its model by `select.mode = "auto"` (artist-
grouped cross-validation on such collections) against `select.mode = "validation"` (the report's best setup chosen on
validation, its test scores averaged over seeds) and two classical models on per-track MFCC mean/std (logistic
regression and an RBF-SVM, fitted on train + validation); test accuracy and log loss against the true genres (the
given ones recorded too).

    python scripts/small_collections.py render ROOT --artists-per-genre 10 --tracks-per-album 3 --seconds 60 -j 2
    python scripts/small_collections.py draw ROOT K       # collection K (seed K): ROOT/draws/draw-K/manifest.csv
    python scripts/small_collections.py run ROOT K        # both runs + classical models: ROOT/results/draw-K.csv
    python scripts/small_collections.py run ROOT K --protocol auto   # one protocol's run only (run two at once)
    python scripts/small_collections.py curves ROOT K... -o CSV   # the folds' genre nets' validation curves
    python scripts/small_collections.py summary ROOT      # or the folder of draw files (docs/data/small-collections)
    python scripts/small_collections.py run ROOT K --protocol budget   # the new protocol, crops_per_track = 0
    python scripts/small_collections.py variants          # each variant against the new protocol, paired by draw

Every step is resumable: a finished step is skipped (`agf run` reuses its finished stages). Each finished protocol
run is kept in docs/data/small-collections/runs/draw-K/<protocol>/ (its results.csv, selection.json, time, the agf
code and the manifest it ran on), so a draw's runs may finish in different sessions on a re-rendered corpus (the
corpus is seeded; a manifest that differs is refused). Each finished draw's file is copied to
docs/data/small-collections/, which `summary` reads as well as ROOT.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from agf.config import Config, DatasetConfig, config_to_toml, load_config
from agf.datasets import load_dataset
from agf.datasets.table import TEST, TRAIN, VAL, genre_list, split_mask
from agf.evaluation import classical_baseline, mfcc_stats
from agf.fileio import write_text_atomic
from agf.models.io import read_spec
from agf.metrics import METRIC_REGISTRY, score_against
from agf.pipeline import open_prepared
from agf.plotting import png_figure
from agf.report.results import SETUP_KEYS, rank_by_selection, read_results_csv, select
from agf.statistics import compare

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "docs" / "data" / "small-collections"
PRESET = "small-collection"
GENRES = 8
MODELS: tuple[str, ...] = ("today", "new", "logreg", "rbf-svm")
METRICS: tuple[str, ...] = ("accuracy", "log_loss")
LABELS: tuple[str, ...] = ("given", "true")
COMPARED_LABELS = "true"
COMPARISONS: tuple[tuple[str, str], ...] = (("new", "today"), ("new", "logreg"), ("new", "rbf-svm"))
PROTOCOLS: tuple[str, ...] = ("validation", "auto")
# Runs measured against the new protocol ("auto"), each its settings over it: "budget", a training budget sized to
# the audio (issue 27 item 2).
VARIANTS: dict[str, dict[str, dict[str, object]]] = {"budget": {"train": {"crops_per_track": 0}}}
# Every run's settings over the preset before a variant's: the protocols as measured (one crop per track, the
# preset's budget before item 2's measurement adopted the sized one).
MEASURED: dict[str, dict[str, object]] = {"train": {"crops_per_track": 1}}
VARIANT_BASE = "auto"
# The draw files' models each variant's test scores are also paired with (issue 27 item 6 for a variant).
VARIANT_BASELINES: tuple[str, ...] = ("today", "logreg", "rbf-svm")
RUN_KINDS: tuple[str, ...] = PROTOCOLS + tuple(VARIANTS)
VARIANT_METRICS: tuple[str, ...] = ("oof_log_loss", "oof_accuracy", "test_log_loss", "test_accuracy")
NET_COLUMNS: tuple[str, ...] = ("where", "arch", "tasks", "seed", "epochs", "max_epochs", "best_epoch", "stopped_early",
                                "chosen_on")
DRAW_COLUMNS: tuple[str, ...] = ("draw", "model", "labels", "metric", "value", "n_tracks", "n_artists",
                                 "n_test_tracks", "n_test_artists", "seconds", "new_mode", "new_chosen", "commit")


def say(message: str) -> None:
    """One progress line, with the time, flushed (the measurement logs to a file)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- render ----------------------------------------------------------------------------------------------------


def track_table(corpus: Path) -> pd.DataFrame:
    """The corpus's tracks as manifest rows: track_id, path (absolute), artist, album, genre, true_genre,
    subgenres (';'-joined), duration."""
    config = DatasetConfig(kind="fma", metadata_dir=str(corpus / "fma_metadata"), audio_dir=str(corpus / "audio"),
                           subset="full")
    tracks = load_dataset(config).tracks
    return pd.DataFrame({
        "track_id": tracks["track_id"].astype(str), "path": tracks["audio_path"], "artist": tracks["artist_id"],
        "album": tracks["album_id"], "genre": tracks["genre"], "true_genre": tracks["true_genre"],
        "subgenres": tracks["subgenres"].map("; ".join), "duration": tracks["declared_duration"],
    })


def render(root: Path, artists_per_genre: int, tracks_per_album: int, seconds: float, workers: int = 1) -> None:
    """The study's hard corpus (study-quick's [synth], 8 genres) under ROOT/corpus, and its table ROOT/tracks.csv."""
    table_path = root / "tracks.csv"
    if table_path.is_file():
        say(f"{table_path} exists: corpus rendered")
        return
    started = time.monotonic()
    say(f"rendering {GENRES} genres x {artists_per_genre} artists, {tracks_per_album} tracks per album, {seconds} s")
    subprocess.run([sys.executable, "-m", "agf", "synth", str(root / "corpus"), "-c", "study-quick",
                    "--genres", str(GENRES), "--artists-per-genre", str(artists_per_genre),
                    "--tracks-per-album", str(tracks_per_album), "--seconds", str(seconds), "-j", str(workers), "-q"],
                   check=True)
    table = track_table(root / "corpus")
    write_text_atomic(table_path, table.to_csv(index=False))
    say(f"{table_path}: {len(table)} tracks, {table['artist'].nunique()} artists, "
        f"{time.monotonic() - started:.0f} s to render")


# -- draw ------------------------------------------------------------------------------------------------------


def artist_genres(table: pd.DataFrame) -> pd.Series:
    """Each artist's genre: the given genre of most of its tracks (ties: the first in name order)."""
    counts = table.groupby(["artist", "genre"]).size().rename("n").reset_index()
    top = counts.sort_values(["artist", "n", "genre"], ascending=[True, False, True]).drop_duplicates("artist")
    return top.set_index("artist")["genre"]


def draw_collection(table: pd.DataFrame, k: int, tracks: int = 250, min_artists: int = 40,
                    max_artists: int = 70) -> pd.DataFrame:
    """Collection k (seed k): whole artists, the same number per genre (the artists of each genre shuffled, the
    first n taken), n the count in [min_artists, max_artists] / genres whose total is nearest `tracks`."""
    rng = np.random.default_rng(k)
    genre_of = artist_genres(table)
    shuffled = {genre: list(rng.permutation(sorted(artists.index)))
                for genre, artists in genre_of.groupby(genre_of)}
    n_genres, fewest = len(shuffled), min(len(artists) for artists in shuffled.values())
    counts = range(-(-min_artists // n_genres), min(max_artists // n_genres, fewest) + 1)
    if not counts:
        raise SystemExit(f"draw: {min_artists}-{max_artists} artists over {n_genres} genres need more artists per "
                         f"genre than the corpus's {fewest}: render a bigger corpus")
    size = table.groupby("artist").size()
    chosen = min(counts, key=lambda n: abs(int(size[_first(shuffled, n)].sum()) - tracks))
    return table[table["artist"].isin(_first(shuffled, chosen))].reset_index(drop=True)


def _first(shuffled: dict[str, list[str]], n: int) -> list[str]:
    """The first n artists of every genre."""
    return [artist for artists in shuffled.values() for artist in artists[:n]]


def draw_dir(root: Path, k: int) -> Path:
    """ROOT/draws/draw-K: the draw's manifest, configs, work directory and the first run's outputs."""
    return root / "draws" / f"draw-{k}"


def draw(root: Path, k: int, tracks: int, min_artists: int, max_artists: int) -> Path:
    """Write draw k's manifest (no split column: agf splits by artist, seeded by dataset.seed = k)."""
    manifest = draw_dir(root, k) / "manifest.csv"
    if manifest.is_file():
        say(f"{manifest} exists")
        return manifest
    collection = draw_collection(pd.read_csv(root / "tracks.csv", dtype=str), k, tracks, min_artists, max_artists)
    write_text_atomic(manifest, collection.to_csv(index=False))
    say(f"{manifest}: {len(collection)} tracks, {collection['artist'].nunique()} artists")
    return manifest


# -- run -------------------------------------------------------------------------------------------------------


def run_config(manifest: Path, workdir: Path, k: int, kind: str) -> Config:
    """The small-collection preset on this manifest, split seed k, one thread and worker: a protocol's (the model
    chosen by select.mode = `kind`) or a variant's (VARIANTS: the new protocol with the variant's settings), each
    over MEASURED."""
    config = load_config(PRESET)
    config = dataclasses.replace(
        config,
        dataset=dataclasses.replace(config.dataset, manifest=str(manifest), seed=k),
        select=dataclasses.replace(config.select, mode=VARIANT_BASE if kind in VARIANTS else kind),
        run=dataclasses.replace(config.run, threads=1, workers=1, workdir=str(workdir)),
    )
    variant = VARIANTS.get(kind, {})
    sections = {section: dataclasses.replace(getattr(config, section),
                                             **{**MEASURED.get(section, {}), **variant.get(section, {})})
                for section in MEASURED.keys() | variant.keys()}
    return dataclasses.replace(config, **sections)


def kept_run(k: int, mode: str) -> Path:
    """Where draw k's finished `mode` run is kept: docs/data/small-collections/runs/draw-K/<mode>/."""
    return DATA_DIR / "runs" / f"draw-{k}" / mode


def manifest_digest(manifest: Path) -> str:
    """sha256 of a manifest's rows without their audio paths (absolute, so they name ROOT): the same collection
    drawn under another ROOT has the same digest."""
    rows = pd.read_csv(manifest, dtype=str).drop(columns="path")
    return hashlib.sha256(rows.to_csv(index=False).encode()).hexdigest()


def check_kept(out_dir: Path, manifest: Path) -> None:
    """Refuse a kept run made on another manifest (a corpus rendered otherwise, or another draw rule)."""
    kept = json.loads((out_dir / "run.json").read_text())["manifest_sha256"]
    if kept != manifest_digest(manifest):
        raise SystemExit(f"{out_dir} was run on another manifest than {manifest}: delete it to rerun, or render "
                         "the corpus with the settings it was made with")


def net_epochs(workdir: Path) -> pd.DataFrame:
    """Every net trained under `workdir` (the grid's, each fold's, the final fit's): where (its folder's parent
    relative to the work directory: nets, crossval/fold0/nets, ...), arch, tasks, seed, epochs trained, the cap,
    the best epoch, whether it stopped early, and the tasks whose validation loss chose that epoch ('' when the
    last epoch was kept: by train.select_epoch = 'last', as under cross-validation, or by rule when no task had
    validation targets, artist groups having none for validation artists); what the preset's training budget is
    read from."""
    rows = []
    for path in sorted(workdir.glob("**/nets/*/net.json")):
        meta = read_spec(path)["meta"]
        tasks = meta["spec"]["tasks"]
        rows.append({"where": str(path.parent.parent.relative_to(workdir)), "arch": meta["spec"]["arch"],
                     "tasks": "".join(tasks), "seed": meta["seed"], "epochs": meta["epochs"],
                     "max_epochs": meta["max_epochs"], "best_epoch": meta["best_epoch"],
                     "stopped_early": meta["stopped_early"],
                     "chosen_on": "".join(t for t in tasks if meta["val_tracks"].get(t, 0) > 0)
                     if meta["train_config"]["select_epoch"] == "best_val" else ""})
    return pd.DataFrame(rows, columns=list(NET_COLUMNS))


def fold_curves(workdir: Path) -> pd.DataFrame:
    """The cross-validation folds' finished genre-predicting nets under `workdir`, their genre validation loss and
    accuracy on the held-out artists averaged per net (arch and tasks), epoch selection rule and epoch, with how
    many nets each mean is over: how a net learns on artists it has not heard, epoch by epoch."""
    curves = []
    for path in sorted(workdir.glob("crossval/fold*/nets/*/net.json")):
        meta = read_spec(path)["meta"]
        if not (path.parent / "done.json").is_file() or "g" not in meta["spec"]["tasks"]:
            continue
        curve = pd.read_csv(path.parent / "curves.csv")
        curves.append(curve[curve["task"] == "g"].assign(
            net=f"{meta['spec']['arch'].upper()} {''.join(meta['spec']['tasks'])}",
            select_epoch=meta["train_config"]["select_epoch"]))
    if not curves:
        return pd.DataFrame(columns=["net", "select_epoch", "epoch", "val_loss", "val_accuracy", "nets"])
    return (pd.concat(curves).groupby(["net", "select_epoch", "epoch"])
            .agg(val_loss=("val_loss", "mean"), val_accuracy=("val_accuracy", "mean"), nets=("val_loss", "size"))
            .reset_index())


def agf_run(config: Config, out_dir: Path) -> None:
    """`agf run` of `config`, then its results.csv, selection.json, wall time and run.json (the agf code, the
    manifest's digest) and nets.csv (net_epochs) kept in out_dir; skipped when out_dir holds a run of the same manifest."""
    manifest = Path(config.dataset.manifest)
    if (out_dir / "run.json").is_file():
        check_kept(out_dir, manifest)
        say(f"{out_dir} exists: run done")
        return
    workdir = Path(config.run.workdir)
    toml = workdir.with_suffix(".toml")
    write_text_atomic(toml, config_to_toml(config))
    say(f"agf run -c {toml}")
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "agf", "run", "-c", str(toml), "-q"], check=True)
    staging = out_dir.with_name(out_dir.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    shutil.copy2(workdir / "report" / "results.csv", staging / "results.csv")
    shutil.copy2(workdir / "selection" / "selection.json", staging / "selection.json")
    write_text_atomic(staging / "nets.csv", net_epochs(workdir).to_csv(index=False))
    record = {"seconds": round(time.monotonic() - started, 1), "commit": commit(),
              "manifest_sha256": manifest_digest(manifest)}
    (staging / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    say(f"{out_dir}: {record['seconds']:.0f} s")


def today_rows(results: pd.DataFrame) -> tuple[str, list[dict]]:
    """Today's protocol: the setup ranked first on validation, its test scores averaged over seeds."""
    arch, tasks, n_tasks = rank_by_selection(results, SETUP_KEYS)[0]
    setup = results[(results["arch"] == arch) & (results["tasks"] == tasks) & (results["n_tasks"] == n_tasks)]
    rows = [{"labels": labels, "metric": metric,
             "value": float(select(setup, TEST, labels).loc[lambda f: f["metric"] == metric, "value"].mean())}
            for labels in LABELS for metric in METRICS]
    return f"{arch} {tasks}", rows


def new_rows(selection: dict) -> list[dict]:
    """The new protocol: the chosen model's test scores from selection.json."""
    return [{"labels": labels, "metric": metric, "value": float(selection["test"][labels][metric])}
            for labels in LABELS for metric in METRICS]


def rbf_svm(train_X: np.ndarray, train_y: np.ndarray, eval_X: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """StandardScaler + SVC(rbf, default C and gamma) with Platt probabilities fitted by 5-fold cross-validation
    (CalibratedClassifierCV, one SVC refitted on all): (n_eval, K) probabilities."""
    model = make_pipeline(StandardScaler(), CalibratedClassifierCV(SVC(kernel="rbf", random_state=seed),
                                                                   method="sigmoid", ensemble=False))
    model.fit(train_X, train_y)
    probs = np.zeros((len(eval_X), n_classes))
    probs[:, model.classes_] = model.predict_proba(eval_X)
    return probs


def classical_rows(config: Config, seed: int) -> list[dict]:
    """Logistic regression and the RBF-SVM on MFCC mean/std, fitted on train + validation, scored on test."""
    prepared = open_prepared(config)
    tracks, store = prepared.tracks, prepared.store
    genres = genre_list(tracks)
    fit, test = tracks[split_mask(tracks, TRAIN, VAL)], tracks[split_mask(tracks, TEST)]
    fit_X, test_X = (np.stack([mfcc_stats(store.mfcc(t)) for t in part["track_id"]]) for part in (fit, test))
    fit_y = fit["genre"].map({genre: i for i, genre in enumerate(genres)}).to_numpy()
    index = pd.Index(test["track_id"].astype(str), name="track_id")
    rows = []
    for model, fitter in (("logreg", classical_baseline), ("rbf-svm", rbf_svm)):
        probs = pd.DataFrame(fitter(fit_X, fit_y, test_X, len(genres), seed), index=index, columns=genres)
        scores = score_against(tracks, probs, genres)
        rows += [{"model": model, "labels": labels, "metric": metric, "value": float(scores[labels][metric])}
                 for labels in LABELS for metric in METRICS]
    return rows


def collection_counts(config: Config) -> dict[str, int]:
    """Tracks and artists of the collection and of its test split (the usable tracks)."""
    tracks = open_prepared(config).tracks
    test = tracks[split_mask(tracks, TEST)]
    return {"n_tracks": len(tracks), "n_artists": int(tracks["artist_id"].nunique()),
            "n_test_tracks": len(test), "n_test_artists": int(test["artist_id"].nunique())}


def git(*args: str) -> str:
    """A git command's output in the repository."""
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout


def commit() -> str:
    """The agf code measured: HEAD, plus '+dirty-' and a hash of the uncommitted changes to src/ when there are
    any (the runs import the working tree)."""
    head, changes = git("rev-parse", "HEAD").strip(), git("diff", "HEAD", "--", "src")
    return f"{head}+dirty-{hashlib.sha256(changes.encode()).hexdigest()[:12]}" if changes else head


def run(root: Path, k: int, protocols: Sequence[str] = PROTOCOLS) -> None:
    """Draw k's runs of `protocols` (protocols or variants, each in its own work directory, so two may run at
    once), then, once both protocols' runs are kept, the classical models and ROOT/results/draw-K.csv (last)."""
    directory = draw_dir(root, k)
    manifest = directory / "manifest.csv"
    if not manifest.is_file():
        raise SystemExit(f"{manifest} not found: run `draw {root} {k}` first")
    configs = {kind: run_config(manifest, directory / f"work-{kind}", k, kind) for kind in RUN_KINDS}
    for kind in protocols:
        agf_run(configs[kind], kept_run(k, kind))
    out = root / "results" / f"draw-{k}.csv"
    if out.is_file():
        say(f"{out} exists: draw {k} done")
        return
    missing = [mode for mode in PROTOCOLS if not (kept_run(k, mode) / "run.json").is_file()]
    if missing:
        say(f"draw {k}: waiting for the {', '.join(missing)} run")
        return
    for mode in PROTOCOLS:
        check_kept(kept_run(k, mode), manifest)
    started = time.monotonic()
    classical = classical_rows(configs["validation"], k)
    records = {mode: json.loads((kept_run(k, mode) / "run.json").read_text()) for mode in PROTOCOLS}
    seconds = time.monotonic() - started + sum(record["seconds"] for record in records.values())
    today_name, today = today_rows(read_results_csv(kept_run(k, "validation") / "results.csv"))
    selection = json.loads((kept_run(k, "auto") / "selection.json").read_text())
    rows = ([{"model": "today", **row} for row in today] + [{"model": "new", **row} for row in new_rows(selection)]
            + classical)
    commits = sorted({record["commit"] for record in records.values()} | {commit()})
    frame = pd.DataFrame(rows).assign(
        draw=k, **collection_counts(configs["validation"]), seconds=round(seconds, 1), new_mode=selection["mode"],
        new_chosen=selection["chosen"]["name"], commit=" ".join(commits))[list(DRAW_COLUMNS)]
    write_text_atomic(out, frame.to_csv(index=False, float_format="%.6g"))
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy2(out, DATA_DIR / out.name)
    say(f"{out}: today = {today_name}, new ({selection['mode']}) = {selection['chosen']['name']}, "
        f"{seconds:.0f} s")


# -- summary ---------------------------------------------------------------------------------------------------


def read_draws(folder: Path) -> pd.DataFrame:
    """Every draw-*.csv of `folder` (ROOT/results under a ROOT) as one frame."""
    found = sorted(folder.glob("draw-*.csv"))
    if not found:
        raise SystemExit(f"{folder}: no draw-*.csv files; run a draw first")
    return pd.concat([pd.read_csv(path, dtype={"labels": str}) for path in found], ignore_index=True)


def paired_differences(draws: pd.DataFrame, metric: str) -> dict[str, pd.Series]:
    """Per comparison 'a - b': a's minus b's test value of `metric` (true labels), per draw (draws with both)."""
    rows = draws[(draws["labels"] == COMPARED_LABELS) & (draws["metric"] == metric)]
    table = rows.pivot_table(index="draw", columns="model", values="value")
    return {f"{a} - {b}": (table[a] - table[b]).dropna() for a, b in COMPARISONS
            if a in table.columns and b in table.columns}


def summarize(draws: pd.DataFrame) -> pd.DataFrame:
    """Per metric and comparison: draws, the paired mean difference with its 95 % interval (agf.statistics.compare:
    draws the independent units, Holm over the comparisons of a metric), and which side is better."""
    rows = []
    for metric in METRICS:
        differences = paired_differences(draws, metric)
        higher = METRIC_REGISTRY[metric].higher_is_better
        for found in compare({name: diff.to_numpy() for name, diff in differences.items()}):
            rows.append({"comparison": found.name, "metric": metric, "labels": COMPARED_LABELS, "draws": found.n,
                         "mean": found.mean, "ci_low": found.ci_low, "ci_high": found.ci_high,
                         "interval": found.interval, "p_permutation": found.p_permutation, "p_holm": found.p_holm,
                         "new_better_if": "positive" if higher else "negative"})
    return pd.DataFrame(rows)


def model_means(draws: pd.DataFrame) -> pd.DataFrame:
    """Each model's mean test value over draws, per labels and metric."""
    return draws.pivot_table(index="model", columns=["labels", "metric"], values="value").reindex(MODELS)


def summary_markdown(summary: pd.DataFrame, draws: pd.DataFrame) -> str:
    """summary.md: what was compared, the paired differences, the models' means and each draw's choices."""
    lines = ["# Small collections: today's protocol against the new one", "",
             "Generated by `python scripts/small_collections.py summary` (issue 27 item 6). Test split; differences "
             f"against the {COMPARED_LABELS} genres, new minus the other model per draw, 95 % interval over draws "
             "(agf.statistics.compare).", "",
             "| comparison | metric | draws | mean | 95 % interval | p (Holm) | new better if |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.comparison} | {r.metric} | {r.draws} | {r.mean:+.4f} | [{r.ci_low:+.4f}, {r.ci_high:+.4f}] | "
              f"{r.p_holm:.3g} | {r.new_better_if} |" for r in summary.itertuples()]
    means = model_means(draws)
    lines += ["", "Mean over draws:", "", "| model | " + " | ".join(f"{m} ({lab})" for lab, m in means.columns) + " |",
              "|---|" + "---|" * len(means.columns)]
    lines += [f"| {model} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for model, row in means.iterrows()]
    per_draw = draws.drop_duplicates("draw").sort_values("draw")
    lines += ["", "| draw | tracks | artists | test tracks | test artists | new's mode | new's choice | seconds | "
              "agf |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.draw} | {r.n_tracks} | {r.n_artists} | {r.n_test_tracks} | {r.n_test_artists} | {r.new_mode} | "
              f"{r.new_chosen} | {r.seconds:.0f} | {r.commit} |" for r in per_draw.itertuples()]
    return "\n".join(lines) + "\n"


def plot_draws(draws: pd.DataFrame, path: Path) -> None:
    """Per metric a panel: each draw's test values (true genres) over the models, joined by a line."""
    rows = draws[draws["labels"] == COMPARED_LABELS]
    with png_figure(path, (10.0, 4.0), layout="constrained") as figure:
        for ax, metric in zip(figure.subplots(1, len(METRICS)), ("log_loss", "accuracy")):
            table = rows[rows["metric"] == metric].pivot_table(index="draw", columns="model", values="value")
            table = table.reindex(columns=[m for m in MODELS if m in table.columns])
            for k, values in table.iterrows():
                ax.plot(range(len(values)), values.to_numpy(), marker="o", label=f"draw {k}")
            ax.set_xticks(range(len(table.columns)), list(table.columns))
            ax.set_title(f"test {METRIC_REGISTRY[metric].title} (true genres)")
        ax.legend(fontsize="small")


def best_epochs(runs: Path) -> pd.DataFrame:
    """Per protocol, fit (grid: on train; fold; final: on train + validation, fixed epochs) and net (arch, tasks and
    the tasks whose validation loss chose its epoch), over the kept runs' nets.csv under `runs`: nets, median epochs
    trained and best epoch, the cap, and how many nets' best epoch was the last they trained."""
    found = sorted(runs.glob("draw-*/*/nets.csv"))
    if not found:
        return pd.DataFrame()
    nets = pd.concat([pd.read_csv(path, dtype={"tasks": str, "chosen_on": str}, keep_default_na=False)
                      .assign(protocol=path.parent.name) for path in found])
    nets["fit"] = nets["where"].map(lambda where: "final" if "final" in where else "fold" if "fold" in where
                                    else "grid")
    nets["net"] = nets["arch"].str.upper() + " " + nets["tasks"]
    nets["chosen_on"] = nets["chosen_on"].replace("", "-")
    nets["best_is_last"] = nets["best_epoch"] == nets["epochs"]
    return nets.groupby(["protocol", "fit", "net", "chosen_on"]).agg(
        nets=("best_epoch", "size"), cap=("max_epochs", "max"), median_epochs=("epochs", "median"),
        median_best=("best_epoch", "median"), best_is_last=("best_is_last", "sum")).reset_index()


def best_epochs_markdown(table: pd.DataFrame) -> str:
    """The best-epoch table as a markdown section (empty without kept nets)."""
    if table.empty:
        return ""
    lines = ["", "## Nets' best epochs (the training budget)", "",
             "From the kept runs' nets.csv: per protocol and fit, the tasks whose validation loss chose the epoch "
             "('-': the last epoch is kept, by rule when no task has validation targets, as artist groups have "
             "none for validation artists, and for every net under cross-validation, folds and final fit alike), "
             "the median best epoch and how many nets were at their best on the last epoch they trained.", "",
             "| protocol | fit | net | chosen on | nets | cap | median epochs | median best | best = last |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.protocol} | {r.fit} | {r.net} | {r.chosen_on} | {r.nets} | {r.cap} | {r.median_epochs:g} | "
              f"{r.median_best:g} | {r.best_is_last} of {r.nets} |" for r in table.itertuples()]
    return "\n".join(lines) + "\n"


def summary(source: Path, out_dir: Path, runs: Path = DATA_DIR / "runs") -> None:
    """summary.csv, summary.md and figure.png in out_dir from the draw files of `source` (ROOT or a folder), with
    the best epochs of the kept runs under `runs`."""
    draws = read_draws(source / "results" if (source / "results").is_dir() else source)
    found = summarize(draws)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "summary.csv", found.to_csv(index=False, float_format="%.6g"))
    write_text_atomic(out_dir / "summary.md",
                      summary_markdown(found, draws) + best_epochs_markdown(best_epochs(runs)))
    plot_draws(draws, out_dir / "figure.png")
    say(f"{out_dir}: summary of {draws['draw'].nunique()} draws")


# -- variants --------------------------------------------------------------------------------------------------


def chosen_scores(selection: dict) -> dict[str, object]:
    """The model a run chose, its pooled out-of-fold accuracy and log loss (what chose it: the ranking's first) and
    its test scores against the true genres."""
    first, chosen = selection["ranking"][0], selection["chosen"]
    if (first["name"], first["combination"]) != (chosen["name"], chosen["combination"]):
        raise SystemExit(f"selection.json: the chosen model {chosen['name']} is not the ranking's first")
    test = selection["test"][COMPARED_LABELS]
    return {"chosen": chosen["name"], "oof_log_loss": first["log_loss"], "oof_accuracy": first["accuracy"],
            "test_log_loss": test["log_loss"], "test_accuracy": test["accuracy"]}


def variant_rows(runs: Path) -> pd.DataFrame:
    """Per draw whose new-protocol run and some variant's are kept under `runs`: each of those runs' chosen model
    and scores (chosen_scores) and seconds."""
    rows = []
    for directory in sorted(runs.glob("draw-*"), key=lambda path: int(path.name.removeprefix("draw-"))):
        kept = [kind for kind in (VARIANT_BASE, *VARIANTS) if (directory / kind / "run.json").is_file()]
        if VARIANT_BASE not in kept or len(kept) == 1:
            continue
        for kind in kept:
            record = json.loads((directory / kind / "run.json").read_text())
            rows.append({"draw": int(directory.name.removeprefix("draw-")), "run": kind,
                         **chosen_scores(json.loads((directory / kind / "selection.json").read_text())),
                         "seconds": record["seconds"]})
    return pd.DataFrame(rows, columns=["draw", "run", "chosen", *VARIANT_METRICS, "seconds"])


def baseline_rows(draws: pd.DataFrame) -> pd.DataFrame:
    """The draw files' test scores (true genres) of VARIANT_BASELINES, one row per draw and model, as variant rows
    (run = the model; no out-of-fold scores)."""
    rows = draws[(draws["labels"] == COMPARED_LABELS) & draws["model"].isin(VARIANT_BASELINES)]
    table = rows.pivot_table(index=["draw", "model"], columns="metric", values="value").reset_index()
    return table.rename(columns={"model": "run", "accuracy": "test_accuracy", "log_loss": "test_log_loss"})


def compare_variants(rows: pd.DataFrame) -> pd.DataFrame:
    """Per variant and score: the variant minus the new protocol and minus each of VARIANT_BASELINES found in
    `rows` (test scores only), paired by draw, with its 95 % interval over draws (agf.statistics.compare; Holm over
    a variant's comparisons of one score)."""
    found = []
    for variant in VARIANTS:
        for metric in VARIANT_METRICS:
            table = rows.pivot_table(index="draw", columns="run", values=metric)
            if variant not in table.columns:
                continue
            differences = {f"{variant} - {base}": (table[variant] - table[base]).dropna().to_numpy()
                           for base in (VARIANT_BASE, *VARIANT_BASELINES) if base in table.columns}
            paired = {name: values for name, values in differences.items() if len(values) >= 2}
            for result in compare(paired) if paired else ():
                found.append({"comparison": result.name, "score": metric, "draws": result.n, "mean": result.mean,
                              "ci_low": result.ci_low, "ci_high": result.ci_high, "p": result.p_holm})
    return pd.DataFrame(found, columns=["comparison", "score", "draws", "mean", "ci_low", "ci_high", "p"])


def variants_markdown(rows: pd.DataFrame, compared: pd.DataFrame) -> str:
    """variants.md: each kept run's choice and scores per draw, and the paired differences."""
    settings = "; ".join(f"{name}: " + ", ".join(f"{section}.{key} = {value}" for section, pairs in over.items()
                                                  for key, value in pairs.items()) for name, over in VARIANTS.items())
    lines = ["# Small collections: variants of the new protocol", "",
             "Generated by `python scripts/small_collections.py variants`. Each variant is the new protocol "
             f"(select.mode = {VARIANT_BASE}) with other settings ({settings}), run on the same draws. oof: the "
             "chosen model's pooled out-of-fold score over train + validation (what chose it; selection data); "
             f"test: the test split, {COMPARED_LABELS} genres.", "",
             "| draw | run | chosen | oof log loss | oof accuracy | test log loss | test accuracy | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.draw} | {r.run} | {r.chosen} | {r.oof_log_loss:.4f} | {r.oof_accuracy:.4f} | "
              f"{r.test_log_loss:.4f} | {r.test_accuracy:.4f} | {r.seconds:.0f} |" for r in rows.itertuples()]
    lines += ["", "Paired over draws (95 % interval over draws; p: sign-flip permutation, Holm over a variant's "
              f"comparisons of one score; {', '.join(VARIANT_BASELINES)}: the draw files' test scores):", "",
              "| comparison | score | draws | mean | 95 % interval | p |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.comparison} | {r.score} | {r.draws} | {r.mean:+.4f} | [{r.ci_low:+.4f}, {r.ci_high:+.4f}] | "
              f"{r.p:.3g} |" for r in compared.itertuples()]
    return "\n".join(lines) + "\n"


def variants(runs: Path, out_dir: Path, draws_dir: Path = DATA_DIR) -> None:
    """variants.csv (per draw and run) and variants.md in out_dir from the kept runs under `runs`, each variant
    also paired with the draw files' (draws_dir/draw-*.csv) test scores of VARIANT_BASELINES."""
    rows = variant_rows(runs)
    if rows.empty:
        raise SystemExit(f"{runs}: no draw with both a new-protocol run and a variant's kept")
    baselines = baseline_rows(read_draws(draws_dir)) if any(draws_dir.glob("draw-*.csv")) else rows.iloc[:0]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "variants.csv", rows.to_csv(index=False, float_format="%.6g"))
    compared = compare_variants(pd.concat([rows, baselines], ignore_index=True))
    write_text_atomic(out_dir / "variants.md", variants_markdown(rows, compared))
    say(f"{out_dir}: variants over {rows['draw'].nunique()} draws")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    render_parser = commands.add_parser("render", help="render the corpus and its track table")
    render_parser.add_argument("root", type=Path)
    render_parser.add_argument("--artists-per-genre", type=int, required=True)
    render_parser.add_argument("--tracks-per-album", type=int, required=True)
    render_parser.add_argument("--seconds", type=float, required=True)
    render_parser.add_argument("-j", "--workers", type=int, default=1, help="render processes (default 1)")
    draw_parser = commands.add_parser("draw", help="draw collection K's manifest")
    draw_parser.add_argument("root", type=Path)
    draw_parser.add_argument("k", type=int)
    draw_parser.add_argument("--tracks", type=int, default=250, help="tracks aimed at (default 250)")
    draw_parser.add_argument("--min-artists", type=int, default=40)
    draw_parser.add_argument("--max-artists", type=int, default=70)
    run_parser = commands.add_parser("run", help="run draw K: both protocols and the classical models")
    run_parser.add_argument("root", type=Path)
    run_parser.add_argument("k", type=int)
    run_parser.add_argument("--protocol", choices=RUN_KINDS, action="append",
                            help="run only this protocol or variant (repeatable; default both protocols)")
    curves_parser = commands.add_parser("curves", help="the folds' genre nets' validation curves, per draw")
    curves_parser.add_argument("root", type=Path)
    curves_parser.add_argument("k", type=int, nargs="+")
    curves_parser.add_argument("-o", "--out", type=Path, required=True, help="CSV to write")
    curves_parser.add_argument("--protocol", choices=(VARIANT_BASE, *VARIANTS), default=VARIANT_BASE,
                               help=f"whose folds (default {VARIANT_BASE})")
    summary_parser = commands.add_parser("summary", help="paired differences over the finished draws")
    summary_parser.add_argument("source", type=Path, help="ROOT, or a folder of draw-*.csv files")
    summary_parser.add_argument("--out", type=Path, default=DATA_DIR)
    variants_parser = commands.add_parser(
        "variants", help="each variant against the new protocol, today's and the classical models, paired by draw")
    variants_parser.add_argument("--runs", type=Path, default=DATA_DIR / "runs", help="the kept runs")
    variants_parser.add_argument("--out", type=Path, default=DATA_DIR)
    variants_parser.add_argument("--draws", type=Path, default=DATA_DIR, help="the draw-*.csv files")
    args = parser.parse_args(argv)
    if args.command == "render":
        render(args.root, args.artists_per_genre, args.tracks_per_album, args.seconds, args.workers)
    elif args.command == "draw":
        draw(args.root, args.k, args.tracks, args.min_artists, args.max_artists)
    elif args.command == "run":
        run(args.root, args.k, args.protocol or PROTOCOLS)
    elif args.command == "curves":
        frames = [fold_curves(draw_dir(args.root, k) / f"work-{args.protocol}").assign(draw=k) for k in args.k]
        write_text_atomic(args.out, pd.concat(frames).to_csv(index=False, float_format="%.6g"))
    elif args.command == "variants":
        variants(args.runs, args.out, args.draws)
    else:
        summary(args.source, args.out)


if __name__ == "__main__":
    main()
