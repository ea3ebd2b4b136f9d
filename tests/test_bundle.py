"""Bundles: every manifest value checked, edits refused against what the weights were exported with (the record
in member-0/net-0.safetensors' header, or mlp.safetensors' in the one-transfer format 2); ensembles of members
(transfers, genre heads, blends) combined as the evaluation combines them; `agf predict`'s output path and challenge
file ids."""

from __future__ import annotations

import copy
import csv
import json
import math
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from audio_cases import music_like
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file
from test_predict import GENRES, _copy, _edit_manifest, as_format_2

from agf.aggregation import combine_members
from agf.audio import write_audio
from agf.calibration import apply_temperature
from agf.cli import main
from agf.config import PATCH_FRAMES, FeatureConfig, TransferConfig, key_settings
from agf.errors import ModelFileError, PredictError, TransferError
from agf.models.io import save_net
from agf.predict import (
    Bundle,
    BundleMember,
    BundleNet,
    GenreClassifier,
    MemberSource,
    bundle_from_transfer,
    bundle_from_transfers,
    load_bundle,
    save_bundle,
    untrained_bundle,
    untrained_member,
)
from agf.predict.bundle import EXPORTED, MANIFEST, MLP_FILE
from agf.predict.classifier import Decoded
from agf.predict.output import check_output_path, file_id_warning
from agf.transfer import STN_BASELINE, build_mlp, window_batch, window_starts

MEL = np.random.default_rng(0).normal(-30, 15, size=(300, 128)).astype(np.float16)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of one genre STN averaging log-probabilities, temperature 20.1: edits of both can be seen."""
    bundle = untrained_bundle(GENRES, seed=3, n_nets=1)
    member = replace(bundle.members[0], aggregation="log_probs")
    out = tmp_path_factory.mktemp("exported") / "model"
    return save_bundle(replace(bundle, members=(member,), temperature=20.1), out)


@pytest.fixture(scope="module")
def old(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same bundle as agf wrote it before members and the export record: format 2, without that metadata."""
    return as_format_2(exported, tmp_path_factory.mktemp("old") / "model", record=False)


def _meaning(bundle: Bundle, heads: bool = True) -> tuple:
    """Everything a bundle computes with but its weights (whose files are checked by size and hash); without `heads`,
    the nets' genre-head classes left out (format 2 does not record them)."""
    members = [(m.aggregation, m.head, m.output,
                [(n.label, n.tasks, n.head_genres if heads else None, n.net.spec()) for n in m.nets],
                None if m.mlp is None else (m.mlp[0].p, m.mlp[1].in_features, m.mlp[1].out_features))
               for m in bundle.members]
    return (bundle.genres, bundle.features, bundle.patch_frames, bundle.hop_frames, bundle.amp, bundle.temperature,
            bundle.combination, members)


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
        (lambda m: m["members"][0].update(aggregation="probs"), "members.0.aggregation"),
        (lambda m: m.update(combination="log_probs"), "combination"),
        (lambda m: m["calibration"].update(temperature=1e-6), "calibration.temperature"),
        (lambda m: m["members"][0]["nets"][0].update(label="MTN[gms]"), "members.0.nets.0.label"),
        (lambda m: m["members"][0]["nets"][0]["head_genres"].reverse(), "members.0.nets.0.head_genres"),
    ],
)
def test_an_edit_that_keeps_every_shape_is_refused(exported: Path, tmp_path: Path, edit, changed: str) -> None:
    bundle = _copy(exported, tmp_path)
    _edit_manifest(bundle, edit)
    with pytest.raises(ModelFileError, match=rf"{MANIFEST}: {re.escape(changed)} differ from what the weights were "
                                             rf"exported with \(recorded in member-0/net-0.safetensors\)"):
        load_bundle(bundle)


def test_a_format_2_bundle_predicts_as_before_and_its_record_still_refuses_edits(
    exported: Path, tmp_path: Path
) -> None:
    reference = GenreClassifier(load_bundle(exported), device="cpu")
    previous = as_format_2(exported, tmp_path / "previous")
    loaded = load_bundle(previous)
    assert _meaning(loaded) == _meaning(reference.bundle, heads=False) and loaded.name == reference.bundle.name
    assert np.array_equal(GenreClassifier(loaded, device="cpu").window_probabilities(MEL),
                          reference.window_probabilities(MEL))
    track = next(GenreClassifier(loaded, device="cpu")._score([Decoded("x", MEL, 7.0)])).probabilities
    assert np.array_equal(track, next(reference._score([Decoded("x", MEL, 7.0)])).probabilities)
    _edit_manifest(previous, lambda m: m.update(aggregation="probs"))
    with pytest.raises(ModelFileError, match=rf"{MANIFEST}: aggregation differ from what the weights were exported "
                                             rf"with \(recorded in {MLP_FILE}\)"):
        load_bundle(previous)


def test_descriptions_may_be_edited_and_bundles_without_the_record_still_load(
    exported: Path, old: Path, tmp_path: Path
) -> None:
    with safe_open(str(exported / "member-0" / "net-0.safetensors"), framework="pt") as weights:
        recorded = json.loads(weights.metadata()[EXPORTED])
    assert recorded["genres"] == list(GENRES) and recorded["calibration"] == {"temperature": 20.1}
    assert recorded["members"][0]["aggregation"] == "log_probs" and "sha256" not in recorded["members"][0]["nets"][0]
    renamed = _copy(exported, tmp_path)
    _edit_manifest(renamed, lambda m: m.update(name="my model", metrics={}, training=[]))
    reference = load_bundle(exported)
    expected = GenreClassifier(reference, device="cpu").window_probabilities(MEL)
    for bundle, heads in ((load_bundle(renamed), True), (load_bundle(old), False)):
        assert _meaning(bundle) == _meaning(reference, heads)
        assert np.array_equal(GenreClassifier(bundle, device="cpu").window_probabilities(MEL), expected)
    assert load_bundle(renamed).name == "my model"


# -- ensembles of members -----------------------------------------------------------------------------------------

WAVE = music_like(4, 22050, seed=11)


def _pooled(member: BundleMember) -> BundleMember:
    """The member with a pooled MLP (random weights) in place of its window MLP."""
    torch.manual_seed(7)
    return replace(member, mlp=build_mlp(2 * sum(n.net.feature_dim for n in member.nets), len(GENRES)).eval(),
                   aggregation="pooled")


def _predict(bundle: Bundle, directory: Path) -> np.ndarray:
    """What `bundle`, saved and loaded again, predicts for WAVE, in GENRES' order."""
    probabilities = GenreClassifier.load(save_bundle(bundle, directory), device="cpu").predict(WAVE, sr=22050)
    return np.array([probabilities[genre] for genre in GENRES])


def _track(bundle: Bundle) -> np.ndarray:
    """What `bundle` predicts for the log-mel MEL."""
    return next(GenreClassifier(bundle, device="cpu")._score([Decoded("x", MEL, 7.0)])).probabilities


@pytest.mark.parametrize("combination", ["probs", "log_probs"])
def test_an_ensemble_predicts_its_members_combined_then_temperature_scaled(tmp_path: Path, combination: str) -> None:
    template = untrained_bundle(GENRES, n_nets=1)
    members = (untrained_member(GENRES, n_nets=1, seed=1),
               replace(untrained_member(GENRES, n_nets=2, seed=2), aggregation="log_probs"),
               _pooled(untrained_member(GENRES, n_nets=1, seed=3)))
    alone = [_predict(replace(template, members=(member,)), tmp_path / f"member-{number}")
             for number, member in enumerate(members)]
    ensemble = replace(template, members=members, temperature=1.7, combination=combination)
    predicted = _predict(ensemble, tmp_path / "ensemble")
    combined = combine_members(alone, combination)
    assert np.abs(predicted - apply_temperature(combined[None, :], 1.7)[0]).max() < 1e-5
    assert np.abs(predicted - combined).max() > 1e-3  # the temperature was applied (the check can fail)
    assert _meaning(load_bundle(tmp_path / "ensemble")) == _meaning(ensemble)
    assert sorted(str(p.relative_to(tmp_path / "ensemble")) for p in (tmp_path / "ensemble").rglob("*.safetensors")) \
        == ["member-0/mlp.safetensors", "member-0/net-0.safetensors", "member-1/mlp.safetensors",
            "member-1/net-0.safetensors", "member-1/net-1.safetensors", "member-2/mlp.safetensors",
            "member-2/net-0.safetensors"]


def test_head_and_blend_members_give_the_heads_mean_window_probabilities_and_their_mean_with_the_transfer() -> None:
    template = untrained_bundle(GENRES, n_nets=2, seed=4, amp=False)
    transfer = template.members[0]
    order = tuple(reversed(GENRES))  # the head's classes in another order than the bundle's
    nets = (transfer.nets[0], replace(transfer.nets[1], head_genres=order))
    head = BundleMember(nets, None, head=1, output="head")
    blend = BundleMember(nets, transfer.mlp, "probs", head=1, output="blend")
    windows = window_batch(MEL, window_starts(len(MEL), template.patch_frames, template.hop_frames),
                           template.patch_frames)
    with torch.inference_mode():
        logits = nets[1].net(torch.from_numpy(windows).unsqueeze(1))
    head_windows = torch.softmax(logits, dim=1).numpy()[:, [order.index(genre) for genre in GENRES]]
    only_head = replace(template, members=(head,))
    assert np.abs(GenreClassifier(only_head, device="cpu").window_probabilities(MEL) - head_windows).max() < 1e-6
    assert np.abs(_track(only_head) - head_windows.mean(axis=0)).max() < 1e-6
    expected = (_track(replace(template, members=(replace(transfer, nets=nets),))) + head_windows.mean(axis=0)) / 2
    assert np.abs(_track(replace(template, members=(blend,))) - expected).max() < 1e-6
    with pytest.raises(ModelFileError, match="output 'head' has no MLP"):
        replace(head, mlp=transfer.mlp, aggregation="probs")
    with pytest.raises(ModelFileError, match="head 0 is not one of its 2 nets with a genre head"):
        replace(blend, nets=(replace(nets[0], head_genres=None), nets[1]), head=0)
    with pytest.raises(ModelFileError, match="genre head has no class for Folk"):
        replace(template, members=(replace(head, nets=(nets[0], replace(nets[1], head_genres=("a", "b", "c", "d")))),))


def _write_net(directory: Path, source: BundleNet) -> Path:
    """A trained-net directory (model.safetensors, net.json) holding `source`'s genre STN."""
    meta = {"features": key_settings(FeatureConfig()), "patch_frames": PATCH_FRAMES, "task_outputs": {"g": 4},
            "genres": list(source.head_genres)}
    save_net(directory, source.net, meta)
    return directory


def _write_transfer(directory: Path, member: BundleMember, seed: int, genres: tuple[str, ...] = GENRES) -> Path:
    """A finished transfer directory (mlp.json, mlp.safetensors) holding `member`'s MLP."""
    directory.mkdir()
    save_file({k: v.contiguous() for k, v in member.mlp.state_dict().items()}, str(directory / MLP_FILE))
    (directory / "mlp.json").write_text(json.dumps({
        "name": f"MLP seed {seed}", "genres": list(genres), "patch_frames": PATCH_FRAMES,
        "window_hop": TransferConfig().window_hop, "aggregation": member.aggregation.value,
        "input_dim": member.mlp_input_dim, "hidden": member.mlp[1].out_features, "dropout": member.mlp[0].p,
        "seed": seed, "best_epoch": 3, "best_val_log_loss": 1.2, "n_train_tracks": 10, "n_train_windows": 90}))
    return directory


def test_bundle_from_transfers_exports_one_member_per_transfer(tmp_path: Path) -> None:
    one, two = untrained_member(GENRES, n_nets=1, seed=8), untrained_member(GENRES, n_nets=2, seed=9)
    two = replace(two, nets=(two.nets[0], replace(two.nets[1], head_genres=tuple(reversed(GENRES)))),
                  aggregation="log_probs")
    nets = [_write_net(tmp_path / f"net-{n}", source) for n, source in enumerate([*one.nets, *two.nets])]
    transfers = [_write_transfer(tmp_path / "t1", one, 1), _write_transfer(tmp_path / "t2", two, 2)]
    sources = [MemberSource(transfers[0], (nets[0],)), MemberSource(transfers[1], (nets[1], nets[2]), "blend", 1),
               MemberSource(transfers[1], (nets[1], nets[2]), "head", 1)]
    bundle = bundle_from_transfers(sources, FeatureConfig(), True, {"case": "x"}, 1.5, "log_probs")
    expected = replace(untrained_bundle(GENRES), temperature=1.5, combination="log_probs",
                       members=(one, replace(two, head=1, output="blend"),
                                replace(two, mlp=None, aggregation=None, head=1, output="head")))
    assert _meaning(bundle) == _meaning(expected)
    assert np.array_equal(_track(bundle), _track(expected))
    head = f"{STN_BASELINE}: STN[g]"
    assert bundle.name == f"MLP seed 1, MLP seed 2 + {head}, {head} (3 members, log_probs)"
    assert [t["seed"] for t in bundle.info["training"]] == [1, 2, 2] and bundle.info["case"] == "x"
    assert bundle_from_transfer(transfers[0], [nets[0]], FeatureConfig(), True, {"name": "mine"}).name == "mine"
    other = _write_transfer(tmp_path / "t3", one, 3, genres=tuple(reversed(GENRES)))
    with pytest.raises(TransferError, match="t3: its genres or windows differ from those of"):
        bundle_from_transfers([sources[0], MemberSource(other, (nets[0],))], FeatureConfig(), True, {})


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved ensemble of a transfer, a blend and a head member."""
    transfer, two = untrained_member(GENRES, n_nets=1, seed=5), untrained_member(GENRES, n_nets=2, seed=6)
    members = (transfer, replace(two, head=1, output="blend"), replace(two, mlp=None, aggregation=None, head=0,
                                                                       output="head"))
    bundle = replace(untrained_bundle(GENRES, n_nets=1), members=members, combination="log_probs")
    return save_bundle(bundle, tmp_path_factory.mktemp("ensemble") / "model")


@pytest.mark.parametrize(
    ("edit", "changed"),
    [
        (lambda m: m["members"][1].update(aggregation="log_probs"), "members.1.aggregation"),
        (lambda m: m["members"][1].update(head=0), "members.1.head"),
        (lambda m: m["members"][2].update(head=1), "members.2.head"),
        (lambda m: m["members"][2]["nets"][0]["head_genres"].reverse(), "members.2.nets.0.head_genres"),
        (lambda m: m.update(combination="probs"), "combination"),
    ],
)
def test_an_edited_member_is_refused(ensemble: Path, tmp_path: Path, edit, changed: str) -> None:
    load_bundle(ensemble)
    bundle = _copy(ensemble, tmp_path)
    _edit_manifest(bundle, edit)
    with pytest.raises(ModelFileError, match=rf"{MANIFEST}: {re.escape(changed)} differ from what the weights were "
                                             rf"exported with"):
        load_bundle(bundle)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["members"][2].update(output="blend"), r"members\.2: a member of output 'blend' needs a transfer"),
        (lambda m: m["members"][1].update(head=2), r"members\.1: head 2 is not one of its 2 nets"),
        (lambda m: m["members"][0].update(head=True, output="blend"), r"members\.0\.head True is not null"),
        (lambda m: m["members"][0].update(output="median"), r"members\.0\.output 'median' is not one of"),
    ],
)
def test_a_member_that_cannot_be_built_is_refused_in_one_line(ensemble: Path, tmp_path: Path, edit,
                                                              message: str) -> None:
    bundle = _copy(ensemble, tmp_path)
    _edit_manifest(bundle, edit)
    with pytest.raises(ModelFileError, match=message) as refused:
        load_bundle(bundle)
    assert "\n" not in str(refused.value)


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
