"""The report's section on the model a run ends with (agf.pipeline.choosing's selection.json): how it was chosen,
its estimate on the selection tracks (after cross-validation: per fold, mean ± std, and the artists each rests on)
beside its test scores, the candidates it beat and by how much."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agf.metrics import METRIC_REGISTRY
from agf.report.markup import Table, number

SHOWN_METRICS: tuple[str, ...] = ("accuracy", "log_loss", "macro_f1")
SHOWN_CANDIDATES = 12


def chosen_summary(record: Mapping[str, Any]) -> str:
    """One paragraph: the model, how its seeds combine, its temperature, and how it was chosen."""
    chosen = record["chosen"]
    seeds = chosen["seeds"]
    ensemble = (f"the {'mean' if chosen['combination'] == 'probs' else 'renormalised geometric mean'} of the track "
                f"probabilities of {len(seeds)} run seeds ({', '.join(map(str, seeds))})" if len(seeds) > 1
                else f"one run seed ({seeds[0]})")
    how = ("artist-grouped cross-validation over train + validation: every choice on out-of-fold predictions, "
           "then the final model fitted on train + validation"
           if record["mode"] == "crossval" else "the validation split, the model fitted on train")
    return (f"Chosen model: {chosen['name']} ({chosen['kind']}), {ensemble}, temperature "
            f"{number(chosen['temperature'], 2)}. Chosen on {how} ({record['reason']}); test never chose.")


def _cells(scores: Mapping[str, Any] | None) -> tuple[str, ...]:
    """A row's metric cells: plain values, or mean ± std."""
    cells = []
    for metric in SHOWN_METRICS:
        value = None if scores is None else scores.get(metric)
        if isinstance(value, Mapping):
            cells.append(f"{number(value['mean'])} ± {number(value['std'])}")
        else:
            cells.append(number(value))
    return tuple(cells)


def estimate_table(record: Mapping[str, Any]) -> Table:
    """The chosen model's estimate before test (cross-validated, or on validation) beside its test scores."""
    rows = []
    selection = record["selection"]
    crossval = record.get("crossval")
    if crossval:
        artists = crossval["artists_per_fold"]
        where = (f"cross-validated: mean ± std over {crossval['folds']} folds ({selection['n_tracks']} tracks, "
                 f"{selection['n_artists']} artists; {min(artists)}-{max(artists)} per fold)")
        for labels, scores in crossval["estimate"].items():
            rows.append((where, labels, *_cells(scores)))
    else:
        chosen = record["ranking"][0]
        rows.append((f"validation ({selection['n_tracks']} tracks, {selection['n_artists']} artists; it chose the "
                     "model)", "given", number(chosen["accuracy"]), number(chosen["log_loss"]), number(None)))
    sizes = record.get("test_split")
    where = f"test ({sizes['n_tracks']} tracks, {sizes['n_artists']} artists)" if sizes else "test"
    for labels, scores in (record.get("test") or {}).items():
        rows.append((where, labels, *_cells(scores)))
    notes = ["The cross-validated estimate rests on the artists of train + validation, each scored by models that "
             "never saw it; its spread over folds says how much a new set of artists can move it." if crossval else
             "The validation numbers chose the model (and its epochs and temperature): they are optimistic."]
    return Table(title="The chosen model: its estimate before test, and test",
                 columns=("scored on", "labels", *(METRIC_REGISTRY[m].title for m in SHOWN_METRICS)),
                 rows=tuple(rows), notes=tuple(notes))


def ranking_table(record: Mapping[str, Any]) -> Table:
    """The best candidates on the selection tracks, best first, and the chosen model's lead over each other kind."""
    split = record["selection"]["split"]
    rows = tuple((row["name"], row["kind"], row["combination"], number(row["accuracy"]), number(row["log_loss"]),
                  number(row["temperature"], 2)) for row in record.get("ranking", [])[:SHOWN_CANDIDATES])
    leads = [f"Lead over the best {m['kind']} ({m['name']}): accuracy {_lead(m, 'accuracy')}, log loss "
             f"{_lead(m, 'log_loss')}." for m in record.get("margins", [])]
    return Table(title=f"Candidates on the selection tracks ({split}), best first by the selection rule",
                 columns=("model", "kind", "seeds combined", "accuracy", "log loss", "temperature"), rows=rows,
                 notes=tuple(leads))


def _lead(margin: Mapping[str, Any], metric: str) -> str:
    """A lead with its spread: '+0.031 (std 0.020 over 3 folds)'."""
    spread = margin.get(f"{metric} difference std")
    shown = f"{margin[f'{metric} difference']:+.3f}"
    if spread is None:
        return shown
    return f"{shown} (std {spread:.3f} over {margin['n_units']} {margin['units']})"


def chosen_blocks(record: Mapping[str, Any]) -> tuple[str | Table, ...]:
    """The section's blocks: the summary, the estimate table, the candidates."""
    return chosen_summary(record), estimate_table(record), ranking_table(record)
