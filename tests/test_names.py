"""Names declared once: the split names and their helpers (agf.datasets.table), the track aggregations
(agf.aggregation) that configuration, transfer and prediction ask instead of comparing strings."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from agf import config
from agf.aggregation import AGGREGATIONS, Aggregation
from agf.datasets.table import (
    HELD_OUT_SPLITS,
    SPLITS,
    TEST,
    TRAIN,
    VAL,
    fit_splits,
    split_mask,
    training_genres,
)
from agf.predict.bundle import untrained_member
from agf.transfer import build_mlp

GENRES = ("Rock", "Jazz", "Folk")


def _tracks() -> pd.DataFrame:
    return pd.DataFrame({"track_id": ["a", "b", "c", "d", "e"], "genre": ["Rock", "Jazz", "Folk", "Folk", "Rock"],
                         "split": ["train", "val", "test", "train", "val"]}, index=[10, 11, 12, 13, 14])


def test_split_names_are_the_values_written_to_the_split_column() -> None:
    assert (TRAIN, VAL, TEST) == ("train", "val", "test") == SPLITS
    assert HELD_OUT_SPLITS == ("val", "test")


def test_split_mask_selects_the_rows_of_the_given_splits_on_the_table_index() -> None:
    tracks = _tracks()
    assert split_mask(tracks, TRAIN).tolist() == [True, False, False, True, False]
    assert split_mask(tracks, *HELD_OUT_SPLITS).tolist() == [False, True, True, False, True]
    assert list(split_mask(tracks, VAL).index) == [10, 11, 12, 13, 14]
    assert not split_mask(tracks).any()
    results = pd.DataFrame({"split": ["test", "val"], "value": [0.5, 0.6]})  # results.csv has a split column too
    assert results[split_mask(results, TEST)]["value"].tolist() == [0.5]


def test_fit_splits_add_validation_only_when_leaky_and_never_test() -> None:
    assert fit_splits(leaky=False) == (TRAIN,)
    assert fit_splits(leaky=True) == (TRAIN, VAL)


def test_training_genres_are_the_genres_of_training_tracks_only() -> None:
    assert training_genres(_tracks()) == {"Rock", "Folk"}
    assert training_genres(_tracks().iloc[[1, 2]]) == set()


def test_aggregations_are_declared_once_and_only_pooled_classifies_pooled_features() -> None:
    assert AGGREGATIONS == ("probs", "log_probs", "pooled")
    assert config.AGGREGATIONS is AGGREGATIONS
    assert config.TransferConfig().aggregations == ("probs", "log_probs")
    assert [a for a in Aggregation if a.is_pooled] == [Aggregation.POOLED]
    assert Aggregation("pooled").mlp_input_width(768) == 1536
    assert Aggregation.LOG_PROBS.mlp_input_width(768) == Aggregation.PROBS.mlp_input_width(768) == 768


@pytest.mark.parametrize("name", ["probs", "log_probs", "pooled"])
def test_a_bundle_member_given_an_aggregation_by_name_holds_the_aggregation(name: str) -> None:
    member = untrained_member(GENRES, n_nets=2)
    width = (2 if name == "pooled" else 1) * member.mlp_input_dim
    named = replace(member, aggregation=name, mlp=build_mlp(width, len(GENRES)))
    assert named.aggregation is Aggregation(name)
    assert named.mlp_input_dim == width
