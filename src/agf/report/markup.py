"""One table model, two renderings: Markdown (tables.md, docs) and HTML (report.html).

Every report table is a `Table` of already formatted cells, so both renderings show the same text.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

DECIMALS = 4
MISSING = "-"
_NUMERIC_CELL = re.compile(r"^(-|[-+]?\d[\d,.]*%?( ± \d[\d.]*)?)$")


@dataclass(frozen=True)
class Table:
    """A titled table of formatted cells, with notes shown under it."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


def number(value: float | None, decimals: int = DECIMALS) -> str:
    """A float with fixed decimals; None or NaN as '-'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:.{decimals}f}"


def mean_std(values: Sequence[float]) -> str:
    """'mean ± std' over seeds (sample std, ddof=1); the mean alone for one value; '-' for none."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return MISSING
    if array.size == 1:
        return number(float(array[0]))
    return f"{number(float(array.mean()))} ± {number(float(array.std(ddof=1)))}"


def _is_numeric_column(table: Table, index: int) -> bool:
    """True when every cell of the column is a number, 'mean ± std' or '-' (rendered right-aligned)."""
    return bool(table.rows) and all(_NUMERIC_CELL.match(row[index]) for row in table.rows)


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table with a bold title line and the notes as a list."""
    cells = [[cell.replace("|", "\\|") for cell in row] for row in table.rows]
    widths = [max([len(name), 3, *(len(row[i]) for row in cells)]) for i, name in enumerate(table.columns)]
    right = [_is_numeric_column(table, i) for i in range(len(table.columns))]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else "-" * (w + 2) for w, r in zip(widths, right)) + "|"
    parts = [f"**{table.title}**", "", line(table.columns), rule, *(line(row) for row in cells)]
    if not cells:
        parts += ["", "(no results)"]
    if table.notes:
        parts += ["", *(f"- {note}" for note in table.notes)]
    return "\n".join(parts)


def to_text(table: Table) -> str:
    """A plain-text table for a terminal: the title, aligned columns under a rule of dashes, then the notes."""
    widths = [max([len(name), *(len(row[i]) for row in table.rows)]) for i, name in enumerate(table.columns)]
    right = [_is_numeric_column(table, i) for i in range(len(table.columns))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    header = line(table.columns)
    return "\n".join([table.title, header, "-" * len(header), *(line(row) for row in table.rows), *table.notes])


def without_empty_columns(table: Table) -> Table:
    """The table without the columns (after the first) that are '-' in every row; a table without rows as is."""
    if not table.rows:
        return table
    kept = [0, *(i for i in range(1, len(table.columns)) if any(row[i] != MISSING for row in table.rows))]
    return replace(table, columns=tuple(table.columns[i] for i in kept),
                   rows=tuple(tuple(row[i] for i in kept) for row in table.rows))


def duration_text(seconds: float) -> str:
    """'40 s', '3 min 57 s' (rounded to the second)."""
    total = round(seconds)
    return f"{total} s" if total < 60 else f"{total // 60} min {total % 60:02d} s"


def to_html(table: Table) -> str:
    """An HTML <table> under an <h3> title, then a list of notes; an empty table says 'no results'."""
    right = [_is_numeric_column(table, i) for i in range(len(table.columns))]

    def cell(tag: str, text: str, numeric: bool) -> str:
        return f'<{tag} class="num">{html.escape(text)}</{tag}>' if numeric else f"<{tag}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", name, r) for name, r in zip(table.columns, right))
    body = "".join("<tr>" + "".join(cell("td", c, r) for c, r in zip(row, right)) + "</tr>" for row in table.rows)
    if not table.rows:
        body = f'<tr><td colspan="{len(table.columns)}">no results</td></tr>'
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in table.notes)
    return (
        f'<h3>{html.escape(table.title)}</h3><div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>" + (f'<ul class="notes">{notes}</ul>' if notes else "")
    )
