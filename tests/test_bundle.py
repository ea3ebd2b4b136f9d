"""Bundles: every manifest value checked, edits refused against what the weights were exported with (the record
in mlp.safetensors' header); `agf predict`'s output path and challenge file ids."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_cases import music_like
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_predict import GENRES, _copy, _edit_manifest

from agf.audio import write_audio
from agf.cli import main
from agf.errors import ModelFileError, PredictError
from agf.predict import BUNDLE_FORMAT, Bundle, GenreClassifier, load_bundle, save_bundle, untrained_bundle
from agf.predict.bundle import EXPORTED, MANIFEST, MLP_FILE
from agf.predict.output import check_output_path, file_id_warning

MEL = np.random.default_rng(0).normal(-30, 15, size=(300, 128)).astype(np.float16)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of one genre STN averaging log-probabilities, temperature 20.1: edits of both can be seen."""
    bundle = replace(untrained_bundle(GENRES, seed=3, n_nets=1), aggregation="log_probs", temperature=20.1)
    return save_bundle(bundle, tmp_path_factory.mktemp("exported") / "model")


@pytest.fixture(scope="module")
def old(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same bundle as agf wrote it before the export record: mlp.safetensors without that metadata."""
    bundle = _copy(exported, tmp_path_factory.mktemp("old"))
    weights = bundle / MLP_FILE
    save_file(load_file(str(weights)), str(weights), metadata={"format": BUNDLE_FORMAT})
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    _edit_manifest(bundle, lambda m: m["mlp"].update(bytes=weights.stat().st_size, sha256=digest))
    return bundle


def _meaning(bundle: Bundle) -> tuple:
    """Everything a bundle computes with but its weights (whose files are checked by size and hash)."""
    return (bundle.genres, bundle.features, bundle.patch_frames, bundle.hop_frames, bundle.amp, bundle.aggregation,
            bundle.temperature, [(n.label, n.tasks, n.net.spec()) for n in bundle.nets],
            (bundle.mlp[0].p, bundle.mlp[1].in_features, bundle.mlp[1].out_features))


# -- values out of range (finding 6) and edits that keep every shape (finding 7) ------------------------------------


@pytest.mark.parametrize("which", ["exported", "old"])
@pytest.mark.parametrize(("key", "value"), [("hop_frames", 0), ("hop_frames", -5), ("patch_frames", 0),
                                            ("hop_frames", 2.5), ("amp", "yes")])
def test_window_settings_out_of_range_are_refused_when_loading(
    request: pytest.FixtureRequest, tmp_path: Path, which: str, key: str, value: Any
) -> None:
    bundle = _copy(request.getfixturevalue(which), tmp_path)
    _edit_manifest(bundle, lambda m: m["preprocessing"].update({key: value}))
    with pytest.raises(ModelFileError, match=re.escape(f"preprocessing.{key} {value!r} is not")):
        load_bundle(bundle)


@pytest.mark.parametrize(
    ("edit", "changed"),
    [
        (lambda m: m["genres"].reverse(), "genres"),
        (lambda m: m["genres"].__setitem__(0, "Frost Hop"), "genres"),
        (lambda m: m["preprocessing"]["features"].update(sample_rate=16000), "preprocessing.features.sample_rate"),
        (lambda m: m["preprocessing"].update(hop_frames=10), "preprocessing.hop_frames"),
        (lambda m: m["preprocessing"].update(amp=False), "preprocessing.amp"),
        (lambda m: m.update(aggregation="probs"), "aggregation"),
        (lambda m: m["calibration"].update(temperature=1e-6), "calibration.temperature"),
        (lambda m: m["nets"][0].update(label="MTN[gms]"), "nets"),
    ],
)
def test_an_edit_that_keeps_every_shape_is_refused(exported: Path, tmp_path: Path, edit, changed: str) -> None:
    bundle = _copy(exported, tmp_path)
    _edit_manifest(bundle, edit)
    with pytest.raises(ModelFileError, match=rf"{MANIFEST}: {re.escape(changed)} differ from what the weights were "
                                             rf"exported with \(recorded in {MLP_FILE}\)"):
        load_bundle(bundle)


def test_descriptions_may_be_edited_and_bundles_without_the_record_still_load(
    exported: Path, old: Path, tmp_path: Path
) -> None:
    with safe_open(str(exported / MLP_FILE), framework="pt") as weights:
        recorded = json.loads(weights.metadata()[EXPORTED])
    assert recorded["genres"] == list(GENRES) and recorded["calibration"] == {"temperature": 20.1}
    renamed = _copy(exported, tmp_path)
    _edit_manifest(renamed, lambda m: m.update(name="my model", metrics={}, format="agf-bundle/1"))
    reference = load_bundle(exported)
    expected = GenreClassifier(reference, device="cpu").window_probabilities(MEL)
    for bundle in (load_bundle(renamed), load_bundle(old)):
        assert _meaning(bundle) == _meaning(reference)
        assert np.array_equal(GenreClassifier(bundle, device="cpu").window_probabilities(MEL), expected)
    assert load_bundle(renamed).name == "my model"


# -- every field of the manifest mutated --------------------------------------------------------------------------

DELETE = object()  # a mutation that removes the key or list element
HOSTILE: list[Any] = [None, True, False, 0, -5, 1, 1e-6, 1e308, math.nan, math.inf, "", "x", [], {}, [1], {"a": 1}]


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every key and index path into a parsed JSON document (of a list of numbers, its first element only)."""
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        numbers = value and all(isinstance(v, (int, float)) for v in value)
        children = list(enumerate(value[:1] if numbers else value))
    else:
        return
    for key, child in children:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _variants(value: Any) -> list[Any]:
    """Replacements for a manifest value: hostile values of every type, near-misses of its own, removal."""
    own: list[Any] = []
    if isinstance(value, bool):
        own = [not value]
    elif isinstance(value, (int, float)) and math.isfinite(value):
        own = [value * 2, value + 1, -value, value * (1 + 1e-9), float(value) if isinstance(value, int) else int(value)]
    elif isinstance(value, str):
        own = [value + "x", value.upper(), value[:-1]]
    elif isinstance(value, list) and value:
        own = [value[::-1], value[:-1], value + value[-1:]]
    return [*HOSTILE, *own, DELETE]


def _mutated(manifest: dict, path: tuple, replacement: Any) -> dict:
    """A copy of the manifest with the value at `path` replaced (or removed)."""
    result = copy.deepcopy(manifest)
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    if replacement is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(replacement)
    return result


def _load_mutated(original: Path, scratch: Path, manifest: dict) -> Bundle | None:
    """Load `manifest` with the weights of `original` (copied into `scratch` once): the bundle, or None when it
    is refused with a one-line ModelFileError (any other exception fails the test)."""
    if not scratch.exists():
        _copy(original, scratch.parent).rename(scratch)
    (scratch / MANIFEST).write_text(json.dumps(manifest))
    try:
        return load_bundle(scratch)
    except ModelFileError as exc:
        assert "\n" not in str(exc)
        return None


def _check_mutation(original: Path, scratch: Path, path: tuple, replacement: Any, recorded: bool) -> None:
    """A mutated manifest is refused in one line or, where mlp.safetensors records the export, loads the same
    model; a bundle without the record may load another model (undetected), but one that scores windows."""
    manifest = json.loads((original / MANIFEST).read_text())
    bundle = _load_mutated(original, scratch, _mutated(manifest, path, replacement))
    if bundle is None:
        return
    if recorded:
        assert _meaning(bundle) == _meaning(load_bundle(original)), (path, replacement)
    assert GenreClassifier(bundle, device="cpu").window_probabilities(MEL).shape[1] == len(bundle.genres)


@pytest.mark.parametrize("which", ["exported", "old"])
def test_every_manifest_field_removed_or_of_another_type_is_refused_or_changes_nothing(
    request: pytest.FixtureRequest, tmp_path: Path, which: str
) -> None:
    original = request.getfixturevalue(which)
    paths = list(_paths(json.loads((original / MANIFEST).read_text())))
    assert len(paths) > 40 and ("preprocessing", "features", "sample_rate") in paths
    for path in paths:
        for replacement in (DELETE, None, "x", [1]):
            _check_mutation(original, tmp_path / "scratch", path, replacement, which == "exported")


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.parametrize("which", ["exported", "old"])
def test_any_manifest_mutation_is_refused_in_one_line_or_changes_nothing(
    request: pytest.FixtureRequest, tmp_path: Path, which: str, data: st.DataObject
) -> None:
    original = request.getfixturevalue(which)
    path = data.draw(st.sampled_from(list(_paths(json.loads((original / MANIFEST).read_text())))), label="path")
    manifest = json.loads((original / MANIFEST).read_text())
    value: Any = manifest
    for key in path:
        value = value[key]
    replacement = data.draw(st.sampled_from(_variants(value)), label="replacement")
    _check_mutation(original, tmp_path / "scratch", path, replacement, which == "exported")


# -- `agf predict` output (findings 5 and 11) ----------------------------------------------------------------------


def test_an_output_path_that_cannot_become_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(PredictError, match="notes.txt is a file, not a folder"):
        check_output_path(str(tmp_path / "notes.txt" / "out.csv"))
    with pytest.raises(PredictError, match="is a folder; give a file name such as"):
        check_output_path(str(tmp_path))
    for fine in (None, str(tmp_path / "notes.txt"), str(tmp_path / "new" / "dir" / "out.csv")):
        check_output_path(fine)


@pytest.mark.parametrize("output", ["notes.txt/out.csv", "."])
def test_agf_predict_refuses_such_an_output_before_decoding(
    exported: Path, tmp_path: Path, output: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "notes.txt").write_text("x")
    write_audio(tmp_path / "a.wav", music_like(2, 22050, seed=1), 22050)
    monkeypatch.setattr(GenreClassifier, "predict_many", lambda *a, **k: pytest.fail("decoding started"))
    assert main(["predict", str(exported), str(tmp_path / "a.wav"), "-o", str(tmp_path / output), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("agf predict: error: --output")


def test_files_sharing_a_challenge_id_are_listed_in_one_warning() -> None:
    sources = ["x/1.mp3", "y/1.mp3", "y/1.ogg", "z/2.mp3"]
    warning = file_id_warning(sources, "csv")
    assert warning is not None and "\n" not in warning
    assert "3 files share a file_id" in warning and "'1': x/1.mp3, y/1.mp3, y/1.ogg" in warning
    assert "2.mp3" not in warning
    assert file_id_warning(sources, "jsonl") is None and file_id_warning(["x/1.mp3", "x/2.mp3"], "csv") is None


def test_agf_predict_warns_when_csv_rows_would_share_an_id(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    inputs = [tmp_path / "x" / "1.wav", tmp_path / "y" / "1.wav", tmp_path / "y" / "1.flac"]
    for seed, path in enumerate(inputs):
        path.parent.mkdir(exist_ok=True)
        write_audio(path, music_like(2, 22050, seed=seed), 22050)
    out = tmp_path / "submission.csv"
    assert main(["predict", str(exported), *map(str, inputs), "-o", str(out), "-q", "-j", "0"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "share a file_id" in line]
    assert len(warnings) == 1 and all(str(path) in warnings[0] for path in inputs)
    with open(out, newline="") as handle:
        assert [row[0] for row in csv.reader(handle)] == ["file_id", "1", "1", "1"]  # the challenge's ids, kept
