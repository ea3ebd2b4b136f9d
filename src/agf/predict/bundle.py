"""Model bundles: everything prediction needs in one directory, loaded without ever unpickling.

A bundle (written by save_bundle, e.g. through `agf export`) is a directory:
    manifest.json                   format version, preprocessing (feature settings, window length and hop, amp),
                                    genres, the members, how their track probabilities combine, the calibration
                                    temperature, the name, how the model was selected, provenance and metrics, and
                                    the byte size and SHA-256 of every weight file
    member-<i>/net-<j>.safetensors  member i's source nets' weights (band-norm statistics included)
    member-<i>/mlp.safetensors      member i's transfer MLP's weights (a member of output 'head' has none)
A member (one per run seed) is its source nets (each with its architecture, tasks, band statistics and its genre
head's classes), an optional transfer MLP with its track aggregation (agf.aggregation), an optional `head` (the
index of the net whose genre head it uses) and its `output`: 'transfer' (the MLP's track probabilities), 'head' (the
mean of the head's window probabilities, in the bundle's genre order) or 'blend' (the mean of the two). The members'
track probabilities are combined by `combination` (agf.aggregation.combine_members), then temperature-scaled.
member-0/net-0.safetensors' header metadata records the manifest's model part as exported (the keys of LAYOUT:
genres, preprocessing, every member with its files' sizes and hashes but that file's own, the combination,
calibration). load_bundle checks every value of the manifest (types, ranges, allowed names), the weight files (size,
hash), the weights themselves (shapes, band statistics, feature widths) and then that record: an edit of the manifest
that keeps every shape (genres renamed or reordered, another aggregation, head or temperature, ...) is refused too.
Formats 1 and 2 (one transfer: net-<i>.safetensors and mlp.safetensors beside the manifest, the record in
mlp.safetensors) load as one member of output 'transfer'; those exported before the record are read with every check
but the last. Each failure is one ModelFileError saying what is wrong.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

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
from agf.errors import AgfError, ConfigError, ModelFileError, PredictError, TransferError
from agf.fileio import read_json, write_json_atomic
from agf.models import MTN, STN
from agf.models.io import build_net, is_pickle, read_weights, with_weights
from agf.tasks import GENRE_TASK, TASKS
from agf.transfer import build_mlp, load_mlp, load_source

BUNDLE_FORMAT = "agf-bundle/3"
# Older formats this agf reads (one transfer each), with what their manifests leave implicit: version 1 (before
# track aggregations) always averaged the window probabilities; one member needs no combination.
OLDER_FORMATS: dict[str, dict[str, Any]] = {
    "agf-bundle/1": {"aggregation": Aggregation.PROBS.value, "combination": Aggregation.PROBS.value},
    "agf-bundle/2": {"combination": Aggregation.PROBS.value},
}
MANIFEST = "manifest.json"
MLP_FILE = "mlp.safetensors"
EXPORT_AGAIN = "export it again with `agf export`"
# The key of a weight file's header metadata that records the manifest's model part as exported.
EXPORTED = "agf-manifest"
# Which track probabilities a member gives: its transfer MLP's, its head net's genre head's, or their mean.
Output = Literal["transfer", "head", "blend"]
OUTPUTS: tuple[str, ...] = get_args(Output)


@dataclass(frozen=True)
class Layout:
    """Where a bundle format keeps its model: the manifest's keys that say what the model computes (beside
    `format`, every other key, such as name, case, selection, metrics, training and provenance, describes it), the
    member folder of the first member ('' for the one transfer of formats 1 and 2) and the manifest path of the
    entry of the weight file whose header records those keys as exported."""

    model_keys: tuple[str, ...]
    first_member: str
    record: tuple[str | int, ...]

    def record_file(self, manifest: dict[str, Any]) -> str:
        """The weight file holding the export record, relative to the bundle."""
        return str(Path(self.first_member) / _entry_at(manifest, self.record)["file"])


LAYOUT = Layout(("genres", "preprocessing", "members", "combination", "calibration"), "member-0",
                ("members", 0, "nets", 0))
ONE_TRANSFER = Layout(("genres", "preprocessing", "nets", "mlp", "aggregation", "calibration"), "", ("mlp",))


def member_dir(number: int) -> str:
    """The folder of member `number` in a bundle."""
    return f"member-{number}"


def _entry_at(document: Any, keys: Sequence[str | int]) -> Any:
    """The value at a path of keys and indices into a parsed JSON document."""
    return functools.reduce(lambda value, key: value[key], keys, document)


@dataclass(frozen=True)
class BundleNet:
    """One source net of a bundle: the net (eval mode), a plain label, the tasks it was trained on and the class
    order of its genre head (None when it has none or it is not recorded)."""

    net: nn.Module
    label: str
    tasks: tuple[str, ...]
    head_genres: tuple[str, ...] | None = None


@dataclass(frozen=True)
class BundleMember:
    """One run seed's model: source nets (in the MLP's input order) -> window features -> MLP -> track
    aggregation, and/or the genre head of nets[head]; `output` says which (or their mean) gives its track
    probabilities. A member has an MLP and its aggregation exactly when its output uses them."""

    nets: tuple[BundleNet, ...]
    mlp: nn.Sequential | None
    # How a track's windows become the MLP's track probabilities (agf.aggregation.Aggregation; see
    # agf.transfer.mlp): the mean of the window probabilities, of their logarithms, or the pooled-feature MLP on
    # their mean and std. None without an MLP.
    aggregation: Aggregation | None = None
    head: int | None = None
    output: Output = "transfer"

    def __post_init__(self) -> None:
        """ModelFileError unless the parts fit the output; the aggregation held as an Aggregation."""
        if self.output not in OUTPUTS:
            raise ModelFileError(f"output {self.output!r} is not one of {', '.join(OUTPUTS)}")
        if not self.nets:
            raise ModelFileError("a member needs at least one source net")
        if (self.mlp is not None) != self.uses_transfer or (self.aggregation is not None) != self.uses_transfer:
            wanted = "needs a transfer MLP and its aggregation" if self.uses_transfer else "has no MLP or aggregation"
            raise ModelFileError(f"a member of output {self.output!r} {wanted}")
        if self.uses_head != (self.head is not None):
            raise ModelFileError(f"a member of output {self.output!r} {'needs' if self.uses_head else 'has no'} head")
        if self.head is not None and not (0 <= self.head < len(self.nets)
                                          and self.nets[self.head].head_genres is not None):
            raise ModelFileError(f"head {self.head} is not one of its {len(self.nets)} nets with a genre head")
        if self.mlp is not None:
            object.__setattr__(self, "aggregation", Aggregation(self.aggregation))
            if self.mlp_input_dim != self.mlp[1].in_features:
                raise ModelFileError(f"the nets' features do not add up to the MLP's input "
                                     f"({self.aggregation} aggregation)")

    @property
    def uses_transfer(self) -> bool:
        """Whether its track probabilities use the transfer MLP ('transfer', 'blend')."""
        return self.output != "head"

    @property
    def uses_head(self) -> bool:
        """Whether its track probabilities use the head net's genre head ('head', 'blend')."""
        return self.output != "transfer"

    @property
    def head_genres(self) -> tuple[str, ...] | None:
        """The class order of its head net's genre head (None without a head)."""
        return None if self.head is None else self.nets[self.head].head_genres

    @property
    def mlp_input_dim(self) -> int:
        """The MLP's input width: the nets' features, or their mean and standard deviation (pooled)."""
        assert self.aggregation is not None, "a member without an MLP has no MLP input"
        return self.aggregation.mlp_input_width(sum(n.net.feature_dim for n in self.nets))


@dataclass(frozen=True)
class Bundle:
    """A complete genre model: one or more members (see BundleMember), each giving track probabilities from the same
    windows, combined into one and temperature-scaled."""

    members: tuple[BundleMember, ...]
    genres: tuple[str, ...]
    features: FeatureConfig
    patch_frames: int
    hop_frames: int
    amp: bool  # window features under bf16 autocast, as the MLPs were trained on
    # Track probabilities are temperature-scaled (agf.calibration) by this, fitted on validation; 1 = none.
    temperature: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)  # name, selection, case, provenance, metrics
    # How the members' track probabilities become one (agf.aggregation.combine_members): 'probs' or 'log_probs'.
    combination: Aggregation = Aggregation.PROBS

    def __post_init__(self) -> None:
        """ModelFileError unless every member predicts these genres; the combination held as an Aggregation."""
        object.__setattr__(self, "combination", Aggregation(self.combination))
        if self.combination.is_pooled:
            raise ModelFileError(f"combination {self.combination.value!r} is not 'probs' or 'log_probs'")
        if not self.members:
            raise ModelFileError("a bundle needs at least one member")
        for number, member in enumerate(self.members):
            if member.mlp is not None and member.mlp[-1].out_features != len(self.genres):
                raise ModelFileError(f"member {number}'s MLP has {member.mlp[-1].out_features} outputs, "
                                     f"not one per genre ({len(self.genres)})")
            missing = sorted(set(self.genres) - set(member.head_genres or self.genres))
            if missing:
                raise ModelFileError(f"member {number}'s genre head has no class for {', '.join(missing)}")

    @property
    def name(self) -> str:
        return str(self.info.get("name", "agf model"))

    @property
    def nets(self) -> tuple[BundleNet, ...]:
        """Every member's source nets, member by member."""
        return tuple(net for member in self.members for net in member.nets)

    @property
    def aggregation(self) -> Aggregation | None:
        """The track aggregation of a one-member bundle's MLP (PredictError for an ensemble: see members)."""
        if len(self.members) != 1:
            raise PredictError(f"an ensemble of {len(self.members)} members has one aggregation per member")
        return self.members[0].aggregation

    @property
    def window_seconds(self) -> float:
        """The length of one input window in seconds."""
        return self.patch_frames * self.features.hop_length / self.features.sample_rate


@dataclass(frozen=True)
class MemberSource:
    """Where a member of an exported bundle comes from: a finished transfer and its source nets (in the MLP's input
    order), which output gives its track probabilities and, for 'head' and 'blend', the index in net_dirs of the net
    whose genre head it uses."""

    transfer_dir: Path
    net_dirs: tuple[Path, ...]
    output: Output = "transfer"
    head: int | None = None


def _member_of_transfer(source: MemberSource, features: FeatureConfig) -> tuple[BundleMember, str, dict[str, Any]]:
    """A member from its transfer and nets, the name of its model (the transfer's, its head net's baseline as the
    evaluation names it, or both) and the transfer's mlp.json."""
    mlp, spec = load_mlp(source.transfer_dir)
    sources = [load_source(path, features) for path in source.net_dirs]
    nets = tuple(BundleNet(s.net, s.label, s.tasks, s.head_genres) for s in sources)
    uses_transfer = source.output != "head"
    # transfers made before aggregations averaged probs
    aggregation = spec.get("aggregation", Aggregation.PROBS) if uses_transfer else None
    try:
        member = BundleMember(nets, mlp if uses_transfer else None, aggregation, source.head, source.output)
    except ModelFileError as exc:
        raise ModelFileError(f"{source.transfer_dir}: {exc}") from None
    head = "" if source.head is None else f"{sources[source.head].baseline}: {sources[source.head].label}"
    name = {"transfer": spec["name"], "head": head, "blend": f"{spec['name']} + {head}"}[source.output]
    return member, name, spec


def bundle_from_transfers(
    members: Sequence[MemberSource], features: FeatureConfig, amp: bool, info: dict[str, Any],
    temperature: float = 1.0, combination: str = "probs",
) -> Bundle:
    """The bundle of finished transfers, one member each (one per run seed), their track probabilities combined by
    `combination` and scaled by the temperature the evaluation fitted on validation. Named after the members'
    models unless `info` names it; info['training'] lists each member's transfer training."""
    if not members:
        raise TransferError("a bundle needs at least one member")
    built = [_member_of_transfer(source, features) for source in members]
    first = built[0][2]
    for source, (_, _, spec) in zip(members, built):
        if [spec[key] for key in ("genres", "patch_frames", "window_hop")] != \
                [first[key] for key in ("genres", "patch_frames", "window_hop")]:
            raise TransferError(f"{source.transfer_dir}: its genres or windows differ from those of "
                                f"{members[0].transfer_dir}; a bundle's members share them")
    names = ", ".join(dict.fromkeys(name for _, name, _ in built))
    name = names if len(built) == 1 else f"{names} ({len(built)} members, {combination})"
    training = [{key: spec[key] for key in ("seed", "best_epoch", "best_val_log_loss", "n_train_tracks",
                                            "n_train_windows")} for _, _, spec in built]
    return Bundle(tuple(member for member, _, _ in built), tuple(first["genres"]), features,
                  int(first["patch_frames"]), int(first["window_hop"]), amp, temperature,
                  {"name": name, **info, "training": training}, combination)


def bundle_from_transfer(
    transfer_dir: str | Path, net_dirs: Sequence[str | Path], features: FeatureConfig, amp: bool, info: dict,
    temperature: float = 1.0,
) -> Bundle:
    """The one-member bundle of a finished transfer: its MLP, its track aggregation and its source nets (in the MLP's
    input order), and the temperature its evaluation fitted on validation."""
    source = MemberSource(Path(transfer_dir), tuple(Path(path) for path in net_dirs))
    return bundle_from_transfers([source], features, amp, info, temperature)


def untrained_member(genres: Sequence[str], features: FeatureConfig = FeatureConfig(), n_nets: int = 2,
                     seed: int = 0) -> BundleMember:
    """A member of the paper's architecture with random weights (n_nets genre STNs, an MLP averaging window
    probabilities)."""
    torch.manual_seed(seed)
    nets = []
    for _ in range(n_nets):
        net = STN(len(genres), 1.0, features.n_mels)
        net.band_norm.set_stats(torch.randn(features.n_mels) * 10 - 40, torch.rand(features.n_mels) * 10 + 5)
        nets.append(BundleNet(net.eval(), "STN[g]", (GENRE_TASK,), tuple(genres)))
    mlp = build_mlp(sum(n.net.feature_dim for n in nets), len(genres)).eval()
    return BundleMember(tuple(nets), mlp, Aggregation.PROBS)


def untrained_bundle(genres: Sequence[str], features: FeatureConfig = FeatureConfig(), n_nets: int = 2,
                     seed: int = 0, amp: bool = True) -> Bundle:
    """A one-member bundle of the paper's architecture with random weights (untrained_member): for benchmarks and
    tests, whose speed and plumbing do not depend on what the weights learned."""
    member = untrained_member(genres, features, n_nets, seed)
    return Bundle((member,), tuple(genres), features, PATCH_FRAMES, TransferConfig().window_hop, amp, 1.0,
                  {"name": "untrained " + " + ".join(n.label for n in member.nets),
                   "selection": "none (random weights)"})


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


def _save_net(directory: Path, name: str, source: BundleNet) -> dict[str, Any]:
    """Write a source net's weights; its manifest entry."""
    save_file(_state(source.net), str(directory / name), metadata={"format": BUNDLE_FORMAT})
    band = source.net.band_norm
    return {
        **_file_entry(directory, name), "label": source.label, "tasks": list(source.tasks),
        "architecture": source.net.spec(), "feature_dim": source.net.feature_dim,
        "band_mean": band.mean.cpu().tolist(), "band_std": band.std.cpu().tolist(),
        "head_genres": None if source.head_genres is None else list(source.head_genres),
    }


def _save_member(directory: Path, member: BundleMember) -> dict[str, Any]:
    """Write a member's weight files into `directory`; its manifest entry."""
    directory.mkdir()
    nets = [_save_net(directory, f"net-{number}.safetensors", source) for number, source in enumerate(member.nets)]
    mlp = None
    if member.mlp is not None:
        save_file(_state(member.mlp), str(directory / MLP_FILE), metadata={"format": BUNDLE_FORMAT})
        mlp = {**_file_entry(directory, MLP_FILE), "input_dim": member.mlp[1].in_features,
               "hidden": member.mlp[1].out_features, "dropout": member.mlp[0].p}
    return {"nets": nets, "mlp": mlp, "aggregation": None if member.aggregation is None else member.aggregation.value,
            "head": member.head, "output": member.output}


def _save_record(staging: Path, bundle: Bundle, manifest: dict[str, Any]) -> None:
    """Rewrite the first member's first net with the manifest's model part in its header, and its entry."""
    path = staging / LAYOUT.record_file(manifest)
    save_file(_state(bundle.members[0].nets[0].net), str(path),
              metadata={"format": BUNDLE_FORMAT, EXPORTED: json.dumps(_model_part(manifest, LAYOUT))})
    _entry_at(manifest, LAYOUT.record).update(_file_entry(path.parent, path.name))


def save_bundle(bundle: Bundle, out: str | Path) -> Path:
    """Write the bundle directory `out` atomically: built beside it, then renamed over it (replacing an older
    bundle there; any other existing file or folder is refused, never deleted)."""
    out = Path(out)
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest = {
            "format": BUNDLE_FORMAT,
            **bundle.info,
            "name": bundle.name,
            "genres": list(bundle.genres),
            "preprocessing": {"features": config_to_dict(bundle.features), "patch_frames": int(bundle.patch_frames),
                              "hop_frames": int(bundle.hop_frames), "amp": bool(bundle.amp)},
            "members": [_save_member(staging / member_dir(number), member)
                        for number, member in enumerate(bundle.members)],
            "combination": bundle.combination.value,
            "calibration": {"temperature": float(bundle.temperature)},
        }
        _save_record(staging, bundle, manifest)
        write_json_atomic(staging / MANIFEST, manifest)
        for path in staging.rglob("*"):  # safetensors and mkdtemp make files private; a bundle is meant to be shared
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
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


def _is_names(value: Any) -> bool:
    """Whether a JSON value is a non-empty list of distinct non-empty strings."""
    return (isinstance(value, list) and len(value) > 0 and all(isinstance(v, str) and v for v in value)
            and len(set(value)) == len(value))


def _settings(where: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The Bundle fields a manifest sets besides the members, each checked: type, range, allowed names."""
    pre = manifest["preprocessing"]
    try:
        features = config_from_dict({"features": pre["features"]}).features
    except ConfigError as exc:
        raise ModelFileError(f"{where}: preprocessing: {exc}; {EXPORT_AGAIN}") from None
    genres, patch, hop, amp = manifest["genres"], pre["patch_frames"], pre["hop_frames"], pre["amp"]
    combination, temperature = manifest["combination"], manifest["calibration"]["temperature"]
    _require(_is_names(genres), where, "genres", genres, "a list of distinct genre names")
    _require(_is_int(patch, MIN_PATCH_FRAMES), where, "preprocessing.patch_frames", patch,
             f"a number of frames of at least {MIN_PATCH_FRAMES}")
    _require(_is_int(hop, 1), where, "preprocessing.hop_frames", hop, "a number of frames of at least 1")
    _require(isinstance(amp, bool), where, "preprocessing.amp", amp, "true or false")
    _require(combination in AGGREGATIONS and not Aggregation(combination).is_pooled, where, "combination",
             combination, "'probs' or 'log_probs'")
    _require(isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
             and 0 < temperature < float("inf"), where, "calibration.temperature", temperature, "a positive number")
    return {"genres": tuple(genres), "features": features, "patch_frames": patch, "hop_frames": hop, "amp": amp,
            "combination": combination, "temperature": float(temperature)}


def _genre_head_width(net: nn.Module, tasks: tuple[str, ...]) -> int | None:
    """The number of classes of a net's genre head; None without one (an STN of another task)."""
    if isinstance(net, MTN):
        return net.task_outputs.get(GENRE_TASK)
    return net.n_out if tasks == (GENRE_TASK,) else None


def _load_net(where: Path, directory: Path, entry: dict[str, Any], n_mels: int) -> tuple[BundleNet, dict[str, str]]:
    """One source net, checked against its manifest entry, and its file's header metadata."""
    named = f"{where}: net {entry.get('file')!r}"
    label, tasks, head_genres = entry["label"], entry["tasks"], entry["head_genres"]
    _require(isinstance(label, str) and label != "", where, "a net's label", label, "a name")
    _require(isinstance(tasks, list) and len(tasks) > 0 and all(t in TASKS for t in tasks), where,
             "a net's tasks", tasks, f"a list of task letters ({', '.join(TASKS)})")
    state, metadata = _checked_weights(directory, entry)
    try:
        net = with_weights(lambda: build_net(entry["architecture"]), state)
    except ValueError as exc:
        raise ModelFileError(f"{named}: {exc}") from None
    mean, std = (np.asarray(entry[k], dtype=np.float64) for k in ("band_mean", "band_std"))
    band = net.band_norm
    if not (mean.shape == std.shape == (n_mels,) and np.allclose(mean, band.mean.numpy())
            and np.allclose(std, band.std.numpy())):
        raise ModelFileError(f"{named}: the band statistics in the manifest differ from the weights'")
    if entry["feature_dim"] != net.feature_dim:
        raise ModelFileError(f"{named}: feature_dim {entry['feature_dim']}, the net gives {net.feature_dim}")
    tasks = tuple(net.task_outputs) if isinstance(net, MTN) else tuple(tasks)
    width = _genre_head_width(net, tasks)
    _require(head_genres is None or (_is_names(head_genres) and len(head_genres) == width), where,
             "a net's head_genres", head_genres, f"null or the {width or 0} classes of its genre head")
    return BundleNet(net.eval(), label, tasks, None if head_genres is None else tuple(head_genres)), metadata


def _load_mlp(where: Path, directory: Path, spec: dict[str, Any],
              n_genres: int) -> tuple[nn.Sequential, dict[str, str]]:
    """A member's transfer MLP, checked against its manifest entry, and its file's header metadata."""
    dropout = spec["dropout"]
    _require(isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout < 1, where,
             "an MLP's dropout", dropout, "a probability below 1")
    state, metadata = _checked_weights(directory, spec)
    try:
        mlp = with_weights(lambda: build_mlp(spec["input_dim"], n_genres, spec["hidden"], spec["dropout"]), state)
    except ValueError as exc:
        raise ModelFileError(f"{where}: the MLP's shape or genres do not match its weights ({exc})") from None
    return mlp.eval(), metadata


@contextmanager
def _located(where: str) -> Iterator[None]:
    """ModelFileErrors of building a member or the bundle, said of `where` with how to fix them."""
    try:
        yield
    except ModelFileError as exc:
        raise ModelFileError(f"{where}: {exc}; {EXPORT_AGAIN}") from None


def _load_member(where: Path, directory: Path, entry: dict[str, Any], settings: dict[str, Any],
                 number: int) -> tuple[BundleMember, dict[str, dict[str, str]]]:
    """One member, checked against its manifest entry, and the header metadata of its weight files by name."""
    name = f"members.{number}"
    nets, spec, aggregation, head, output = (entry[key] for key in ("nets", "mlp", "aggregation", "head", "output"))
    _require(isinstance(nets, list) and len(nets) > 0, where, f"{name}.nets", nets, "a list of nets")
    _require(output in OUTPUTS, where, f"{name}.output", output, f"one of {', '.join(OUTPUTS)}")
    _require(head is None or _is_int(head, 0), where, f"{name}.head", head, "null or the index of a net")
    _require(aggregation is None or aggregation in AGGREGATIONS, where, f"{name}.aggregation", aggregation,
             f"null or one of {', '.join(AGGREGATIONS)}")
    headers = {}
    loaded = []
    for net_entry in nets:
        net, headers[net_entry["file"]] = _load_net(where, directory, net_entry, settings["features"].n_mels)
        loaded.append(net)
    mlp = None
    if spec is not None:
        mlp, headers[spec["file"]] = _load_mlp(where, directory, spec, len(settings["genres"]))
    with _located(f"{where}: {name}"):
        return BundleMember(tuple(loaded), mlp, aggregation, head, output), headers


def _member_entries(path: Path, manifest: dict[str, Any]) -> list[tuple[Path, Any]]:
    """Each member's folder and manifest entry: format 3's members, or the one transfer of formats 1 and 2."""
    if manifest["format"] != BUNDLE_FORMAT:
        return [(path, {"nets": [{**net, "head_genres": None} for net in manifest["nets"]], "mlp": manifest["mlp"],
                        "aggregation": manifest["aggregation"], "head": None, "output": "transfer"})]
    members = manifest["members"]
    _require(isinstance(members, list) and len(members) > 0, path / MANIFEST, "members", members, "a list of members")
    return [(path / member_dir(number), entry) for number, entry in enumerate(members)]


def _model_part(manifest: dict[str, Any], layout: Layout) -> dict[str, Any]:
    """What a manifest says about the model (layout.model_keys), without the size and hash of the file that records
    it (which cannot be recorded inside that file)."""
    part = copy.deepcopy({key: manifest[key] for key in layout.model_keys if key in manifest})
    record = _entry_at(part, layout.record)
    if isinstance(record, dict):
        for key in ("bytes", "sha256"):
            record.pop(key, None)
    return part


def _differences(recorded: Any, found: Any, name: str = "") -> list[str]:
    """The dotted names of the values that differ between two parsed JSON documents (types included)."""
    if isinstance(recorded, dict) and isinstance(found, dict):
        names = {key: f"{name}.{key}" if name else key for key in recorded.keys() | found.keys()}
        return [difference for key in sorted(names)
                for difference in (_differences(recorded[key], found[key], names[key])
                                   if key in recorded and key in found else [names[key]])]
    if isinstance(recorded, list) and isinstance(found, list) and len(recorded) == len(found) \
            and any(isinstance(item, dict) for item in recorded):
        return [difference for number, (old, new) in enumerate(zip(recorded, found))
                for difference in _differences(old, new, f"{name}.{number}")]
    return [] if json.dumps(recorded, sort_keys=True) == json.dumps(found, sort_keys=True) else [name]


def _check_exported(where: Path, manifest: dict[str, Any], layout: Layout, metadata: dict[str, str]) -> None:
    """ModelFileError naming what the manifest changed in the model part that layout's record file recorded at export;
    nothing to check in a bundle exported before that record."""
    if EXPORTED not in metadata:
        return
    changed = _differences(json.loads(metadata[EXPORTED]), _model_part(manifest, layout))
    if changed:
        raise ModelFileError(f"{where}: {', '.join(changed)} differ from what the weights were exported with "
                             f"(recorded in {layout.record_file(manifest)}): the manifest was edited; {EXPORT_AGAIN}")


def load_bundle(path: str | Path) -> Bundle:
    """Load and check a bundle directory (on the CPU); ModelFileError says what is wrong with a bad one."""
    path = Path(path)
    where = path / MANIFEST
    manifest = read_manifest(path)
    layout = LAYOUT if manifest["format"] == BUNDLE_FORMAT else ONE_TRANSFER
    try:
        settings = _settings(where, manifest)
        loaded = [_load_member(where, directory, entry, settings, number)
                  for number, (directory, entry) in enumerate(_member_entries(path, manifest))]
        info = {k: v for k, v in manifest.items() if k != "format" and k not in (*LAYOUT.model_keys,
                                                                               *ONE_TRANSFER.model_keys)}
        with _located(str(where)):
            bundle = Bundle(tuple(member for member, _ in loaded), info=info, **settings)
        _check_exported(where, manifest, layout, loaded[0][1][_entry_at(manifest, layout.record)["file"]])
        return bundle
    except ModelFileError:
        raise
    except (AgfError, KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{where}: invalid manifest ({type(exc).__name__}: {exc}); {EXPORT_AGAIN}") from None
