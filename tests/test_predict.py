"""Prediction: bundles (round trip, refusal of bad ones), the GenreClassifier on any input, `agf predict`."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file, save_file
from audio_cases import make_damaged, make_random_bytes, make_truncated_mp3, music_like, write_case

from agf.audio import Segment, decode_segment, write_audio
from agf.cli import main
from agf.config import FeatureConfig
from agf.errors import ModelFileError, PredictError
from agf.features import extractor_for
from agf.predict import GenreClassifier, load_bundle, save_bundle, untrained_bundle
from agf.predict.bundle import EXPORTED, MANIFEST, MLP_FILE
from agf.predict.classifier import Decoded
from agf.predict.decoding import MEMORY_FRAMES, DecodeJob, SpooledMel, decode_file, mel_rows
from agf.predict.inputs import expand_inputs
from agf.predict.output import PredictionWriter, failure_summary

GENRES = ("Rock", "Jazz", "Pop", "Folk")


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_bundle(untrained_bundle(GENRES, seed=3), tmp_path_factory.mktemp("bundle") / "model")


@pytest.fixture(scope="module")
def classifier(bundle_dir: Path) -> GenreClassifier:
    return GenreClassifier.load(bundle_dir, device="cpu")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Seeded audio files: 30 s stereo MP3s, 8 kHz mono, 48 kHz stereo, 1 s, 0.5 s, a corrupt file."""
    root = tmp_path_factory.mktemp("clips")
    files = {
        "a": (music_like(30, 44100, seed=1, channels=2), 44100, "a.mp3"),
        "b": (music_like(30, 44100, seed=2, channels=2), 44100, "b.mp3"),
        "mono8k": (music_like(6, 8000, seed=3), 8000, "mono8k.wav"),
        "stereo48k": (music_like(6, 48000, seed=4, channels=2), 48000, "stereo48k.flac"),
        "one_second": (music_like(1.0, 22050, seed=5), 22050, "one_second.wav"),
        "half_second": (music_like(0.5, 22050, seed=6), 22050, "half_second.wav"),
    }
    paths = {}
    for key, (samples, sr, name) in files.items():
        write_audio(root / name, samples, sr)
        paths[key] = root / name
    paths["corrupt"] = make_random_bytes(root / "corrupt.mp3")
    return paths


# -- bundles ------------------------------------------------------------------------------------------------


def test_bundle_round_trip_gives_identical_predictions(bundle_dir: Path, classifier: GenreClassifier) -> None:
    original = GenreClassifier(untrained_bundle(GENRES, seed=3), device="cpu")
    mel = np.random.default_rng(0).normal(-30, 15, size=(300, 128)).astype(np.float16)
    assert np.array_equal(original.window_probabilities(mel), classifier.window_probabilities(mel))
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    assert manifest["genres"] == list(GENRES)
    assert manifest["preprocessing"]["patch_frames"] == 43 and manifest["preprocessing"]["features"]["n_mels"] == 128
    net = manifest["members"][0]["nets"][0]
    assert len(net["band_mean"]) == 128 and len(net["sha256"]) == 64 and net["head_genres"] == list(GENRES)
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in bundle_dir.rglob("*"))  # readable by others


def _copy(bundle_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


def _edit_manifest(bundle: Path, edit) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    edit(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def _file_entry(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def as_format_2(bundle_dir: Path, out: Path, record: bool = True) -> Path:
    """A one-member agf-bundle/3 written in the agf-bundle/2 layout, as agf wrote it before members: the net and MLP
    files beside the manifest, the export record (with `record`) in mlp.safetensors' header."""
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    (member,) = manifest.pop("members")
    del manifest["combination"]
    out.mkdir()
    for entry in [*member["nets"], member["mlp"]]:
        save_file(load_file(str(bundle_dir / "member-0" / entry["file"])), str(out / entry["file"]),
                  metadata={"format": "agf-bundle/2"})
        entry.update(_file_entry(out / entry["file"]))
        entry.pop("head_genres", None)
    manifest.update(format="agf-bundle/2", nets=member["nets"], mlp=member["mlp"], aggregation=member["aggregation"])
    if record:
        part = {key: json.loads(json.dumps(manifest[key]))
                for key in ("genres", "preprocessing", "nets", "mlp", "aggregation", "calibration")}
        part["mlp"] = {key: value for key, value in part["mlp"].items() if key not in ("bytes", "sha256")}
        weights = out / MLP_FILE
        metadata = {"format": "agf-bundle/2", EXPORTED: json.dumps(part)}
        save_file(load_file(str(weights)), str(weights), metadata=metadata)
        manifest["mlp"].update(_file_entry(weights))
    (out / MANIFEST).write_text(json.dumps(manifest))
    return out


def test_truncated_weights_are_refused(bundle_dir: Path, tmp_path: Path) -> None:
    bundle = _copy(bundle_dir, tmp_path)
    weights = bundle / "member-0" / "net-0.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="truncated"):
        load_bundle(bundle)


def test_wrong_format_version_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    bundle = _copy(bundle_dir, tmp_path)
    _edit_manifest(bundle, lambda m: m.update(format="agf-bundle/99"))
    with pytest.raises(ModelFileError, match="agf-bundle/99.*agf export"):
        load_bundle(bundle)


def test_a_format_1_bundle_averages_window_probabilities(bundle_dir: Path, tmp_path: Path) -> None:
    assert json.loads((bundle_dir / MANIFEST).read_text())["format"] == "agf-bundle/3"
    bundle = as_format_2(bundle_dir, tmp_path / "old", record=False)
    _edit_manifest(bundle, lambda m: (m.update(format="agf-bundle/1"), m.pop("aggregation")))
    assert load_bundle(bundle).aggregation == "probs"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["members"][0]["nets"][0]["band_mean"].__setitem__(5, 0.0), "band statistics"),
        (lambda m: m["genres"].pop(), "MLP's shape or genres"),
        (lambda m: m["members"][0]["nets"][0]["architecture"].__setitem__("width", 2.0), "architecture does not match"),
        (lambda m: m.pop("preprocessing"), "invalid manifest"),
        (lambda m: m["members"][0]["nets"][0].update(file="../mlp.safetensors"), "missing from the bundle"),
        (lambda m: m["members"][0].update(aggregation="median"), "aggregation 'median'"),
        (lambda m: m["members"][0].update(aggregation="pooled"), "do not add up to the MLP's input"),
        (lambda m: m["members"][0].pop("aggregation"), "invalid manifest"),
        (lambda m: m["members"][0].update(head=5, output="blend"), "head 5 is not one of its 2 nets"),
        (lambda m: m["members"][0].update(output="head"), "output 'head' has no MLP"),
        (lambda m: m.update(combination="pooled"), "combination 'pooled' is not"),
        (lambda m: m.update(members=[]), "members .* is not a list of members"),
    ],
)
def test_a_manifest_that_no_longer_matches_the_weights_is_refused(
    bundle_dir: Path, tmp_path: Path, edit, message: str
) -> None:
    bundle = _copy(bundle_dir, tmp_path)
    _edit_manifest(bundle, edit)
    with pytest.raises(ModelFileError, match=message):
        load_bundle(bundle)


class _Payload:
    """Unpickling this would create a file: proof that a bundle was unpickled."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_is_never_unpickled(bundle_dir: Path, tmp_path: Path) -> None:
    payload = _Payload()
    payload.marker = tmp_path / "code-ran"
    disguised = tmp_path / "model.pt"
    torch.save({"weights": payload}, disguised)
    with pytest.raises(ModelFileError, match="never unpickles"):
        GenreClassifier.load(disguised)
    bundle = _copy(bundle_dir, tmp_path)
    weights = bundle / "member-0" / MLP_FILE
    weights.write_bytes(pickle.dumps(payload))  # with a manifest that vouches for it
    _edit_manifest(bundle, lambda m: m["members"][0]["mlp"].update(_file_entry(weights)))
    with pytest.raises(ModelFileError, match="not a readable safetensors"):
        load_bundle(bundle)
    assert not payload.marker.exists()


def test_export_replaces_a_bundle_but_never_other_files(tmp_path: Path) -> None:
    bundle = untrained_bundle(GENRES, n_nets=1)
    target = save_bundle(bundle, tmp_path / "model")
    save_bundle(bundle, target)  # an older bundle is replaced
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(ModelFileError, match="not an agf bundle"):
        save_bundle(bundle, precious)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelFileError, match="is a file"):
        save_bundle(bundle, tmp_path / "notes.txt")
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["documents", "model", "notes.txt"]  # no leftovers


def test_a_missing_or_empty_bundle_says_what_it_is(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such bundle"):
        load_bundle(tmp_path / "nothing")
    with pytest.raises(ModelFileError, match="no manifest.json"):
        load_bundle(tmp_path)


# -- the classifier -------------------------------------------------------------------------------------------


def test_every_window_contributes(classifier: GenreClassifier) -> None:
    """Silence with the music in one window only, at the end: the track's prediction must see it (the challenge
    submission scored one repeated window)."""
    silent = np.full((410, 128), -80.0, dtype=np.float16)
    signal = silent.copy()
    signal[-43:] = np.random.default_rng(1).normal(-20, 10, size=(43, 128))
    windows = classifier.window_probabilities(signal)
    assert len(windows) == 19  # every 21 frames while a window fits, plus one flush with the end
    assert not np.allclose(windows[0], windows[-1])
    track = next(classifier._score([Decoded("x", signal, 9.0)]))
    assert np.allclose(track.probabilities, windows.mean(axis=0), atol=1e-6)
    assert track.n_windows == 19
    quiet = next(classifier._score([Decoded("y", silent, 9.0)]))
    assert not np.allclose(track.probabilities, quiet.probabilities, atol=1e-4)


def test_a_long_file_is_scored_a_batch_at_a_time(tmp_path: Path) -> None:
    """A 10-minute file: every window counts, no forward pass holds more than batch_windows windows."""
    path = tmp_path / "long.wav"
    write_audio(path, np.tile(music_like(10, 22050, seed=9), 60), 22050)
    small = GenreClassifier(untrained_bundle(GENRES, n_nets=1), device="cpu", batch_windows=256)
    seen: list[int] = []
    real = small._window_terms
    small._window_terms = lambda windows: (seen.append(len(windows)), real(windows))[1]
    prediction = next(small.predict_many([path]))
    assert prediction.ok and prediction.n_windows == sum(seen) and max(seen) <= 256
    assert prediction.n_windows > 1200 and prediction.duration == pytest.approx(600, abs=0.01)


@pytest.mark.parametrize("key", ["a", "mono8k", "stereo48k", "one_second"])
def test_any_rate_layout_and_length_gives_probabilities(classifier: GenreClassifier, clips: dict, key: str) -> None:
    probabilities = classifier.predict(clips[key])
    assert list(probabilities) == list(GENRES)
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(0 < p < 1 for p in probabilities.values())


def test_audio_shorter_than_one_window_is_a_clear_error(classifier: GenreClassifier, clips: dict) -> None:
    with pytest.raises(PredictError, match=r"0\.50 s of audio is shorter than the model's 1\.00-s window"):
        classifier.predict(clips["half_second"])


def test_a_waveform_matches_its_file(classifier: GenreClassifier, clips: dict) -> None:
    import soundfile

    samples, sr = soundfile.read(clips["stereo48k"], dtype="float32", always_2d=True)
    from_waveform = classifier.predict(samples.T, sr=sr)
    from_file = classifier.predict(clips["stereo48k"])
    assert from_waveform == pytest.approx(from_file, abs=0.02)  # two resamplers (soxr vs FFmpeg's)
    with pytest.raises(PredictError, match="sample rate"):
        classifier.predict(samples.T)
    with pytest.raises(PredictError, match=r"\(channels, n\)"):
        classifier.predict(samples, sr=sr)


def test_integer_pcm_is_scaled_and_other_dtypes_are_refused(classifier: GenreClassifier, clips: dict) -> None:
    """int16 samples as soundfile or scipy read them score as their floats (they were 32768x too loud)."""
    import soundfile

    floats, sr = soundfile.read(clips["stereo48k"], dtype="float32", always_2d=True)
    pcm, _ = soundfile.read(clips["stereo48k"], dtype="int16", always_2d=True)
    expected = classifier.predict(floats.T, sr=sr)
    assert classifier.predict(pcm.T, sr=sr) == pytest.approx(expected, abs=1e-4)
    assert classifier.predict((pcm.T.astype(np.int32) << 16), sr=sr) == pytest.approx(expected, abs=1e-4)
    assert classifier.predict((pcm.T // 256 + 128).astype(np.uint8), sr=sr) == pytest.approx(expected, abs=0.02)
    for bad in (pcm.T > 0, pcm.T.astype(np.complex64), pcm.T.astype(object), pcm.T.astype(np.int64)):
        with pytest.raises(PredictError, match=rf"^a waveform of dtype {bad.dtype} is not audio samples; pass"):
            classifier.predict(bad, sr=sr)


def test_silence_is_not_given_a_genre_as_prepare_flags_it(classifier: GenreClassifier, tmp_path: Path) -> None:
    from agf.config import FeatureConfig
    from agf.prepare import TrackJob, prepare_track

    path = tmp_path / "silence.wav"
    write_audio(path, np.zeros(3 * 22050, np.float32), 22050)
    [prediction] = classifier.predict_many([path])
    entry = prepare_track(TrackJob("s", str(path), str(tmp_path / "store"), FeatureConfig()))
    assert entry["status"] == "silent" and prediction.error == f"silent: {entry['reason']}"
    with pytest.raises(PredictError, match=r"^<waveform>: silent: RMS level -200\.0 dBFS is below the silence"):
        classifier.predict(np.zeros(44100, np.float32), sr=44100)


def test_a_file_shorter_than_its_header_declares_is_not_classified(classifier: GenreClassifier,
                                                                   tmp_path: Path) -> None:
    cut = make_truncated_mp3(tmp_path / "cut.mp3", seconds=12.0, fraction=0.33)
    [prediction] = classifier.predict_many([cut])
    assert prediction.error == "truncated: decoded 3.9 s of the 12.0 s its header declares (a damaged or partial file)"
    assert classifier.predict(cut, max_duration=3.0)  # what is there, when asked for explicitly


def test_decoder_messages_go_with_the_prediction(classifier: GenreClassifier, tmp_path: Path) -> None:
    damaged = make_damaged(write_case(tmp_path, "ogg", 44100, 2, 6.0, music=True))
    [prediction] = classifier.predict_many([damaged])
    assert prediction.ok and prediction.notes and "CRC mismatch" in prediction.notes[0]
    summary = failure_summary([], 1, [prediction])
    assert f"{damaged}: the decoder said: " in summary and "CRC mismatch" in summary
    lines = io.StringIO()
    PredictionWriter(lines, "jsonl", classifier.genres, 3).write(prediction)
    assert json.loads(lines.getvalue())["notes"] == list(prediction.notes)


def test_max_duration_classifies_the_beginning(classifier: GenreClassifier, clips: dict) -> None:
    whole = next(classifier.predict_many([clips["a"]]))
    first = next(classifier.predict_many([clips["a"]], max_duration=5.0))
    assert first.duration == pytest.approx(5.0, abs=0.01) and first.n_windows < whole.n_windows


def test_decoding_in_worker_processes_gives_the_same_predictions(classifier: GenreClassifier, clips: dict) -> None:
    paths = [clips["a"], clips["corrupt"], clips["b"], clips["mono8k"]]
    here = list(classifier.predict_many(paths, workers=0))
    workers = list(classifier.predict_many(paths, workers=2))
    assert [p.source for p in workers] == [str(p) for p in paths]
    assert [p.ok for p in workers] == [True, False, True, True]
    for a, b in zip(here, workers):
        assert a.error == b.error
        if a.ok:
            assert np.array_equal(a.probabilities, b.probabilities)


# -- memory independent of the file's length --------------------------------------------------------------------

LONG_SECONDS = 150.0  # six 24-s log-mel blocks, and past MEMORY_FRAMES (95 s): spooled


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.mp3"
    write_audio(path, music_like(LONG_SECONDS, 44100, seed=7, channels=2), 44100)
    return path


def full_file_decoded(path: Path, features: FeatureConfig, max_duration: float | None) -> Decoded:
    """The whole-file path prediction took before streaming: the segment decoded whole, then its log-mel."""
    samples, _ = decode_segment(path, features.sample_rate, Segment.of(features), max_duration)
    mel = extractor_for(features).log_mel(samples).astype(np.float16)
    return Decoded(str(path), mel, samples.size / features.sample_rate)


@pytest.mark.parametrize(("max_duration", "offset", "cap"),
                         [(None, "start", None), (100.0, 20.0, None), (110.0, "centre", None), (None, "start", 120.0)],
                         ids=["whole", "offset", "centre", "max-duration"])
@pytest.mark.slow
def test_streamed_decoding_gives_the_full_file_log_mel_and_predictions(
        classifier: GenreClassifier, long_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        max_duration: float | None, offset: str | float, cap: float | None) -> None:
    """A 150-s MP3 decoded block by block (spooled past MEMORY_FRAMES) gives the whole-file log-mel frame for frame,
    for every kind of segment and --max-duration, and the whole-file path's predictions to within 1e-5."""
    features = replace(classifier.bundle.features, max_duration=max_duration, offset=offset)
    model = GenreClassifier(replace(classifier.bundle, features=features), device="cpu")
    expected = full_file_decoded(long_clip, features, cap)
    assert expected.mel.shape[0] > MEMORY_FRAMES
    spool = tmp_path / "spool"
    spool.mkdir()
    decoded = decode_file(DecodeJob(str(long_clip), features, cap, str(spool)))
    assert isinstance(decoded.mel, SpooledMel) and len(list(spool.iterdir())) == 1
    streamed_mel = mel_rows(decoded.mel, 0, decoded.mel.shape[0]).astype(np.float32)
    # Frame for frame, to float16 rounding (a block's FFT may round its last float32 bit differently).
    np.testing.assert_allclose(streamed_mel, expected.mel.astype(np.float32), rtol=0, atol=0.07)
    assert np.mean(streamed_mel == expected.mel) > 0.999
    assert decoded.duration == expected.duration
    whole_file = next(model._score([expected])).probabilities
    streamed = next(model._score([decoded]))
    assert np.abs(streamed.probabilities - whole_file).max() < 1e-5
    assert not list(spool.iterdir())  # a spooled log-mel is removed once its track is scored
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    predicted = model.predict(long_clip, max_duration=cap)
    assert np.abs(np.array(list(predicted.values())) - whole_file).max() < 1e-5
    assert not list(spool.iterdir())  # predict's spool directory is gone


def write_long_wav(path: Path, minutes: int) -> Path:
    """`minutes` of gliding tones over noise, 22,050 Hz mono 16-bit, written a minute at a time."""
    rng = np.random.default_rng(minutes)
    t = np.arange(60 * 22050) / 22050
    with soundfile.SoundFile(path, "w", samplerate=22050, channels=1, subtype="PCM_16") as handle:
        for minute in range(minutes):
            tone = 0.3 * np.sin(2 * np.pi * (220 + 10 * minute + 20 * t) * t)
            handle.write((tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32))
    return path


def decoding_peak(path: Path, spool: Path) -> tuple[int, Decoded]:
    """The peak of traced (Python and NumPy) allocations while prediction decodes a file, and what it decoded."""
    tracemalloc.start()
    try:
        decoded = decode_file(DecodeJob(str(path), FeatureConfig(), None, str(spool)))
        return tracemalloc.get_traced_memory()[1], decoded
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_decoding_memory_does_not_grow_with_the_files_length(tmp_path: Path) -> None:
    """Decoding a 40-min file for prediction peaks no higher than a 10-min one, far below the 212 MB of the 40-min
    signal in float32 that the whole-file decode held (then its spectrum and log-mel on top)."""
    short_peak, short = decoding_peak(write_long_wav(tmp_path / "10min.wav", 10), tmp_path)
    long_peak, long = decoding_peak(write_long_wav(tmp_path / "40min.wav", 40), tmp_path)
    assert short.error is None and long.error is None
    assert long.mel.shape[0] == 1 + 40 * 60 * 22050 // 512
    whole_signal = 40 * 60 * 22050 * 4
    assert long_peak < 1.25 * short_peak and long_peak < whole_signal / 20, (short_peak, long_peak)
    short.discard()
    long.discard()


HEAVY_MODULES = ("pandas", "sklearn", "scipy")


def imported_heavy_modules(code: str) -> list[str]:
    """Which of HEAVY_MODULES a fresh interpreter has imported after running `code`."""
    script = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    last_line = (done.stdout.strip().splitlines() or [""])[-1]
    return [name for name in last_line.split(",") if name]


def test_decoding_for_prediction_imports_neither_pandas_sklearn_nor_scipy(clips: dict) -> None:
    """The input side of prediction (decoding, log-mel, the bundle's feature settings) needs none of them."""
    code = ("from agf.config import FeatureConfig\nfrom agf.predict.decoding import DecodeJob, decode_file\n"
            f"assert decode_file(DecodeJob({str(clips['a'])!r}, FeatureConfig(), None)).error is None")
    assert imported_heavy_modules(code) == []


def test_loading_a_bundle_and_predicting_imports_neither_pandas_sklearn_nor_scipy(bundle_dir: Path,
                                                                                  clips: dict) -> None:
    code = ("from agf.predict import GenreClassifier\n"
            f"GenreClassifier.load({str(bundle_dir)!r}, device='cpu').predict({str(clips['a'])!r})")
    assert imported_heavy_modules(code) == []


# -- inputs and `agf predict` ----------------------------------------------------------------------------------


def test_inputs_expand_directories_globs_and_stdin(tmp_path: Path) -> None:
    for name in ("x/1.mp3", "x/deep/2.FLAC", "x/notes.txt", "y.wav"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    found = expand_inputs([str(tmp_path / "x"), str(tmp_path / "*.wav"), "-", str(tmp_path / "empty")],
                          stdin_lines=[f"{tmp_path / 'y.wav'}\n", "\n", "missing.mp3\n"])
    assert found == [str(tmp_path / "x/1.mp3"), str(tmp_path / "x/deep/2.FLAC"), str(tmp_path / "y.wav"),
                     "missing.mp3", str(tmp_path / "empty")]


def test_cli_csv_is_the_challenge_format_and_bad_files_do_not_stop_the_batch(
    bundle_dir: Path, clips: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = clips["a"].parent
    out = tmp_path / "submission.csv"
    assert main(["predict", str(bundle_dir), str(folder), "-o", str(out), "-q", "-j", "1"]) == 0
    err = capsys.readouterr().err
    assert "corrupt.mp3" in err and "half_second.wav" in err and "classified 5 file(s), 2 failed" in err
    with open(out, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["file_id", *GENRES]
    assert sorted(r[0] for r in rows[1:]) == ["a", "b", "mono8k", "one_second", "stereo48k"]
    for row in rows[1:]:
        assert sum(float(v) for v in row[1:]) == pytest.approx(1.0, abs=1e-6)
    assert main(["predict", str(bundle_dir), str(folder), "--strict", "-q", "-j", "0", "--format", "jsonl"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {line["file_id"] for line in lines if "error" in line} == {"corrupt", "half_second"}
    good = next(line for line in lines if line["file_id"] == "a")
    assert len(good["top"]) == 3 and set(good["probabilities"]) == set(GENRES) and good["windows"] > 50


def test_cli_exit_status_is_1_when_nothing_is_classified(
    bundle_dir: Path, clips: dict, capsys: pytest.CaptureFixture
) -> None:
    assert main(["predict", str(bundle_dir), str(clips["corrupt"]), "-q"]) == 1
    assert "classified 0 file(s), 1 failed" in capsys.readouterr().err
    truncated = make_truncated_mp3(clips["a"].parent.parent / "truncated.mp3", fraction=0.3)
    assert main(["predict", str(bundle_dir), str(truncated), "-q"]) == 1  # shorter than its header declares
    assert "truncated: decoded 1.2 s of the 4.0 s its header declares" in capsys.readouterr().err
    assert main(["predict", str(clips["a"].parent / "nothing"), str(truncated), "-q"]) == 1
    assert "agf predict: error:" in capsys.readouterr().err
