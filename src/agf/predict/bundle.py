"""Model bundles: everything prediction needs in one directory, loaded without ever unpickling.

A bundle (written by save_bundle, e.g. through `agf export`) is a directory:
    manifest.json        format version, preprocessing (feature settings, window length and hop, amp),
                         genres, each net's architecture, tasks and per-band standardisation statistics,
                         the MLP's shape, how windows become a track (aggregation), the calibration
                         temperature, the name, how the model was selected, provenance and metrics,
                         and the byte size and SHA-256 of every weight file
    net-<i>.safetensors  the source nets' weights (band-norm statistics included)
    mlp.safetensors      the transfer MLP's weights
mlp.safetensors' header metadata records the manifest's model part as exported (MODEL_KEYS: genres,
preprocessing, nets with their files' sizes and hashes, the MLP's shape, aggregation, calibration).
load_bundle checks every value of the manifest (types, ranges, allowed names), the weight files (size, hash),
the weights themselves (shapes, band statistics, feature widths) and then that record: an edit of the manifest
that keeps every shape (genres renamed or reordered, another sample rate or temperature, ...) is refused too.
Bundles exported before that record are read with every check but the last. Each failure is one
ModelFileError saying what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from agf.aggregation import AGGREGATIONS, Aggregation
from agf.config import (
    MIN_PATCH_FRAMES,
    PATCH_FRAMES,
    FeatureConfig,
    TransferConfig,
    config_from_dict,
    config_to_dict,
)
from agf.errors import AgfError, ConfigError, ModelFileError
from agf.fileio import read_json, write_json_atomic
from agf.models import MTN, STN
from agf.models.io import build_net, is_pickle, read_weights, with_weights
from agf.tasks import GENRE_TASK, TASKS
from agf.transfer import build_mlp, load_mlp, load_source

BUNDLE_FORMAT = "agf-bundle/2"
# Older formats this agf reads, with what their manifests leave implicit: version 1 (before track aggregations)
# always averaged the window probabilities.
OLDER_FORMATS: dict[str, dict[str, Any]] = {"agf-bundle/1": {"aggregation": Aggregation.PROBS.value}}
MANIFEST = "manifest.json"
MLP_FILE = "mlp.safetensors"
EXPORT_AGAIN = "export it again with `agf export`"
# The manifest's keys that say what the model computes; beside `format`, every other key (name, case,
# selection, metrics, training, provenance) describes it.
MODEL_KEYS = ("genres", "preprocessing", "nets", "mlp", "aggregation", "calibration")
# The key of mlp.safetensors' header metadata that records the manifest's model part as exported.
EXPORTED = "agf-manifest"


@dataclass(frozen=True)
class BundleNet:
    """One source net of a bundle: the net (eval mode), a plain label and the tasks it was trained on."""

    net: nn.Module
    label: str
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class Bundle:
    """A complete genre model: source nets -> window features -> MLP -> genre probabilities per window."""

    nets: tuple[BundleNet, ...]
    mlp: nn.Sequential
    genres: tuple[str, ...]
    features: FeatureConfig
    patch_frames: int
    hop_frames: int
    amp: bool  # window features under bf16 autocast, as the MLP was trained on
    # Track probabilities are temperature-scaled (agf.calibration) by this, fitted on validation; 1 = none.
    temperature: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)  # name, selection, case, provenance, metrics
    # How a track's windows become its probabilities (agf.aggregation.Aggregation; see agf.transfer.mlp): the
    # mean of the window probabilities, of their logarithms, or the pooled-feature MLP on their mean and std.
    aggregation: Aggregation = Aggregation.PROBS

    def __post_init__(self) -> None:
        """Hold the aggregation as an Aggregation, also when given by its name."""
        object.__setattr__(self, "aggregation", Aggregation(self.aggregation))

    @property
    def name(self) -> str:
        return str(self.info.get("name", "agf model"))

    @property
    def mlp_input_dim(self) -> int:
        """The MLP's input width: the nets' features, or their mean and standard deviation (pooled)."""
        return self.aggregation.mlp_input_width(sum(n.net.feature_dim for n in self.nets))

    @property
    def window_seconds(self) -> float:
        """The length of one input window in seconds."""
        return self.patch_frames * self.features.hop_length / self.features.sample_rate


def bundle_from_transfer(
    transfer_dir: str | Path, net_dirs: Sequence[str | Path], features: FeatureConfig, amp: bool, info: dict,
    temperature: float = 1.0,
) -> Bundle:
    """The bundle of a finished transfer: its MLP, its track aggregation and its source nets (in the MLP's input
    order), and the temperature its evaluation fitted on validation."""
    mlp, spec = load_mlp(transfer_dir)
    sources = [load_source(path, features) for path in net_dirs]
    return Bundle(
        nets=tuple(BundleNet(s.net, s.label, s.tasks) for s in sources),
        mlp=mlp,
        genres=tuple(spec["genres"]),
        features=features,
        patch_frames=int(spec["patch_frames"]),
        hop_frames=int(spec["window_hop"]),
        amp=amp,
        temperature=temperature,
        aggregation=spec.get("aggregation", Aggregation.PROBS),  # transfers made before aggregations averaged probs
        info={"name": spec["name"], **info, "training": {
            "seed": spec["seed"], "best_epoch": spec["best_epoch"], "best_val_log_loss": spec["best_val_log_loss"],
            "n_train_tracks": spec["n_train_tracks"], "n_train_windows": spec["n_train_windows"]}},
    )


def untrained_bundle(genres: Sequence[str], features: FeatureConfig = FeatureConfig(), n_nets: int = 2,
                     seed: int = 0, amp: bool = True) -> Bundle:
    """A bundle of the paper's architecture with random weights (n_nets genre STNs): for benchmarks and tests,
    whose speed and plumbing do not depend on what the weights learned."""
    torch.manual_seed(seed)
    nets = []
    for _ in range(n_nets):
        net = STN(len(genres), 1.0, features.n_mels)
        net.band_norm.set_stats(torch.randn(features.n_mels) * 10 - 40, torch.rand(features.n_mels) * 10 + 5)
        nets.append(BundleNet(net.eval(), "STN[g]", (GENRE_TASK,)))
    mlp = build_mlp(sum(n.net.feature_dim for n in nets), len(genres)).eval()
    return Bundle(tuple(nets), mlp, tuple(genres), features, PATCH_FRAMES, TransferConfig().window_hop, amp, 1.0,
                  {"name": "untrained " + " + ".join(n.label for n in nets), "selection": "none (random weights)"})


def _sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_entry(directory: Path, name: str) -> dict[str, Any]:
    """A weight file's name, size and hash for the manifest."""
    path = directory / name
    return {"file": name, "bytes": path.stat().st_size, "sha256": _sha256(path)}


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict on the CPU, contiguous, ready for safetensors."""
    return {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}


def _check_replaceable(out: Path) -> None:
    """ModelFileError unless `out` is free, an empty directory or a bundle: export never deletes anything else."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ModelFileError(f"{out}: is a file; choose another bundle path")
    if any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ModelFileError(f"{out}: a folder that is not an agf bundle; export into a new or empty folder "
                             "(an existing bundle is replaced)")


def save_bundle(bundle: Bundle, out: str | Path) -> Path:
    """Write the bundle directory `out` atomically: built beside it, then renamed over it (replacing an older
    bundle there; any other existing file or folder is refused, never deleted)."""
    out = Path(out)
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        nets = []
        for number, source in enumerate(bundle.nets):
            name = f"net-{number}.safetensors"
            save_file(_state(source.net), str(staging / name), metadata={"format": BUNDLE_FORMAT})
            band = source.net.band_norm
            nets.append({
                **_file_entry(staging, name), "label": source.label, "tasks": list(source.tasks),
                "architecture": source.net.spec(), "feature_dim": source.net.feature_dim,
                "band_mean": band.mean.cpu().tolist(), "band_std": band.std.cpu().tolist(),
            })
        mlp = {"file": MLP_FILE, "input_dim": bundle.mlp[1].in_features, "hidden": bundle.mlp[1].out_features,
               "dropout": bundle.mlp[0].p}
        manifest = {
            "format": BUNDLE_FORMAT,
            **bundle.info,
            "name": bundle.name,
            "genres": list(bundle.genres),
            "preprocessing": {"features": config_to_dict(bundle.features), "patch_frames": int(bundle.patch_frames),
                              "hop_frames": int(bundle.hop_frames), "amp": bool(bundle.amp)},
            "nets": nets,
            "mlp": mlp,
            "aggregation": bundle.aggregation.value,
            "calibration": {"temperature": float(bundle.temperature)},
        }
        save_file(_state(bundle.mlp), str(staging / MLP_FILE),
                  metadata={"format": BUNDLE_FORMAT, EXPORTED: json.dumps(_model_part(manifest))})
        mlp.update(_file_entry(staging, MLP_FILE))
        write_json_atomic(staging / MANIFEST, manifest)
        for path in staging.iterdir():
            os.chmod(path, 0o644)  # safetensors and mkdtemp make files private; a bundle is meant to be shared
        os.chmod(staging, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _not_a_directory(path: Path) -> ModelFileError:
    """The error for a bundle path that is a file: say when it looks like a pickle."""
    if is_pickle(path):
        return ModelFileError(f"{path}: a pickle or torch.save file, not an agf bundle; agf never unpickles model "
                              "files (they can run code); use a bundle directory made by `agf export`")
    return ModelFileError(f"{path}: a file, not an agf bundle; a bundle is a directory with {MANIFEST} "
                          "made by `agf export`")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The parsed and version-checked manifest of the bundle directory `path` (an older format's implicit
    settings filled in)."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such bundle; make one with `agf export -w WORKDIR {path}`")
    if not path.is_dir():
        raise _not_a_directory(path)
    try:
        manifest = read_json(path / MANIFEST)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no {MANIFEST}; not an agf bundle, or an interrupted copy") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path / MANIFEST}: not valid JSON ({exc}); {EXPORT_AGAIN}") from None
    formats = (BUNDLE_FORMAT, *OLDER_FORMATS)
    if not isinstance(manifest, dict) or manifest.get("format") not in formats:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ModelFileError(f"{path / MANIFEST}: bundle format {found!r}, this agf reads "
                             f"{' or '.join(map(repr, formats))}; "
                             f"{EXPORT_AGAIN}")
    return {**OLDER_FORMATS.get(manifest["format"], {}), **manifest}


def _checked_weights(directory: Path, entry: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A weight file's tensors and header metadata, after checking its size and hash against the manifest."""
    path = directory / str(entry["file"])
    if Path(entry["file"]).name != entry["file"] or not path.is_file():
        raise ModelFileError(f"{path}: missing from the bundle; {EXPORT_AGAIN}")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise ModelFileError(f"{path}: {size} bytes, the manifest says {entry['bytes']} (truncated or replaced); "
                             f"{EXPORT_AGAIN}")
    if _sha256(path) != entry["sha256"]:
        raise ModelFileError(f"{path}: its content does not match the manifest's SHA-256 (corrupt or edited); "
                             f"{EXPORT_AGAIN}")
    return read_weights(path, EXPORT_AGAIN)


def _require(ok: bool, where: Path, name: str, value: Any, wanted: str) -> None:
    """ModelFileError naming the manifest value `name` unless it is as `wanted` says (`ok`)."""
    if not ok:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ModelFileError(f"{where}: {name} {shown} is not {wanted}; {EXPORT_AGAIN}")


def _is_int(value: Any, low: int) -> bool:
    """Whether a JSON value is an integer (not a boolean) of at least `low`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _settings(where: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The Bundle fields a manifest sets besides the weights, each checked: type, range, allowed names."""
    pre = manifest["preprocessing"]
    try:
        features = config_from_dict({"features": pre["features"]}).features
    except ConfigError as exc:
        raise ModelFileError(f"{where}: preprocessing: {exc}; {EXPORT_AGAIN}") from None
    genres, patch, hop, amp = manifest["genres"], pre["patch_frames"], pre["hop_frames"], pre["amp"]
    aggregation, temperature = manifest["aggregation"], manifest["calibration"]["temperature"]
    _require(isinstance(genres, list) and len(genres) > 0 and all(isinstance(g, str) and g for g in genres)
             and len(set(genres)) == len(genres), where, "genres", genres, "a list of distinct genre names")
    _require(_is_int(patch, MIN_PATCH_FRAMES), where, "preprocessing.patch_frames", patch,
             f"a number of frames of at least {MIN_PATCH_FRAMES}")
    _require(_is_int(hop, 1), where, "preprocessing.hop_frames", hop, "a number of frames of at least 1")
    _require(isinstance(amp, bool), where, "preprocessing.amp", amp, "true or false")
    _require(aggregation in AGGREGATIONS, where, "aggregation", aggregation, f"one of {', '.join(AGGREGATIONS)}")
    _require(isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
             and 0 < temperature < float("inf"), where, "calibration.temperature", temperature, "a positive number")
    return {"genres": tuple(genres), "features": features, "patch_frames": patch, "hop_frames": hop, "amp": amp,
            "aggregation": aggregation, "temperature": float(temperature)}


def _load_net(directory: Path, entry: dict[str, Any], n_mels: int) -> BundleNet:
    """One source net, checked against its manifest entry."""
    where = f"{directory / MANIFEST}: net {entry.get('file')!r}"
    label, tasks = entry["label"], entry["tasks"]
    _require(isinstance(label, str) and label != "", directory / MANIFEST, "a net's label", label, "a name")
    _require(isinstance(tasks, list) and len(tasks) > 0 and all(t in TASKS for t in tasks), directory / MANIFEST,
             "a net's tasks", tasks, f"a list of task letters ({', '.join(TASKS)})")
    state, _ = _checked_weights(directory, entry)
    try:
        net = with_weights(lambda: build_net(entry["architecture"]), state)
    except ValueError as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    mean, std = (np.asarray(entry[k], dtype=np.float64) for k in ("band_mean", "band_std"))
    band = net.band_norm
    if not (mean.shape == std.shape == (n_mels,) and np.allclose(mean, band.mean.numpy())
            and np.allclose(std, band.std.numpy())):
        raise ModelFileError(f"{where}: the band statistics in the manifest differ from the weights'")
    if entry["feature_dim"] != net.feature_dim:
        raise ModelFileError(f"{where}: feature_dim {entry['feature_dim']}, the net gives {net.feature_dim}")
    return BundleNet(net.eval(), label, tuple(net.task_outputs) if isinstance(net, MTN) else tuple(tasks))


def _model_part(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a manifest says about the model (MODEL_KEYS), without the MLP file's own size and hash (which cannot
    be recorded inside that file)."""
    part = {key: manifest[key] for key in MODEL_KEYS if key in manifest}
    if isinstance(part.get("mlp"), dict):
        part["mlp"] = {key: value for key, value in part["mlp"].items() if key not in ("bytes", "sha256")}
    return part


def _differences(recorded: Any, found: Any, name: str = "") -> list[str]:
    """The dotted names of the values that differ between two parsed JSON documents (types included)."""
    if isinstance(recorded, dict) and isinstance(found, dict):
        names = {key: f"{name}.{key}" if name else key for key in recorded.keys() | found.keys()}
        return [difference for key in sorted(names)
                for difference in (_differences(recorded[key], found[key], names[key])
                                   if key in recorded and key in found else [names[key]])]
    return [] if json.dumps(recorded, sort_keys=True) == json.dumps(found, sort_keys=True) else [name]


def _check_exported(where: Path, manifest: dict[str, Any], metadata: dict[str, str]) -> None:
    """ModelFileError naming what the manifest changed in the model part that mlp.safetensors recorded at export;
    nothing to check in a bundle exported before that record."""
    if EXPORTED not in metadata:
        return
    changed = _differences(json.loads(metadata[EXPORTED]), _model_part(manifest))
    if changed:
        raise ModelFileError(f"{where}: {', '.join(changed)} differ from what the weights were exported with "
                             f"(recorded in {MLP_FILE}): the manifest was edited; {EXPORT_AGAIN}")


def load_bundle(path: str | Path) -> Bundle:
    """Load and check a bundle directory (on the CPU); ModelFileError says what is wrong with a bad one."""
    path = Path(path)
    where = path / MANIFEST
    manifest = read_manifest(path)
    try:
        settings = _settings(where, manifest)
        nets = tuple(_load_net(path, entry, settings["features"].n_mels) for entry in manifest["nets"])
        spec = manifest["mlp"]
        state, metadata = _checked_weights(path, spec)
        try:
            mlp = with_weights(lambda: build_mlp(spec["input_dim"], len(settings["genres"]), spec["hidden"],
                                                 spec["dropout"]), state)
        except ValueError as exc:
            raise ModelFileError(f"{where}: the MLP's shape or genres do not match its weights ({exc})") from None
        info = {k: v for k, v in manifest.items() if k != "format" and k not in MODEL_KEYS}
        bundle = Bundle(nets, mlp.eval(), info=info, **settings)
        if bundle.mlp_input_dim != spec["input_dim"]:
            raise ModelFileError(f"{where}: the nets' features do not add up to the MLP's input "
                                 f"({bundle.aggregation} aggregation)")
        _check_exported(where, manifest, metadata)
        return bundle
    except ModelFileError:
        raise
    except (AgfError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{where}: invalid manifest ({type(exc).__name__}: {exc}); {EXPORT_AGAIN}") from None
