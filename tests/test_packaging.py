"""The package installs like its peers: a free distribution name, torch as a tested range with the tested
version pinned for set-up only, licence, citation and changelog files, and the FMA guide linked from the README.

Reads the repository's files only (no pip, no network)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
TESTED_TORCH = Version("2.13.0")
PAPER_DOI = "10.1145/3184558.3191823"


def project() -> dict[str, Any]:
    """pyproject.toml's [project] table."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def torch_requirement() -> Requirement:
    """The torch requirement among the project's dependencies."""
    found = [Requirement(line) for line in project()["dependencies"] if Requirement(line).name == "torch"]
    assert len(found) == 1, "pyproject.toml must list torch once"
    return found[0]


def install_lines() -> list[str]:
    """The Makefile's recipe lines that pip-install agf itself (the editable install)."""
    return [line for line in (ROOT / "Makefile").read_text().splitlines()
            if "pip install" in line and "-e " in line]


def test_distribution_name_is_not_the_taken_agf() -> None:
    name = project()["name"]
    assert re.sub(r"[-_.]+", "-", name).lower() != "agf"  # PyPI's 'agf' is another project
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name), "a normalised distribution name"


def test_torch_is_a_range_that_holds_the_tested_version() -> None:
    requirement = torch_requirement()
    operators = {spec.operator for spec in requirement.specifier}
    assert not operators & {"==", "==="}, f"torch pinned in pyproject.toml: {requirement}"
    assert "<" in operators and ">=" in operators, f"torch needs a lower and an upper bound: {requirement}"
    assert requirement.specifier.contains(TESTED_TORCH)
    assert requirement.specifier.contains(Version("2.13.0+cpu"))  # the CPU wheel of the same release


def test_constraints_pin_the_tested_torch() -> None:
    lines = [line.split("#")[0].strip() for line in (ROOT / "constraints.txt").read_text().splitlines()]
    pins = [Requirement(line) for line in lines if line]
    torch_pins = [str(pin.specifier) for pin in pins if pin.name == "torch"]
    assert torch_pins == [f"=={TESTED_TORCH}"]


def test_makefile_installs_with_the_constraints() -> None:
    lines = install_lines()
    assert lines, "the Makefile has no 'pip install ... -e' line"
    assert all("-c constraints.txt" in line for line in lines), lines
    stamp_rule = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("$(STAMP):"))
    assert "constraints.txt" in stamp_rule, "a changed pin must re-run the install"


def test_license_file_is_mit_as_pyproject_says() -> None:
    assert project()["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the agf developers" in text
    assert "LICENSE" in project()["license-files"]


def citation() -> dict[str, Any]:
    """CITATION.cff parsed (PyYAML where installed, else its top-level `key: value` lines and the DOI)."""
    text = (ROOT / "CITATION.cff").read_text()
    try:
        import yaml
    except ImportError:
        flat: dict[str, Any] = dict(re.findall(r"^([a-z-]+): *(.+)$", text, flags=re.M))
        flat["preferred-citation"] = {"doi": m.group(1)} if (m := re.search(r"^ +doi: *(\S+)$", text, re.M)) else {}
        return flat
    return yaml.safe_load(text)


def test_citation_names_agf_and_the_paper() -> None:
    cff = citation()
    assert str(cff["cff-version"]) == "1.2.0"
    assert cff["type"] == "software" and str(cff["version"]) == project()["version"]
    assert str(cff["preferred-citation"]["doi"]) == PAPER_DOI
    if "authors" in cff["preferred-citation"]:  # parsed with PyYAML
        families = [author["family-names"] for author in cff["preferred-citation"]["authors"]]
        assert families == ["Kim", "Won", "Serra", "Liem"]


def test_changelog_has_unreleased_and_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings[:1] == ["Unreleased"]
    assert project()["version"] in headings


@pytest.mark.parametrize("target", ["docs/fma.md"])
def test_readme_links_an_existing_doc(target: str) -> None:
    assert f"]({target})" in (ROOT / "README.md").read_text()
    assert (ROOT / target).is_file()
