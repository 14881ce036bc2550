"""Saving and loading ensembles by name and by path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.ensemble import (
    CACHE_ENV,
    EnsembleNotFoundError,
    cache_dir,
    ensemble_path,
    list_ensembles,
    load_ensemble,
    predict_members,
    save_ensemble,
)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "ensembles"


def test_cache_dir_follows_environment(cache, monkeypatch):
    assert cache_dir() == cache
    assert ensemble_path("default") == cache / "default"
    monkeypatch.delenv(CACHE_ENV)
    assert cache_dir() == Path.home() / ".cache" / "ophyd-stem" / "ensembles"


def test_names_and_paths_are_told_apart(cache, tmp_path):
    assert ensemble_path("graphene-60kV_v2") == cache / "graphene-60kV_v2"
    assert ensemble_path("sub/dir") == Path("sub/dir")
    assert ensemble_path(tmp_path / "x") == tmp_path / "x"
    with pytest.raises(ValueError, match="empty"):
        ensemble_path(" ")


def test_save_and_load_by_name_gives_identical_predictions(cache, tiny_ensemble, tiny_data):
    image = tiny_data[0][2]
    ensemble = tiny_ensemble.clone()
    folder = save_ensemble(ensemble, "tiny")
    assert folder == cache / "tiny"
    assert ensemble.name == "tiny"
    assert list_ensembles() == ["tiny"]
    loaded = load_ensemble("tiny")
    assert loaded.name == "tiny"
    assert len(loaded) == len(ensemble)
    assert loaded.config == ensemble.config
    assert loaded.metadata["seeds"] == ensemble.metadata["seeds"]
    assert loaded.metadata["training"] == ensemble.metadata["training"]
    np.testing.assert_array_equal(
        predict_members(loaded, image, num_threads=1),
        predict_members(ensemble, image, num_threads=1),
    )


def test_save_and_load_by_path(tmp_path, tiny_ensemble, tiny_data):
    folder = save_ensemble(tiny_ensemble.clone(), tmp_path / "mine")
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["members"] == 2
    assert meta["architecture"]["levels"] == 1
    assert len(meta["weights_sha256"]) == 64
    loaded = load_ensemble(folder)
    image = tiny_data[0][0]
    np.testing.assert_array_equal(
        predict_members(loaded, image, num_threads=1),
        predict_members(tiny_ensemble, image, num_threads=1),
    )


def test_saving_does_not_clobber_unless_asked(cache, tiny_ensemble):
    first = tiny_ensemble.clone()
    first.metadata["note"] = "first"
    save_ensemble(first, "x")
    second = tiny_ensemble.clone()
    second.metadata["note"] = "second"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_ensemble(second, "x")
    assert load_ensemble("x").metadata["note"] == "first"
    save_ensemble(second, "x", overwrite=True)
    assert load_ensemble("x").metadata["note"] == "second"
    assert [p.name for p in cache.iterdir()] == ["x"]  # no temporary folders left behind


def test_missing_named_ensemble_says_how_to_train_one(cache):
    with pytest.raises(EnsembleNotFoundError) as info:
        load_ensemble("default")
    message = str(info.value)
    assert "no ensemble named 'default'" in message
    assert str(cache) in message
    assert "ophyd-stem train-ensemble --name default" in message
    assert CACHE_ENV in message
    assert isinstance(info.value, FileNotFoundError)


def test_missing_path_is_reported(tmp_path):
    with pytest.raises(EnsembleNotFoundError, match="no ensemble at"):
        load_ensemble(tmp_path / "nothing")


def test_damaged_files_get_a_clear_error(tmp_path, tiny_ensemble):
    folder = save_ensemble(tiny_ensemble.clone(), tmp_path / "e")
    weights = folder / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        load_ensemble(folder)
    (folder / "metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid ensemble metadata"):
        load_ensemble(folder)


def test_save_without_name_needs_one(tiny_ensemble):
    anonymous = tiny_ensemble.clone()
    anonymous.name = None
    with pytest.raises(ValueError, match="give a name"):
        save_ensemble(anonymous)
