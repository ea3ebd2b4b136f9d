"""`agf predict` output: a table for people, the WWW 2018 challenge CSV, or JSON lines; failures summarised; the
output path and the CSV's file ids checked before any decoding."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from agf.errors import PredictError

if TYPE_CHECKING:
    from agf.predict.classifier import Prediction

FORMATS: tuple[str, ...] = ("table", "csv", "jsonl")
CSV_ID = "file_id"
SHOWN_CLASHES = 5  # file_ids whose files a clash warning lists


def format_for(output: str | None, given: str | None) -> str:
    """The output format: the one given, else from the output file's suffix (.csv, .jsonl/.json), else a table."""
    if given:
        return given
    suffix = Path(output).suffix.lower() if output else ""
    return {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "table")


def check_output_path(output: str | None) -> None:
    """PredictError unless the output file (when given) can be written: not a folder, no file among the folders
    above it, the nearest existing folder writable. For the CLI to call before any decoding."""
    if not output:
        return
    path = Path(output)
    if path.is_dir():
        raise PredictError(f"--output {output}: is a folder; give a file name such as {path / 'predictions.csv'}")
    folder = next(parent for parent in path.absolute().parents if parent.exists())
    if not folder.is_dir():
        raise PredictError(f"--output {output}: {folder} is a file, not a folder; choose another output path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PredictError(f"--output {output}: cannot write into {folder} (permission denied); "
                           "choose another folder")


def file_id(source: str) -> str:
    """The challenge's file_id of a file: its name without the extension (e.g. 'fma_test/000123.mp3' -> '000123')."""
    return Path(source).stem


def file_id_warning(sources: Sequence[str], fmt: str) -> str | None:
    """A one-line warning listing the inputs that would share a row id of the challenge CSV, else None.

    The challenge format identifies a file by its name without the extension (the ids of its test set), so the
    ids are kept as they are rather than made up; JSON lines and the table also give each file's path."""
    if fmt != "csv":
        return None
    by_id: dict[str, list[str]] = {}
    for source in sources:
        by_id.setdefault(file_id(source), []).append(source)
    clashes = {key: files for key, files in by_id.items() if len(files) > 1}
    if not clashes:
        return None
    shown = "; ".join(f"{key!r}: {', '.join(files)}" for key, files in list(clashes.items())[:SHOWN_CLASHES])
    more = f"; and {len(clashes) - SHOWN_CLASHES} more file_id(s)" if len(clashes) > SHOWN_CLASHES else ""
    return (f"{sum(map(len, clashes.values()))} files share a {CSV_ID} (their name without the extension), so "
            f"their CSV rows cannot be told apart ({shown}{more}); rename them, classify them in separate runs or "
            "use --format jsonl, which also gives each file's path")


class PredictionWriter:
    """Writes predictions as they come, one row or line each; the table and CSV leave failures out."""

    def __init__(self, stream: TextIO, fmt: str, genres: Sequence[str], top_k: int) -> None:
        self.stream, self.format, self.genres, self.top_k = stream, fmt, list(genres), top_k
        self._csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow([CSV_ID, *self.genres])
        self._width = 0

    def write(self, prediction: Prediction) -> None:
        """One prediction (a failure only as a JSON line with its error)."""
        if self.format == "jsonl":
            record: dict = {"file": prediction.source, "file_id": file_id(prediction.source)}
            if prediction.ok:
                record.update(top=[[g, round(p, 6)] for g, p in prediction.top(self.top_k)],
                              probabilities=prediction.as_dict(), windows=prediction.n_windows,
                              seconds=round(prediction.duration, 3))
            else:
                record["error"] = prediction.error
            if prediction.notes:
                record["notes"] = list(prediction.notes)
            self.stream.write(json.dumps(record) + "\n")
        elif not prediction.ok:
            return
        elif self._csv is not None:
            self._csv.writerow([file_id(prediction.source), *(f"{p:.8g}" for p in prediction.probabilities)])
        else:
            top = "  ".join(f"{g} {p:.2f}" for g, p in prediction.top(self.top_k))
            self.stream.write(f"{prediction.source}\t{top}\n")
        self.stream.flush()


def failure_summary(failures: Sequence[Prediction], predicted: int, noted: Sequence[Prediction] = ()) -> str:
    """Every failed input with its reason, the classified files the decoder reported problems in, then the
    counts."""
    lines = [f"could not classify {len(failures)} file(s):"] if failures else []
    lines += [f"  {p.source}: {p.error}" for p in failures]
    if noted:
        lines.append(f"classified, but the decoder reported problems in {len(noted)} file(s):")
        lines += [f"  {p.source}: the decoder said: {'; '.join(p.notes)}" for p in noted]
    lines.append(f"classified {predicted} file(s), {len(failures)} failed")
    return "\n".join(lines)
