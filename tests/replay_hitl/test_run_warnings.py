"""What an agent doubts goes into the catalog beside the data, where a search and ``ophyd-stem
show`` see it: a LoG* run on the real graphene image given a wrong calibration (0.02 nm/px
for its 0.0077) records ``plausible`` False and why with its image; a DKL run on a constant
survey records the agent's ``survey_warning`` with its decisions."""

from __future__ import annotations

import io

import numpy as np
import pytest

from agents.runs import unpack_run
from dm_bridge.backends.recording_arrays import write_array_file
from ophyd_stem.app.analysis.replay import RunTable
from ophyd_stem.app.analysis.report import decision_summary
from ophyd_stem.sim import twin_microscope

from .conftest import stored, stream_rows, uid_of


def _logstar_on_the_real_image(
    RE, catalog_env, shared_data, tmp_path, pixel_size, read_back=True, **plan_kwargs
):
    """A run on a 128 px corner of the real image (a few hundred "atoms" to write at most),
    served by the replay backend as calibrated ``pixel_size`` nm/px."""
    from agents.logstar import LoGStarAgent
    from plans import logstar

    corner = tmp_path / "G-Si-corner.npy"
    np.save(corner, np.load(shared_data / "G-Si-2nm.npy")[:128, :128])
    microscope = twin_microscope(
        mode="local",
        assets_dir=catalog_env.settings.assets_dir,
        backend="replay",
        file=str(corner),
        signal="HAADF",
        pixel_size=pixel_size,
    )
    try:
        agent = LoGStarAgent("graphene", budget=8, n_initial=6, n_clusters=0, seed=0)
        RE(logstar(microscope.scan, agent, **plan_kwargs))
    finally:
        microscope.sim_bridge.close()
    return unpack_run(stored(catalog_env, uid_of(RE.documents))) if read_back else None


def test_a_logstar_run_with_a_wrong_calibration_is_flagged_in_the_catalog(
    RE, catalog_env, shared_data, tmp_path
):
    data = _logstar_on_the_real_image(RE, catalog_env, shared_data, tmp_path, 0.02)
    (image,) = data.logstar
    assert image["plausible"] is False
    assert "bright columns missed" in image["reason"]
    # the field is too small for clear lattice reflections: the atoms' spacing says it
    assert image["reason"].endswith("the image suggests 0.0075 nm/px, not 0.02")
    assert image["n_atoms"] > 150  # what the flag is for: ~5 x the corner's 40 atoms
    shown = decision_summary(data)  # ophyd-stem show's lines
    assert f"  WARNING     LoG* image 0 not plausible: {image['reason']}" in shown
    table = RunTable(file=io.StringIO())  # ophyd-stem replay's table of the run's events
    for name, doc in RE.documents:
        table(name, doc)
    assert f"; NOT plausible: {image['reason']}" in table.file.getvalue()

    # the right calibration: plausible, no reason (read from the run's own documents: one
    # read-back of a run from the catalog is enough for the test)
    RE.documents.clear()
    _logstar_on_the_real_image(RE, catalog_env, shared_data, tmp_path, 0.0077, read_back=False)
    (image,) = stream_rows(RE.documents, "logstar")
    assert (image["logstar-plausible"], image["logstar-reason"]) == (True, "")


def test_the_operator_corrects_a_wrong_calibration_and_the_run_keeps_the_correction(
    RE, catalog_env, shared_data, tmp_path
):
    from ophyd_stem.app.analysis.forensics import forensics

    # the microscope says 0.02 nm/px; the operator knows it is 0.0077 (the plan's
    # pixel_size_nm, which `ophyd-stem run logstar --pixel-size 0.0077` passes)
    data = _logstar_on_the_real_image(
        RE, catalog_env, shared_data, tmp_path, 0.02, pixel_size_nm=0.0077
    )
    (image,) = data.logstar
    assert image["plausible"] is True, image["reason"]
    assert image["n_atoms"] < 80  # the corner's ~40 atoms, not the ~200 found at 0.02
    assert data.plan_args["pixel_size_nm"] == 0.0077
    assert data.pixel_size == 0.0077  # what replays, forensics and figures use
    assert data.streams["survey"].configuration["scan-pixel_size"] == 0.02  # kept as recorded
    report = forensics(data)  # the agent rebuilt on the recorded images reproduces the run
    assert report.ok, report.text()


def test_a_wrong_pixel_size_for_the_plan_is_refused_before_the_run(RE):
    from plans import logstar

    for bad in (0, -0.01, float("nan"), "0.0077"):
        with pytest.raises(ValueError, match="pixel_size_nm must be a positive number"):
            list(logstar(None, "logstar", pixel_size_nm=bad))


def test_a_dkl_run_on_a_constant_survey_records_the_agents_warning(RE, catalog_env, tmp_path):
    from agents.dkl import DKLAgent
    from plans import adaptive_eels

    rows, cols, energy = 12, 12, np.arange(100.0, 140.0)
    spectra = np.random.default_rng(0).poisson(100.0, (rows, cols, len(energy)))
    recording, survey = tmp_path / "si.npz", tmp_path / "survey.npz"
    write_array_file(recording, {"spectra": spectra.astype(np.float32), "energy_axis": energy})
    write_array_file(
        survey, {"survey": np.full((rows, cols), 7.0, np.float32), "signals": np.array(["HAADF"])}
    )
    microscope = twin_microscope(
        mode="local",
        assets_dir=catalog_env.settings.assets_dir,
        backend="replay",
        file=str(recording),
        survey=str(survey),
    )

    def make_agent(image):
        return DKLAgent(image, window=5, step=2, n_seed=4, num_threads=1, seed=0)

    try:
        RE(adaptive_eels(microscope.scan, microscope.eels_points, make_agent, "band:110:130",
                         steps=2, maps_every=0, zero_loss=False))  # fmt: skip
    finally:
        microscope.sim_bridge.close()
    data = unpack_run(stored(catalog_env, uid_of(RE.documents)))
    warnings = data.decisions["survey_warning"]
    assert len(warnings) == 2
    assert all("survey image is constant" in w for w in warnings)
    assert f"  WARNING     {warnings[0]}" in decision_summary(data)
