"""Pipeline stages over one work directory: each stage reads its config section and its inputs.

WORKDIR/
  config.toml          the resolved config of the last run
  corpus/              the synthetic corpus (dataset kind 'synth')
  tracks.parquet       the track table
  missing.parquet      listed tracks whose audio file does not exist
  features/<key>/      the feature store (see agf.store)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from agf.config import Config, config_to_dict
from agf.datasets import LoadedDataset, load_dataset
from agf.datasets.fma import KNOWN_BAD_IDS
from agf.fileio import write_parquet_atomic, write_text_atomic
from agf.prepare import PrepareSummary, prepare_features
from agf.store import FeatureStore


@dataclass(frozen=True)
class WorkDir:
    """Paths of one work directory."""

    root: Path

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def tracks(self) -> Path:
        return self.root / "tracks.parquet"

    @property
    def missing(self) -> Path:
        return self.root / "missing.parquet"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"


def save_config(config: Config, workdir: WorkDir) -> None:
    """Record the resolved config of this run in the work directory."""
    write_text_atomic(workdir.config, dumps_toml(config_to_dict(config)))


def dumps_toml(data: dict) -> str:
    """Serialise nested dicts of scalars and lists as TOML (tables for nested dicts)."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, section in data.items():
        if isinstance(section, dict):
            lines.append(f"\n[{name}]")
            lines += [f"{k} = {value(v)}" for k, v in section.items()]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we write must read back
    return text


def stage_tracks(config: Config, workdir: WorkDir, progress: bool = True) -> LoadedDataset:
    """Load (and for 'synth', first render) the dataset; save the track table."""
    synth_dir = None
    if config.dataset.kind == "synth":
        from agf.datasets.synth import synthesize_corpus

        synth_dir = synthesize_corpus(workdir.corpus, config.synth, workers=config.run.workers, progress=progress)
    loaded = load_dataset(config.dataset, synth_dir=synth_dir)
    write_parquet_atomic(workdir.tracks, loaded.tracks)
    write_parquet_atomic(workdir.missing, loaded.missing)
    return loaded


def known_bad_ids(config: Config) -> frozenset[str]:
    """FMA's known bad files apply to FMA only."""
    return KNOWN_BAD_IDS if config.dataset.kind == "fma" else frozenset()


def stage_prepare(
    config: Config, workdir: WorkDir, tracks: pd.DataFrame, retry_failed: bool = False, progress: bool = True
) -> tuple[FeatureStore, PrepareSummary]:
    """Build (or complete) the feature store for the track table."""
    store = FeatureStore.open(workdir.root, config.features)
    summary = prepare_features(
        tracks,
        store,
        workers=config.run.workers,
        known_bad=known_bad_ids(config),
        retry_failed=retry_failed,
        progress=progress,
    )
    return store, summary
