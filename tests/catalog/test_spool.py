"""Unit tests of the spool (write-ahead log) and the settings: no server needed."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from ophyd_stem.catalog import DATA_DIR_ENV, CatalogSettings, default_data_dir
from ophyd_stem.catalog.spool import (
    RunSpool,
    claim,
    decode_document,
    encode_document,
    read_documents,
    spooled_runs,
)

ARRAYS = {
    "float32 spectrum": np.linspace(0, 1, 7, dtype=np.float32),
    "uint16 image": np.arange(12, dtype=np.uint16).reshape(3, 4),
    "big-endian f8": np.array([1.5, -2.25], dtype=">f8"),
    "nan and inf": np.array([np.nan, np.inf, -np.inf]),
    "empty": np.zeros((0, 3)),
    "bool": np.array([True, False]),
}


@pytest.mark.parametrize("name", ARRAYS)
def test_arrays_survive_the_spool_exactly(name):
    array = ARRAYS[name]
    _, doc = decode_document(encode_document("event", {"data": {"x": array}}))
    restored = doc["data"]["x"]
    assert restored.dtype == array.dtype
    assert restored.shape == array.shape
    np.testing.assert_array_equal(restored, array)


def test_scalars_nan_and_tuples_are_kept():
    doc = {
        "a": np.float32(2.5),
        "b": np.int64(7),
        "c": float("nan"),
        "shape": (1, 2),
        "ok": np.bool_(True),
    }
    _, restored = decode_document(encode_document("descriptor", doc))
    assert restored["a"] == 2.5
    assert restored["b"] == 7
    assert restored["ok"] is True
    assert math.isnan(restored["c"])
    assert restored["shape"] == [1, 2]


def test_a_half_written_line_is_not_a_document(tmp_path):
    spool = RunSpool(tmp_path, "run-1")
    spool.append("start", {"uid": "run-1"})
    spool.append("descriptor", {"uid": "d", "run_start": "run-1"})
    spool.close()
    with open(spool.path, "ab") as file:  # a crash in the middle of the third line
        file.write(encode_document("event", {"seq_num": 1})[:-10])
    assert [name for name, _ in read_documents(spool.path)] == ["start", "descriptor"]
    (run,) = spooled_runs(tmp_path)
    assert (run.run_uid, run.documents, run.complete, run.written) == ("run-1", 2, False, 0)


def test_written_marks_and_completion_are_recorded(tmp_path):
    spool = RunSpool(tmp_path, "run-2")
    for name in ("start", "descriptor", "event", "stop"):
        spool.append(name, {"uid": name})
    spool.mark_written(3)
    (run,) = spooled_runs(tmp_path)
    assert (run.documents, run.written, run.complete) == (4, 3, True)
    assert [n for n, _ in read_documents(spool.path, 1, 3)] == ["descriptor", "event"]
    spool.remove()
    assert spooled_runs(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="advisory file locks are POSIX-only")
def test_a_run_being_written_cannot_be_claimed(tmp_path):
    spool = RunSpool(tmp_path, "run-3")
    spool.append("start", {"uid": "run-3"})
    (run,) = spooled_runs(tmp_path)
    with claim(run) as ours:
        assert ours is False
    spool.close()
    with claim(run) as ours:
        assert ours is True


def test_the_data_directory_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "stem"))
    assert default_data_dir() == (tmp_path / "stem").resolve()
    settings = CatalogSettings().ensure_dirs()
    assert settings.data_dir == (tmp_path / "stem").resolve()
    assert CatalogSettings(None) == settings == CatalogSettings(str(tmp_path / "stem"))
    for directory in (
        settings.tables_dir,
        settings.assets_dir,
        settings.spool_dir,
        settings.server_dir,
    ):
        assert directory.is_dir()
        assert directory.parent == settings.data_dir
    monkeypatch.delenv(DATA_DIR_ENV)
    assert default_data_dir().name == "ophyd-stem"  # the per-user data directory


def test_a_uid_prefix_of_digits_is_found_when_no_scan_id_matches():
    """About one uid in 40 begins with eight digits: `ophyd-stem show 92497077` must find it."""
    from ophyd_stem.catalog import get_run

    class Catalog:  # the two lookups get_run makes, as the tiled client answers them
        def __len__(self):
            return 3

        def __getitem__(self, key):
            if isinstance(key, int):
                if key in (1, 2, 3):
                    return f"run with scan_id {key}"
                raise KeyError(key)
            if "92497077-7638-4bd0-a3f2-3b5b99dd0d9d".startswith(key):
                return "run 92497077"
            raise KeyError(key)

    catalog = Catalog()
    assert get_run(catalog, "92497077") == "run 92497077"
    assert get_run(catalog, "2") == "run with scan_id 2"
    with pytest.raises(KeyError, match="no run with scan_id 98765 or a uid starting with 98765"):
        get_run(catalog, "98765")
    with pytest.raises(KeyError, match="scan_id 7"):
        get_run(catalog, "7")
