"""The typed config: TOML loading, validation by key name, presets, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from agf.config import Config, config_from_dict, config_to_toml, load_config
from agf.errors import ConfigError


def test_defaults_are_the_papers() -> None:
    config = Config()
    assert (config.features.n_fft, config.features.hop_length, config.features.n_mels) == (1024, 512, 128)
    assert (config.train.batch_size, config.train.lr, config.train.weight_decay) == (64, 1e-3, 1e-5)
    assert (config.factors.n_words, config.factors.n_topics) == (2048, 40)
    assert (config.transfer.hidden, config.transfer.epochs) == (1024, 50)


def test_unknown_keys_are_rejected_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"features\.n_mel\b"):
        config_from_dict({"features": {"n_mel": 64}})
    with pytest.raises(ConfigError, match="unknown key bogus"):
        config_from_dict({"bogus": {}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"features": {"n_mels": "many"}}, "features.n_mels: expected an integer"),
        ({"features": {"n_mels": True}}, "features.n_mels: expected an integer"),
        ({"dataset": {"split": "sideways"}}, "dataset.split: 'sideways' is not one of"),
        ({"grid": {"tasks": "gm"}}, "grid.tasks: expected a list"),
        ({"train": {"amp": 1}}, "train.amp: expected true or false"),
        ({"train": 3}, r"train: expected a table"),
    ],
)
def test_wrong_types_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_toml_round_trip(tmp_path: Path) -> None:
    config = config_from_dict({"features": {"n_mels": 64, "fmax": 8000}, "grid": {"seeds": [0, 1, 2]}})
    assert config.features.fmax == 8000.0 and config.grid.seeds == (0, 1, 2)
    path = tmp_path / "c.toml"
    path.write_text(config_to_toml(config))
    assert load_config(path) == config


def test_bad_toml_and_unknown_preset(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[features\nn_mels = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="no preset"):
        load_config("no-such-preset")
