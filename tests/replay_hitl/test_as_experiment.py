"""A recorded run served back as an instrument: new plans run "on" an old experiment."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

from agents.runs import unpack_run
from ophyd_stem.app.analysis.replay import as_experiment, replay_microscope
from plans import adaptive_eels, spectrum_image

from .conftest import dkl_factory, microscope_for, stored, stream_rows, uid_of


def test_the_same_agent_on_the_replayed_run_retraces_it(dkl_run, RE, tmp_path, catalog_env):
    from agents.scalarizers import get_scalarizer

    original = unpack_run(dkl_run.run)
    recording = as_experiment(dkl_run.run, tmp_path)
    meta = json.loads(recording.metadata_path.read_text())
    assert meta["source_run"] == dkl_run.uid
    assert meta["between_measured_positions"] == "nearest measured spectrum"
    assert meta["measured_positions"] == 6

    old = replay_microscope(recording.path, assets_dir=catalog_env.settings.assets_dir)
    try:
        backend = old.sim_bridge.backend
        assert "nearest measured spectrum" in backend.describe()["microscope"]
        # exactly the recorded spectrum where one was measured, the nearest one elsewhere
        served, _ = backend.spectra_at(original.positions)
        np.testing.assert_array_equal(served, original.spectra)
        elsewhere = np.array([[1.0, 1.0], [40.0, 7.0]])
        nearest = cKDTree(original.positions).query(elsewhere)[1]
        served, _ = backend.spectra_at(elsewhere)
        np.testing.assert_array_equal(served, original.spectra[nearest])

        RE(
            adaptive_eels(
                old.scan,
                old.eels_points,
                dkl_factory([]),
                get_scalarizer("band:20:30"),
                steps=6,
                maps_every=3,
            )
        )
    finally:
        old.sim_bridge.close()
    again = unpack_run(stored(catalog_env, uid_of(RE.documents)))
    np.testing.assert_array_equal(again.survey_image, original.survey_image)
    # same image, same spectra where it measures, same agent: the same experiment
    np.testing.assert_array_equal(again.positions, original.positions)
    # the same values to float round-off: the served spectra are bit-identical (above); the
    # zero-loss alignment and scalarizer after them differed by 8e-11 (relative) on a vacuum
    # spectrum's near-zero band since d4a0375, an order-of-summation effect, not a new choice
    np.testing.assert_allclose(again.values, original.values, rtol=1e-9)


def test_a_grid_run_becomes_its_spectrum_image(RE, tmp_path, catalog_env):
    microscope = microscope_for(RE, "nanowire", catalog_env.settings.assets_dir, seed=0)
    try:
        RE(spectrum_image(microscope.scan, microscope.eels_points, 3, 4))
    finally:
        microscope.sim_bridge.close()
    grid = unpack_run(stored(catalog_env, uid_of(RE.documents)))
    recording = as_experiment(grid, tmp_path)
    assert recording.metadata["spectrum_grid"] == [3, 4]
    assert recording.metadata["between_measured_positions"].startswith("none")
    old = replay_microscope(recording.path, assets_dir=catalog_env.settings.assets_dir)
    try:
        served, outside = old.sim_bridge.backend.spectra_at(grid.positions)
    finally:
        old.sim_bridge.close()
    assert outside == 0
    np.testing.assert_allclose(served, grid.spectra, rtol=1e-6)
    assert len(stream_rows(RE.documents, "primary")) == 12


def test_a_run_without_spectra_is_refused(RE, tmp_path, catalog_env):
    from plans import survey

    microscope = microscope_for(RE, "graphene", catalog_env.settings.assets_dir, seed=0)
    try:
        RE(survey(microscope.scan))
    finally:
        microscope.sim_bridge.close()
    with pytest.raises(ValueError, match="no spectra"):
        as_experiment(RE.documents, tmp_path)
