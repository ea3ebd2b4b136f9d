"""Numbers in the docs that come from result files are generated from them (scripts/doc_numbers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_modules import script_module


@pytest.fixture(scope="module")
def doc_numbers():
    """scripts/doc_numbers.py as a module."""
    with script_module("doc_numbers") as module:
        yield module


def _metrics(path: Path, log_loss: float) -> Path:
    scores = {"log_loss": log_loss, "macro_f1": 0.5, "accuracy": 0.6}
    path.write_text(json.dumps({"models": {"transfer MLP: STN[g]": {
        "temperature": 2.0, "scores": {"test": {"given": scores, "true": scores}},
        "uncalibrated": {"test": {"given": scores, "true": {**scores, "log_loss": 0.1}}}}}}))
    return path


def test_every_generated_number_in_the_docs_is_what_its_result_file_gives(doc_numbers) -> None:
    assert doc_numbers.stale(doc_numbers.documents()) == []


def test_the_demo_docs_quote_one_result_file(doc_numbers) -> None:
    """docs/transfer.md and docs/results-demo.md once gave different numbers for the same demo result."""
    sources = {}
    for name in ("transfer.md", "results-demo.md"):
        specs = [m.group("spec") for m in doc_numbers.BLOCK.finditer((doc_numbers.ROOT / "docs" / name).read_text())]
        assert specs, f"docs/{name} has no generated numbers"
        sources[name] = {spec.split()[1] for spec in specs}
    assert sources["transfer.md"] & sources["results-demo.md"]


def test_a_changed_result_makes_the_doc_stale_until_regenerated(doc_numbers, tmp_path: Path) -> None:
    metrics = _metrics(tmp_path / "metrics.json", 0.25)
    doc = tmp_path / "doc.md"
    doc.write_text(f"Before.\n<!-- generated: evaluation {metrics} test -->\nold\n<!-- end generated -->\n"
                   f"Inline <!-- generated: value {metrics} transfer_MLP:_STN[g] test true log_loss uncalibrated -->"
                   "x<!-- end generated --> after.\n")
    assert len(doc_numbers.stale([doc])) == 2
    doc.write_text(doc_numbers.regenerate(doc.read_text()))
    assert doc_numbers.stale([doc]) == []
    text = doc.read_text()
    assert "| transfer MLP: STN[g] | 2.00 | 0.250 | 0.500 | 0.600 | 0.250 | 0.500 | 0.600 | 0.100 |" in text
    assert "-->0.100<!--" in text and text.startswith("Before.\n") and text.endswith(" after.\n")
    _metrics(metrics, 0.3)
    assert doc_numbers.stale([doc]) == [f"{doc}: evaluation {metrics} test"]
