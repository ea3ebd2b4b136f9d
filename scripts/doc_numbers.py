"""Numbers in the docs that come from result files are written from those files, so two docs cannot disagree.

A generated part of a Markdown file under docs/ (or README.md) sits between two comments; the first names what
to write and from which file (paths relative to the repository root):

    <!-- generated: evaluation docs/data/demo/metrics.json test -->
    ...written by this script...
    <!-- end generated -->

    python scripts/doc_numbers.py            # rewrite every generated part from its source
    python scripts/doc_numbers.py --check    # exit 1 naming each part that differs (tests/test_docs.py runs it)

What can be generated:
    evaluation METRICS_JSON SPLIT
        per model of an evaluation (agf.evaluation's metrics.json): its temperature, the calibrated log loss,
        macro-F1 and accuracy against the given and the true genres, and the uncalibrated true-label log loss
    section REPORT_MD HEADING...
        the tables and notes of one section of a report written by agf (report.md), images left out
    value METRICS_JSON MODEL SPLIT LABELS METRIC [uncalibrated]
        one number, inline (MODEL with '_' for spaces)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from agf.fileio import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- generated: (?P<spec>[^>]*?) -->)(?P<body>.*?)(<!-- end generated -->)", re.DOTALL)
EVALUATION_COLUMNS = {"log_loss": "log loss", "macro_f1": "macro-F1", "accuracy": "accuracy"}


def _number(value: float) -> str:
    return f"{value:.3f}"


def evaluation_table(metrics_path: Path, split: str) -> str:
    """Every model of one evaluation on one split: temperature, calibrated scores (given and true labels when
    there are both), the uncalibrated true-label log loss."""
    metrics = json.loads(metrics_path.read_text())
    labels = [name for name in ("given", "true") if any(name in m["scores"].get(split, {})
                                                        for m in metrics["models"].values())]
    header = ["model", "T"] + [f"{title} ({label})" for label in labels for title in EVALUATION_COLUMNS.values()]
    last = labels[-1]
    header.append(f"log loss ({last}), uncalibrated")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, model in metrics["models"].items():
        if split not in model["scores"]:
            continue
        cells = [name, f"{model['temperature']:.2f}"]
        cells += [_number(model["scores"][split][label][column]) for label in labels for column in EVALUATION_COLUMNS]
        cells.append(_number(model["uncalibrated"][split][last]["log_loss"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_section(report_path: Path, heading: str) -> str:
    """The text of one '## heading' section of a report.md, without its heading and images."""
    text = report_path.read_text()
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    if match is None:
        raise SystemExit(f"doc_numbers: no section '## {heading}' in {report_path}")
    kept = [line for line in match.group(1).splitlines() if not line.startswith("![")]
    return "\n".join(kept).strip()


def value(metrics_path: Path, model: str, split: str, labels: str, metric: str, scored: str = "scores") -> str:
    """One score of one model, as the tables print it."""
    models = json.loads(metrics_path.read_text())["models"]
    name = model.replace("_", " ")
    if name not in models:
        raise SystemExit(f"doc_numbers: no model '{name}' in {metrics_path}")
    return _number(models[name][scored][split][labels][metric])


def render(spec: str) -> str:
    """What a generated part holds, from its spec ('KIND SOURCE ARGS...')."""
    kind, source, *rest = spec.split()
    path = ROOT / source
    if kind == "evaluation":
        return "\n" + evaluation_table(path, *rest) + "\n"
    if kind == "section":
        return "\n" + report_section(path, " ".join(rest)) + "\n"
    if kind == "value":
        scored = "uncalibrated" if rest[-1] == "uncalibrated" else "scores"
        return value(path, *rest[:4], scored)
    raise SystemExit(f"doc_numbers: unknown kind '{kind}' in '{spec}'")


def regenerate(text: str) -> str:
    """The text with every generated part written anew."""
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("spec")) + m.group(4), text)


def _shown(path: Path) -> str:
    """A path as the messages show it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def stale(paths: list[Path]) -> list[str]:
    """'file: spec' of every generated part whose text differs from what its source gives."""
    found = []
    for path in paths:
        for match in BLOCK.finditer(path.read_text()):
            if match.group("body") != render(match.group("spec")):
                found.append(f"{_shown(path)}: {match.group('spec')}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a generated part is stale")
    args = parser.parse_args(argv)
    if args.check:
        differing = stale(documents())
        for line in differing:
            print(f"stale: {line} (run python scripts/doc_numbers.py)", file=sys.stderr)
        return 1 if differing else 0
    for path in documents():
        text = path.read_text()
        if BLOCK.search(text) and regenerate(text) != text:
            write_text_atomic(path, regenerate(text))
            print(f"rewrote {_shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
