"""Dataset sources (FMA layout, CSV manifest, synthetic corpus) -> one validated track table.

`load_dataset` dispatches on the config; every loader ends in `assemble_dataset`, which drops the
tracks whose audio file is missing (or fails, when strict), applies the split mode and validates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from agf.config import DatasetConfig
from agf.datasets.splits import assign_split, planned_splits
from agf.datasets.table import validate_track_table
from agf.errors import DatasetError

_EXAMPLES = 3
_STRICT_LISTED = 10


@dataclass
class LoadedDataset:
    """A loaded dataset: the track table, the listed tracks without audio, and what was noticed."""

    # Validated track table (validate_track_table); rows with missing audio removed.
    tracks: pd.DataFrame
    # track_id, audio_path of listed tracks whose audio file does not exist.
    missing: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    # The splits the dataset's split mode means to fill (splits.planned_splits): what splits.split_problems checks.
    splits: tuple[str, ...] = ()


def assemble_dataset(
    table: pd.DataFrame,
    *,
    split: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    strict: bool,
    source: str,
    warnings: list[str],
) -> LoadedDataset:
    """Drop (or, if strict, reject) tracks without audio, apply the split mode, validate the table."""
    if table.empty:
        raise DatasetError(f"{source}: lists no tracks; a dataset needs at least one track per genre")
    exists = table["audio_path"].map(os.path.isfile).astype(bool)
    if not exists.any():
        raise DatasetError(
            f"{source}: none of the {len(table)} listed audio files exists (e.g. {table['audio_path'].iloc[0]}); "
            "point the dataset at the folder that holds them"
        )
    missing = table.loc[~exists, ["track_id", "audio_path"]].reset_index(drop=True)
    if len(missing):
        count = f"{len(missing)} of {len(table)} audio files are missing"
        if strict:
            listed = ", ".join(missing["audio_path"].head(_STRICT_LISTED))
            raise DatasetError(
                f"{source}: {count}: {listed}; restore them, point the dataset at the right audio folder, "
                "or set dataset.strict = false to skip them"
            )
        warnings = [*warnings, f"{count}, e.g. {', '.join(missing['audio_path'].head(_EXAMPLES))}"]
    planned = planned_splits(table, split, val_fraction, test_fraction)
    present = table.loc[exists].reset_index(drop=True)
    present["split"] = assign_split(present, split, val_fraction, test_fraction, seed)
    return LoadedDataset(validate_track_table(present, source=source), missing, warnings, planned)


def load_dataset(config: DatasetConfig, synth_dir: Path | None = None) -> LoadedDataset:
    """Load the dataset `config` describes; the synthetic corpus is read from `synth_dir` (FMA layout)."""
    # Imported here: the loaders import LoadedDataset and assemble_dataset from this package.
    from agf.datasets.fma import load_fma
    from agf.datasets.manifest import load_manifest

    options = dict(val_fraction=config.val_fraction, seed=config.seed, strict=config.strict)
    if config.kind == "fma":
        for name in ("metadata_dir", "audio_dir"):
            if not getattr(config, name):
                raise DatasetError(f"dataset.{name} is empty; set it for dataset.kind = 'fma'")
        return load_fma(
            config.metadata_dir, config.audio_dir, subset=config.subset, split=config.split,
            test_fraction=config.test_fraction, **options,
        )
    if config.kind == "manifest":
        if not config.manifest:
            raise DatasetError("dataset.manifest is empty: give the CSV with --manifest (in a config: "
                               "dataset.manifest) for dataset.kind = 'manifest'")
        return load_manifest(config.manifest, split=config.split, test_fraction=config.test_fraction, **options)
    if config.kind == "synth":
        if synth_dir is None:
            raise DatasetError("dataset.kind = 'synth' needs the corpus folder (synth_dir); render it first")
        synth_dir = Path(synth_dir)
        return load_fma(
            synth_dir / "fma_metadata", synth_dir / "audio", subset="large", split=config.split,
            test_fraction=config.test_fraction, real_fma=False, **options,
        )
    raise DatasetError(f"dataset.kind = {config.kind!r} is unknown; use fma, manifest or synth")
