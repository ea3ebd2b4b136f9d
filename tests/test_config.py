"""The typed config: TOML loading, validation by key name, presets, round trip."""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"features": {"n_mels": -1}}, "features.n_mels = -1: must be at least 32"),
        ({"features": {"sample_rate": 0}}, "features.sample_rate = 0: must be at least 1000"),
        ({"features": {"hop_length": 0}}, "features.hop_length = 0: must be at least 1"),
        ({"train": {"batch_size": 0}}, "train.batch_size = 0: must be at least 1"),
        ({"train": {"lr": -1.0}}, "train.lr = -1.0: must be more than 0"),
        ({"transfer": {"dropout": 1.0}}, r"transfer.dropout = 1.0: must be in \[0, 1\)"),
        ({"run": {"workers": 0}}, "run.workers = 0: must be at least 1"),
        ({"run": {"workers": -3}}, "run.workers = -3: must be at least 1"),
        ({"dataset": {"val_fraction": 0.6, "test_fraction": 0.5}}, "val_fraction \\+ dataset.test_fraction = 1.1"),
        ({"features": {"fmax": 20000.0}}, "features.fmax = 20000.0: must be above fmin"),
        ({"grid": {"archs": ["stn", "cnn"]}}, "grid.archs = \\['stn', 'cnn'\\]: use one or more of stn, mtn, wstn"),
        ({"grid": {"seeds": []}}, "grid.seeds = \\[\\]: give at least one run seed"),
        ({"factors": {"divide_bags": ["x"]}}, "factors.divide_bags"),
    ],
)
def test_values_out_of_range_name_the_key_and_the_range(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_every_problem_is_reported_at_once_and_overrides_are_checked_too() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"features": {"hop_length": 0}, "train": {"epochs": 0}, "run": {"workers": 0}})
    assert [p.split(" =")[0] for p in str(caught.value).split("; ")] == ["features.hop_length", "train.epochs",
                                                                           "run.workers"]
    with pytest.raises(ConfigError, match="run.workers = 0"):
        dataclasses.replace(Config().run, workers=0)  # what the CLI's -j 0 does


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=-10**6, max_value=10**6), st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_ranges_accept_exactly_the_values_they_describe(batch_size: int, lr: float) -> None:
    """Property: a value is accepted iff it lies in the documented range; a rejection names the key."""
    data = {"train": {"batch_size": batch_size, "lr": lr}}
    if batch_size >= 1 and lr > 0:
        assert config_from_dict(data).train.batch_size == batch_size
    else:
        with pytest.raises(ConfigError) as caught:
            config_from_dict(data)
        assert ("train.batch_size" in str(caught.value)) == (batch_size < 1)
        assert ("train.lr" in str(caught.value)) == (lr <= 0)


def test_threads_setting_sets_torch_and_blas_threads() -> None:
    import threadpoolctl
    import torch

    from agf.device import use_threads

    before = torch.get_num_threads()
    try:
        assert use_threads(0) == before  # 0 leaves the default
        assert use_threads(1) == 1 == torch.get_num_threads()
        assert all(pool["num_threads"] == 1 for pool in threadpoolctl.threadpool_info())
    finally:
        use_threads(before)
    with pytest.raises(ConfigError, match="run.threads"):
        config_from_dict({"run": {"threads": -1}})


def test_every_preset_loads_and_round_trips() -> None:
    from agf.config import PRESETS_DIR

    names = sorted(path.stem for path in PRESETS_DIR.glob("*.toml"))
    assert {"demo", "small-collection", "paper", "fma-medium"} <= set(names)
    for name in names:
        config = load_config(name)
        assert config_from_dict(tomllib.loads(config_to_toml(config))) == config, name


SEED_SETTINGS = [("dataset", "seed"), ("noise", "seed"), ("synth", "seed"), ("factors", "seed")]


@pytest.mark.parametrize(("section", "key"), SEED_SETTINGS)
@pytest.mark.parametrize("seed", [-1, -5, 2**32])
def test_every_seed_must_fit_numpy_s_generators(section: str, key: str, seed: int) -> None:
    with pytest.raises(ConfigError, match=rf"^{section}\.{key} = {seed}: must be in \[0, 4294967296\)$"):
        config_from_dict({section: {key: seed}})
    assert getattr(config_from_dict({section: {key: 2**32 - 1}}), section).seed == 2**32 - 1


@pytest.mark.parametrize(("section", "key"), [("grid", "seeds"), ("study", "corpus_seeds"), ("study", "split_seeds")])
def test_every_seed_of_a_list_must_fit_numpy_s_generators(section: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: -1 must be in \[0, 4294967296\)$"):
        config_from_dict({section: {key: [0, -1]}})


@pytest.mark.parametrize(("section", "key", "value"), [
    ("train", "lr", math.inf), ("transfer", "dropout", math.nan), ("features", "offset", math.inf),
    ("synth", "clip_seconds", math.nan), ("noise", "rate", -math.inf), ("study", "noise_rates", [math.nan]),
])
def test_numbers_that_are_not_finite_are_refused(section: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}.*must be a finite number$"):
        config_from_dict({section: {key: value}})


def test_toml_infinity_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "inf.toml"
    path.write_text("[train]\nlr = inf\n")
    with pytest.raises(ConfigError, match=r"^train\.lr = inf: must be a finite number$"):
        load_config(path)


def test_the_synth_section_is_range_checked_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"synth": {"n_genres": 0, "clip_seconds": -3.0, "label_noise": 1.5, "sample_rate": 0}})
    assert [p.split(" =")[0] for p in str(caught.value).split("; ")] == [
        "synth.n_genres", "synth.clip_seconds", "synth.label_noise", "synth.sample_rate"]
    with pytest.raises(ConfigError, match="synth.confusable_pairs = 5: must be at most n_genres // 2"):
        config_from_dict({"synth": {"n_genres": 8, "confusable_pairs": 5}})


def test_lenient_builds_the_config_and_lists_every_problem() -> None:
    from agf.config import config_problems, lenient

    with lenient() as found:
        config = config_from_dict({"train": {"lr": -1.0, "epochs": "many", "bogus": 1}, "grid": {"seeds": [-1]}})
    assert config.train.lr == -1.0 and config.train.epochs == Config().train.epochs  # a bad type keeps the default
    assert [p[:20] for p in found["train"]] == ["unknown key train.bo", "train.epochs: expect"]
    assert config_problems(config) == {"train": ["train.lr = -1.0: must be more than 0"],
                                       "grid": ["grid.seeds: -1 must be in [0, 4294967296)"]}
    with pytest.raises(ConfigError):  # outside the block, a bad value raises again
        dataclasses.replace(config.train)


def _holds_numbers(annotation: object) -> bool:
    """Whether a setting's type is a number, a list of numbers or a union with one."""
    return annotation in (int, float) or any(_holds_numbers(arg) for arg in typing.get_args(annotation))


def _numeric_settings() -> list[tuple[str, str]]:
    """(section, key) of every numeric setting of every section, found from the dataclasses."""
    sections = typing.get_type_hints(Config)
    return [(section.name, item.name) for section in dataclasses.fields(Config)
            for item in dataclasses.fields(sections[section.name])
            if _holds_numbers(typing.get_type_hints(sections[section.name])[item.name])]


NUMERIC_SETTINGS = _numeric_settings()
NUMBERS = st.one_of(st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -1, 1, 2**32, 2**32 - 1, math.inf, -math.inf, math.nan, 1e308, -0.0]))


def _is_seed(key: str) -> bool:
    return key == "seed" or key.endswith("seeds")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NUMERIC_SETTINGS), st.one_of(NUMBERS, st.lists(NUMBERS, max_size=3))),
                min_size=1, max_size=4))
def test_any_number_in_any_setting_gives_a_valid_config_or_one_line_errors(changes: list) -> None:
    """Property: arbitrary numbers (huge, negative, inf, nan; lists too) in every numeric setting of every section
    (found by dataclasses.fields, so a new setting is covered) give a config whose numbers are finite and whose seeds
    fit, or a ConfigError of one line; while `lenient`, a config and one-line problems, never an exception."""
    from agf.config import SEED, config_problems, lenient
    from agf.errors import AgfError

    data: dict = {}
    for (section, key), value in changes:
        data.setdefault(section, {})[key] = value
    try:
        config = config_from_dict(data)
    except AgfError as exc:
        assert isinstance(exc, ConfigError) and "\n" not in str(exc) and str(exc)
    else:
        for section in dataclasses.fields(config):
            part = getattr(config, section.name)
            for item in dataclasses.fields(part):
                value = getattr(part, item.name)
                for number in value if isinstance(value, tuple) else (value,):
                    assert not isinstance(number, float) or math.isfinite(number), (section.name, item.name)
                    assert not _is_seed(item.name) or SEED.allows(number), (section.name, item.name)
    with lenient() as found:
        config = config_from_dict(data)
    for problems in [*found.values(), *config_problems(config).values()]:
        assert all(problem and "\n" not in problem for problem in problems)


# -- the paper's presets ---------------------------------------------------------------------------------

# Every model and feature setting where agf's default differs from the paper (docs/protocol.md, "Deviations"),
# and the paper's values that agf's defaults share: each paper preset must hold all of them.
PAPER_SETTINGS: dict[str, dict[str, object]] = {
    "factors": {"divide_bags": ("m", "d", "e", "s"), "essentia_binary": "quantile", "n_words": 2048, "n_topics": 40,
                "dictionary_samples": 0, "tasks": ("m", "d", "e", "s")},
    "train": {"epochs": 200, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.0, "l2_loss": 1e-5, "amp": False,
              "schedule": "epoch"},
    "transfer": {"epochs": 50, "batch_size": 64, "lr": 1e-3, "hidden": 1024, "dropout": 0.5, "standardize": False,
                 "l2_loss": 1e-5, "amp": False, "aggregations": ("probs",), "calibrate": False},
}


@pytest.mark.parametrize("preset", ["paper", "fma-medium-paper"])
def test_paper_presets_set_every_model_and_feature_setting_to_the_papers(preset: str) -> None:
    from agf.training.spec import NetSpec, net_train_config

    config = load_config(preset)
    wrong = {f"{section}.{key}": getattr(getattr(config, section), key)
             for section, values in PAPER_SETTINGS.items() for key, value in values.items()
             if getattr(getattr(config, section), key) != value}
    assert not wrong, f"{preset}: not the paper's: {wrong}"
    assert net_train_config(NetSpec("stn", ("g",)), config.train).epochs == 200
    assert net_train_config(NetSpec("mtn", ("g", "m", "d", "e", "s")), config.train).epochs == 1000


def test_paper_keeps_agf_protocol_and_fma_medium_paper_is_the_papers_protocol() -> None:
    paper, reproduction = load_config("paper"), load_config("fma-medium-paper")
    assert (paper.dataset.split, paper.factors.leaky) == ("official", False) and paper.dataset.test_fraction > 0
    assert (reproduction.dataset.split, reproduction.dataset.test_fraction, reproduction.factors.leaky) == (
        "random", 0.0, True)
    assert (reproduction.train.select_epoch, reproduction.transfer.select_epoch) == ("last", "last")


def test_paper_settings_keep_agf_defaults_and_cache_keys_and_are_range_checked() -> None:
    from agf.config import TrainConfig, TransferConfig, key_settings

    train, transfer = TrainConfig(), TransferConfig()
    assert (train.l2_loss, train.weight_decay, train.amp) == (0.0, 1e-5, True)
    assert (transfer.l2_loss, transfer.calibrate, transfer.standardize, transfer.batch_size) == (0.0, True, True, 256)
    assert transfer.aggregations == ("probs", "log_probs")
    assert "l2_loss" not in key_settings(train)  # an existing net's key is unchanged
    assert not {"l2_loss", "calibrate"} & set(key_settings(transfer))
    assert {"l2_loss", "calibrate"} <= set(key_settings(load_config("paper").transfer))
    for section in ("train", "transfer"):
        with pytest.raises(ConfigError, match=rf"{section}\.l2_loss = -1e-05: must be at least 0"):
            config_from_dict({section: {"l2_loss": -1e-5}})
    with pytest.raises(ConfigError, match="transfer.calibrate: expected true or false"):
        config_from_dict({"transfer": {"calibrate": "no"}})


def test_training_budget_settings_are_range_checked_and_keep_existing_keys() -> None:
    """train.crops_per_track (0: from the track's length, at most MAX_CROPS_PER_TRACK) and train.patience (0: off)
    are range-checked, left out of a net's key at their defaults, and early stopping with a fixed epoch budget
    ('last') is one clear error."""
    from agf.config import MAX_CROPS_PER_TRACK, TrainConfig, key_settings

    train = TrainConfig()
    assert (train.crops_per_track, train.patience) == (1, 0)
    assert not {"crops_per_track", "patience"} & set(key_settings(train))  # existing nets keep their keys
    assert {"crops_per_track", "patience"} <= set(key_settings(TrainConfig(crops_per_track=0, patience=5)))
    for bad, message in ((-1, "train.crops_per_track = -1"), (MAX_CROPS_PER_TRACK + 1, "train.crops_per_track")):
        with pytest.raises(ConfigError, match=message):
            TrainConfig(crops_per_track=bad)
    with pytest.raises(ConfigError, match="train.patience = -2"):
        TrainConfig(patience=-2)
    with pytest.raises(ConfigError, match="train.patience = 3 with train.select_epoch = 'last'"):
        TrainConfig(patience=3, select_epoch="last")
    TrainConfig(patience=0, select_epoch="last")  # the paper presets' fixed budget


def test_only_the_small_collection_preset_sizes_the_training_budget() -> None:
    """The small-collection preset trains one crop per 30 s of audio (measured on 8 drawn collections, issue 27);
    the others keep the paper's one crop per track; none stops early."""
    for name in ("demo", "small-collection", "paper", "fma-medium", "fma-medium-paper", "study-quick"):
        train = load_config(name).train
        assert (train.crops_per_track, train.patience) == (0 if name == "small-collection" else 1, 0), name
