"""The paper's result tables (3, 4, 5), the baselines table and the best model's per-genre table.

Cells are 'mean ± std' over seeds (sample std); '-' where the grid has no result. The builders return
`Table`s (rendered to HTML by the report); table3/table4/table5 return their Markdown.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from agf.datasets.table import TEST, split_mask
from agf.errors import ReportError
from agf.metrics import METRIC_REGISTRY, METRICS
from agf.report.markup import MISSING, Table, mean_std, number, to_markdown, to_text
from agf.report.results import (
    LABEL_KINDS,
    RESULT_SPLITS,
    SELECTION_BIAS_NOTE,
    SELECTION_LABELS,
    SELECTION_RULE,
    SETUP_KEYS,
    rank_by_selection,
    select,
    selection_means,
    selection_split,
    sort_by_selection,
    validate_results,
)
from agf.statistics import MIN_BOOTSTRAP_UNITS, mean_ci
from agf.tasks import GENRE_TASK, TASKS, setup_label, task_subsets
from agf.transfer.sources import MTN_BASELINE, STN_BASELINE

NET_ARCHS: tuple[str, ...] = ("stn", "mtn")
BASELINE_COLUMNS: tuple[str, ...] = ("model", "seed", "split", "labels", "metric", "value")
PER_GENRE_COLUMNS: tuple[str, ...] = ("genre", "precision", "recall", "f1", "support")
TASK_LETTERS_NOTE = "Tasks: g genre, m MFCC AGF, d delta-MFCC AGF, e Essentia AGF, s subgenre AGF."
SHARED_N1_NOTE = "N = 1: a single task has a single net; the STN and the MTN are the same net, shown under both."


def direction_note() -> str:
    """Which way is better for each metric, from the registry: 'Lower is better: log loss, ECE. Higher ...'."""
    chosen = list(METRIC_REGISTRY.values())
    titles = {metric.direction: [m.title for m in chosen if m.direction == metric.direction] for metric in chosen}
    return " ".join(f"{direction.capitalize()}: {', '.join(names)}." for direction, names in titles.items())


METRIC_NOTE = ("Log loss and ECE (expected calibration error, 10 confidence bins) are of the scored probabilities: "
               "temperature-scaled on validation, or unscaled with transfer.calibrate = false (the paper presets; "
               "metrics.json records every temperature); macro-F1 is over the genres present in the split. "
               + direction_note())
MACRO_F1_NOTE = ("Macro-F1: the mean F1 over the genres present in the split's truth (the challenge also averaged "
                 "in genres only predicted, as F1 0; metrics.json records that value as macro_f1_challenge).")


def _metric_columns(prefix: str) -> tuple[str, ...]:
    """Column names '<prefix> <title>' of every metric, e.g. '<prefix> log loss', '<prefix> macro-F1'."""
    return tuple(f"{prefix} {METRIC_REGISTRY[m].title}" for m in METRICS)


def _seed_note(frame: pd.DataFrame) -> str:
    """How cells aggregate over the seeds found in `frame`."""
    n_seeds = frame["seed"].nunique()
    if n_seeds > 1:
        return f"Cells: mean ± sample std over {n_seeds} seeds."
    return "Cells: a single seed, so no spread is shown."


def _bias_notes(results: pd.DataFrame, split: str) -> tuple[str, ...]:
    """The selection-bias warning when the split shown is the one choices were made on."""
    return (SELECTION_BIAS_NOTE,) if split == selection_split(results) else ()


def net_rows(results: pd.DataFrame, split: str, labels: str) -> pd.DataFrame:
    """Validated STN and MTN rows of one split and label kind, the N = 1 STN rows repeated as MTN (same net)."""
    frame = select(validate_results(results), split, labels)
    nets = frame[frame["arch"].isin(NET_ARCHS)]
    single = nets[(nets["arch"] == "stn") & (nets["n_tasks"] == 1)].assign(arch="mtn")
    return pd.concat([nets, single], ignore_index=True)


def wstn_rows(results: pd.DataFrame, split: str, labels: str) -> pd.DataFrame:
    """Validated wSTN rows of one split and label kind."""
    frame = select(validate_results(results), split, labels)
    return frame[frame["arch"] == "wstn"]


def subset_seed_means(nets: pd.DataFrame) -> pd.DataFrame:
    """Per (arch, n_tasks, includes_genre, metric, seed): the mean value over that group's task subsets."""
    keys = ["arch", "n_tasks", "includes_genre", "metric", "seed"]
    return nets.groupby(keys, as_index=False)["value"].mean()


def _values(frame: pd.DataFrame, **where: object) -> pd.Series:
    """The `value` column of the rows matching every column == value condition."""
    mask = pd.Series(True, index=frame.index)
    for column, wanted in where.items():
        mask &= frame[column] == wanted
    return frame.loc[mask, "value"]


def _genre_groups() -> Iterator[tuple[int, bool, int]]:
    """(N, includes genre, number of possible subsets) for every group a 5-task grid can have."""
    subsets = task_subsets()
    for n in range(1, len(TASKS) + 1):
        for with_genre in (True, False):
            possible = sum(1 for t in subsets if len(t) == n and ("g" in t) == with_genre)
            if possible:
                yield n, with_genre, possible


def build_table3(results: pd.DataFrame, split: str = TEST, labels: str = "given") -> Table:
    """Table 3: mean performance by number of tasks N, with and without the genre task, per architecture."""
    nets = net_rows(results, split, labels)
    means = subset_seed_means(nets)
    rows = []
    for n, with_genre, possible in _genre_groups():
        present = nets.loc[(nets["n_tasks"] == n) & (nets["includes_genre"] == with_genre), "tasks"].nunique()
        cells = [
            mean_std(_values(means, arch=arch, n_tasks=n, includes_genre=with_genre, metric=metric))
            for arch in NET_ARCHS
            for metric in METRICS
        ]
        rows.append((str(n), "with g" if with_genre else "without g", *cells, f"{present}/{possible}"))
    return Table(
        title=f"Table 3: mean performance by number of tasks N, with and without the genre task "
        f"(split {split}, labels {labels})",
        columns=("N", "genre task", *_metric_columns("STN"), *_metric_columns("MTN"), "subsets"),
        rows=tuple(rows),
        notes=(
            "Each seed's value is the mean over the task subsets of that N and genre inclusion "
            "('subsets': how many of the possible subsets have results).",
            _seed_note(nets),
            SHARED_N1_NOTE,
            METRIC_NOTE,
            *_bias_notes(results, split),
        ),
    )


def build_table4(results: pd.DataFrame, split: str = TEST, labels: str = "given") -> Table:
    """Table 4: every task combination with results, in the paper's order, STN vs MTN."""
    nets = net_rows(results, split, labels)
    present = set(nets["tasks"])
    rows = tuple(
        (tasks, str(len(tasks)), *(
            mean_std(_values(nets, arch=arch, tasks=tasks, metric=metric))
            for arch in NET_ARCHS
            for metric in METRICS
        ))
        for tasks in task_subsets()
        if tasks in present
    )
    return Table(
        title=f"Table 4: every combination of learning tasks (split {split}, labels {labels})",
        columns=("tasks", "N", *_metric_columns("STN"), *_metric_columns("MTN")),
        rows=rows,
        notes=(TASK_LETTERS_NOTE, _seed_note(nets), SHARED_N1_NOTE, METRIC_NOTE, *_bias_notes(results, split)),
    )


def _best_subset(results: pd.DataFrame, arch: str, n: int) -> str | None:
    """The subset of `arch` with N tasks chosen by the selection rule, on validation and the given labels: never
    on the split or labels the table reports."""
    nets = net_rows(results, selection_split(results), SELECTION_LABELS)
    candidates = nets[(nets["arch"] == arch) & (nets["n_tasks"] == n)]
    return rank_by_selection(candidates, ["tasks"])[0][0] if not candidates.empty else None


def build_table5(results: pd.DataFrame, split: str = TEST, labels: str = "given") -> Table:
    """Table 5: for each N, the best STN and MTN subsets (chosen on validation) vs the wSTN matched to N."""
    results = validate_results(results)
    nets = net_rows(results, split, labels)
    wide = wstn_rows(results, split, labels)
    rows = []
    for n in sorted(set(nets["n_tasks"]) | set(wide["n_tasks"])):
        cells: list[str] = [str(n)]
        for arch in NET_ARCHS:
            best = _best_subset(results, arch, n)
            cells.append(best or MISSING)
            cells += [mean_std(_values(nets, arch=arch, tasks=best, metric=m)) for m in METRICS]
        cells += [mean_std(_values(wide, n_tasks=n, metric=m)) for m in METRICS]
        rows.append(tuple(cells))
    return Table(
        title=f"Table 5: best STN and MTN for each number of tasks N vs the wide single-task net "
        f"(split {split}, labels {labels})",
        columns=("N", "best STN", *_metric_columns("STN"), "best MTN", *_metric_columns("MTN"),
                 *_metric_columns("wSTN")),
        rows=tuple(rows),
        notes=(
            f"Best: the task subset chosen by the {SELECTION_RULE}; the split and labels shown never choose.",
            "wSTN: a genre-only net widened to the parameter count of the N-task setup it is matched to.",
            _seed_note(pd.concat([nets, wide])),
            SHARED_N1_NOTE,
            METRIC_NOTE,
            *_bias_notes(results, split),
        ),
    )


def table3(results: pd.DataFrame, split: str = TEST, labels: str = "given") -> str:
    """Table 3 as Markdown: rows N x (with g / without g), STN/MTN log loss and macro-F1, mean ± std."""
    return to_markdown(build_table3(results, split, labels))


def table4(results: pd.DataFrame, split: str = TEST, labels: str = "given") -> str:
    """Table 4 as Markdown: every task combination x STN/MTN log loss and macro-F1, mean ± std."""
    return to_markdown(build_table4(results, split, labels))


def table5(results: pd.DataFrame, split: str = TEST, labels: str = "given") -> str:
    """Table 5 as Markdown: per N, the best STN and MTN subsets vs the matched wSTN."""
    return to_markdown(build_table5(results, split, labels))


def validate_baselines(baselines: pd.DataFrame, source: str = "baselines") -> pd.DataFrame:
    """Check the baselines frame (model, seed, split, labels, metric, value); return canonical columns."""
    missing = [c for c in BASELINE_COLUMNS if c not in baselines.columns]
    if missing:
        raise ReportError(f"{source}: missing column(s) {', '.join(missing)}; expected {', '.join(BASELINE_COLUMNS)}")
    frame = baselines[list(BASELINE_COLUMNS)].copy()
    for column, allowed in (("split", RESULT_SPLITS), ("labels", LABEL_KINDS), ("metric", METRICS)):
        unknown = sorted(set(frame[column].astype(str)) - set(allowed))
        if unknown:
            raise ReportError(f"{source}: unknown {column} value(s) {unknown}; use one of {', '.join(allowed)}")
    return frame


def build_baselines_table(baselines: pd.DataFrame, split: str = TEST, labels: str = "given") -> Table:
    """Baselines of one split and label kind: one row per model (first-seen order), every metric."""
    frame = select(validate_baselines(baselines), split, labels)
    rows = tuple(
        (str(model), *(mean_std(_values(frame, model=model, metric=m)) for m in METRICS))
        for model in frame["model"].unique()
    )
    return Table(
        title=f"Baselines (split {split}, labels {labels})",
        columns=("model", *(METRIC_REGISTRY[m].title for m in METRICS)),
        rows=rows,
        notes=(_seed_note(frame),) if not frame.empty else (),
    )


def source_head_note(results: pd.DataFrame, baselines: pd.DataFrame) -> str | None:
    """One line when, on the selection split and labels, the best source net's own genre head (genre STN softmax,
    MTN genre head) beats the best transfer by the selection rule; None when the transfer matches it."""
    split = selection_split(results)
    chosen = select(validate_baselines(baselines), split, SELECTION_LABELS)
    heads = chosen[chosen["model"].astype(str).str.startswith((STN_BASELINE, MTN_BASELINE))]
    if heads.empty:
        return None
    head_name, head = next(iter(selection_means(heads, ["model"]).iterrows()))
    arch, tasks, n_tasks = rank_by_selection(results, SETUP_KEYS)[0]
    best = select(results, split, SELECTION_LABELS)
    best = best[(best["arch"] == arch) & (best["tasks"] == tasks) & (best["n_tasks"] == n_tasks)]
    best = selection_means(best, ["arch"]).iloc[0]
    case = setup_label(arch, tasks, n_tasks)
    if sort_by_selection(pd.DataFrame([best, head], index=["transfer", "head"])).index[0] == "transfer":
        return None
    return (f"On the {split} split ({SELECTION_LABELS} labels) the source net's own genre head {head_name} (accuracy "
            f"{number(head['accuracy'])}, log loss {number(head['log_loss'])}) beats the best transfer, {case} "
            f"(accuracy {number(best['accuracy'])}, log loss {number(best['log_loss'])}): the transfer MLP "
            "does not earn its place here (see docs/transfer.md, 'Why the MLP can lose to the head').")


CALIBRATION_COLUMNS: tuple[str, ...] = ("model", "seed", "temperature", "log_loss_before", "log_loss_after",
                                        "ece_before", "ece_after")


def build_calibration_table(calibration: pd.DataFrame, split: str) -> Table:
    """Per model (rows of CALIBRATION_COLUMNS, one per seed): the mean temperature, the split's mean log loss and
    ECE before and after scaling, and the paired log-loss reduction over seeds with its 95 % CI (agf.statistics)."""
    missing = [c for c in CALIBRATION_COLUMNS if c not in calibration.columns]
    if missing:
        raise ReportError(f"calibration: missing column(s) {', '.join(missing)}")
    rows = []
    for model, runs in calibration.groupby("model", sort=False):
        reduction = (runs["log_loss_before"] - runs["log_loss_after"]).to_numpy()
        low, high, _ = mean_ci(reduction)
        rows.append((str(model), str(len(runs)), number(runs["temperature"].mean(), 3),
                     number(runs["log_loss_before"].mean()), number(runs["log_loss_after"].mean()),
                     f"{number(reduction.mean())} [{number(low)}, {number(high)}]",
                     number(runs["ece_before"].mean()), number(runs["ece_after"].mean())))
    return Table(
        title=f"Calibration (split {split}, given labels; means over seeds)",
        columns=("model", "seeds", "temperature", "log loss before", "log loss after", "reduction [95 % CI]",
                 "ECE before", "ECE after"),
        rows=tuple(rows),
        notes=("Temperature scaling: each model's track probabilities p become softmax(log p / T), T fitted on the "
               "validation split's given labels only; accuracy and F1 are unchanged. T > 1: the model was "
               "overconfident. Reduction: the paired log-loss difference (before - after) per seed; its CI is over "
               f"the seeds (the independent units here, on this one split): Student's t below {MIN_BOOTSTRAP_UNITS} "
               "seeds, a percentile bootstrap from there (one seed: no interval).",),
    )


def build_per_genre_table(per_genre: pd.DataFrame, model_name: str) -> Table:
    """The best model's per-genre precision, recall, F1 and support; genres with no track are listed, not scored."""
    missing = [c for c in PER_GENRE_COLUMNS if c not in per_genre.columns]
    if missing:
        raise ReportError(
            f"per_genre: missing column(s) {', '.join(missing)}; pass agf.evaluation.per_class_report's frame"
        )
    rows = tuple(
        (str(row.genre), number(row.precision), number(row.recall), number(row.f1), str(int(row.support)))
        for row in per_genre.itertuples(index=False)
        if row.support > 0
    )
    absent = [str(genre) for genre, support in zip(per_genre["genre"], per_genre["support"]) if support == 0]
    notes = (MACRO_F1_NOTE,) + ((f"No track of this split has the genre(s) {', '.join(absent)}: not scored.",)
                                if absent else ())
    return Table(title=f"Per-genre scores of the best model ({model_name})", columns=PER_GENRE_COLUMNS, rows=rows,
                 notes=notes)


# -- the headline: the answer the report, `agf run` and `agf demo` lead with ----------------------------------

HEADLINE_METRICS: tuple[str, ...] = ("log_loss", "macro_f1", "accuracy")
GENRE_ONLY: tuple[str, str, int] = ("stn", GENRE_TASK, 1)
LABELS_NOTE = ("Labels: 'given' = the dataset's genre labels; 'true' = the genre each synthetic track was rendered "
               "from (the given labels of some albums are wrong on purpose).")
Setup = tuple[str, str, int]  # (arch, tasks, n_tasks)


@dataclass(frozen=True)
class Headline:
    """What a run answers: the best setup (chosen on validation) beside genre-only training (STN g; when that is
    the best, beside the best setup with artist groups) on the reported split, and the verdict on the difference."""

    best: str  # the best setup's label
    verdict: str  # the accuracy difference against the spread over seeds
    table: Table  # both setups' scores per label kind, mean ± std over seeds

    def text(self) -> str:
        """The headline for a terminal: the table with its notes, then the verdict."""
        return f"{to_text(self.table)}\n{self.verdict}"


def _setup_values(results: pd.DataFrame, setup: Setup, split: str, labels: str, metric: str) -> pd.Series:
    """Per seed, the value of one metric of one setup on one split and label kind."""
    arch, tasks, n_tasks = setup
    rows = select(results, split, labels)
    rows = rows[(rows["arch"] == arch) & (rows["tasks"] == tasks) & (rows["n_tasks"] == n_tasks)
                & (rows["metric"] == metric)]
    return rows.set_index("seed")["value"]


def spread_verdict(results: pd.DataFrame, baseline: Setup, setup: Setup, split: str) -> str:
    """Whether the accuracy difference setup - baseline on `split` (true labels when known) exceeds the spread over
    seeds (the larger of the two sample stds)."""
    labels = "true" if (select(results, split, "true")["metric"] == "accuracy").any() else "given"
    base, other = (_setup_values(results, s, split, labels, "accuracy") for s in (baseline, setup))
    difference = other.mean() - base.mean()
    what = (f"{setup_label(*setup)} vs {setup_label(*baseline)}: {split} accuracy ({labels} labels) difference "
            f"{difference:+.3f}")
    if len(base) < 2 or len(other) < 2:
        return f"{what}; one seed: no spread to compare with (run more seeds, e.g. --seeds 0,1,2)"
    spread = max(base.std(), other.std())
    verdict = "within" if abs(difference) <= spread else "beyond"
    return f"{what} is {verdict} the spread over {min(len(base), len(other))} seeds (largest std {spread:.3f})"


def _compared_setups(ranked: list[tuple]) -> list[tuple[str, Setup]]:
    """(role, setup) of the best setup and the one it is compared with: genre-only, or when genre-only is the best,
    the best setup with artist groups (none when the grid has no such setup)."""
    best = ranked[0]
    if best == GENRE_ONLY:
        other = next((setup for setup in ranked if set(setup[1]) - {GENRE_TASK}), None)
        pairs = [("best, genre only", best), ("best with artist groups", other)]
    else:
        pairs = [("best", best), ("genre only", GENRE_ONLY if GENRE_ONLY in ranked else None)]
    return [(role, setup) for role, setup in pairs if setup is not None]


def headline(results: pd.DataFrame) -> Headline:
    """The headline of a results frame (see Headline): test scores (the selection split's, flagged, without a test
    split) of the best setup beside genre-only training, mean ± std over seeds, and the verdict on the difference."""
    results = validate_results(results)
    split = TEST if split_mask(results, TEST).any() else selection_split(results)
    compared = _compared_setups(rank_by_selection(results, SETUP_KEYS))
    kinds = [labels for labels in LABEL_KINDS if not select(results, split, labels).empty]
    rows = tuple(
        (f"{role}: {setup_label(*setup)}", labels,
         *(mean_std(_setup_values(results, setup, split, labels, metric)) for metric in HEADLINE_METRICS))
        for labels in kinds for role, setup in compared
    )
    best = setup_label(*compared[0][1])
    if len(compared) == 2:
        (_, first), (_, second) = compared
        baseline, setup = (first, second) if first == GENRE_ONLY else (second, first)
        verdict = spread_verdict(results, baseline, setup, split)
    else:
        verdict = f"{best}: the grid has no other setup to compare it with (genre-only STN g or one with artist groups)"
    n_seeds = results["seed"].nunique()
    table = Table(
        title=f"The best transfer setup beside genre-only training (split {split}; "
        + (f"mean ± std over {n_seeds} seeds)" if n_seeds > 1 else "one seed)"),
        columns=("model", "labels", *(METRIC_REGISTRY[m].title for m in HEADLINE_METRICS)),
        rows=rows,
        notes=(f"Best transfer setup: chosen by the {SELECTION_RULE} (the run's chosen model, for which genre heads "
               "and blends compete too, has its own section); the split and labels shown never choose.",
               *_bias_notes(results, split), *((LABELS_NOTE,) if "true" in kinds else ())),
    )
    return Headline(best, verdict, table)
