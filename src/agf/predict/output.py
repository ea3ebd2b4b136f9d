"""`agf predict` output: a table for people, the WWW 2018 challenge CSV, or JSON lines; failures summarised."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from agf.predict.classifier import Prediction

FORMATS: tuple[str, ...] = ("table", "csv", "jsonl")
CSV_ID = "file_id"


def format_for(output: str | None, given: str | None) -> str:
    """The output format: the one given, else from the output file's suffix (.csv, .jsonl/.json), else a table."""
    if given:
        return given
    suffix = Path(output).suffix.lower() if output else ""
    return {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "table")


def file_id(source: str) -> str:
    """The challenge's file_id of a file: its name without the extension (e.g. 'fma_test/000123.mp3' -> '000123')."""
    return Path(source).stem


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
            self.stream.write(json.dumps(record) + "\n")
        elif not prediction.ok:
            return
        elif self._csv is not None:
            self._csv.writerow([file_id(prediction.source), *(f"{p:.8g}" for p in prediction.probabilities)])
        else:
            top = "  ".join(f"{g} {p:.2f}" for g, p in prediction.top(self.top_k))
            self.stream.write(f"{prediction.source}\t{top}\n")
        self.stream.flush()


def failure_summary(failures: Sequence[Prediction], predicted: int) -> str:
    """Every failed input with its reason, then the counts."""
    lines = [f"could not classify {len(failures)} file(s):"] if failures else []
    lines += [f"  {p.source}: {p.error}" for p in failures]
    lines.append(f"classified {predicted} file(s), {len(failures)} failed")
    return "\n".join(lines)
