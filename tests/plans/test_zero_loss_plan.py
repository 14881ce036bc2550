"""Zero-loss alignment in the plans: on by default for low-loss spectra, raw spectra kept,
the shift of each spectrum recorded, the agent fed aligned spectra, forensics redoing it."""

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest
from bluesky import Msg
from bluesky.utils import RunEngineInterrupted

from agents.runs import unpack_run
from agents.zlp import locate_zero_loss
from ophyd_stem.app.views.decor import figure_problems
from ophyd_stem.sim import twin_microscope
from plans import adaptive_eels, spectrum_image


@pytest.fixture
def jittery(RE, tmp_path):
    # a spectrometer whose energy scale jitters by 0.2 eV rms and walks 5 meV/s
    microscope = twin_microscope("nanoparticles", mode="local", assets_dir=tmp_path, seed=1,
                                 energy_jitter=0.2, energy_drift=5e-3)  # fmt: skip
    yield microscope
    microscope.sim_bridge.close()


def _pause_after_collect(plan, device, n):
    """Pause the run right after the ``n``-th collect of ``device`` (the spectra of a batch
    are in, their alignment not yet recorded): a resume rewinds to the batch's checkpoint."""
    seen = [0]

    def insert(msg):
        if msg.command == "collect" and msg.obj is device:
            seen[0] += 1
            if seen[0] == n:
                return None, _pause()
        return None, None

    def _pause():
        yield Msg("pause", None, defer=False)

    return bpp.plan_mutator(plan, insert)


def test_spectrum_image_keeps_raw_spectra_and_records_every_shift(RE, jittery):
    plan = spectrum_image(jittery.scan, jittery.eels_points, 6, 6, batch=12)
    with pytest.raises(RunEngineInterrupted):
        RE(_pause_after_collect(plan, jittery.eels_points, 2))
    assert RE.state == "paused"
    RE.resume()
    data = unpack_run(RE.documents)
    assert data.start["zero_loss"]["mode"] == "auto"
    assert data.start["plan_args"]["zero_loss"] is None
    rows = data.zero_loss
    # one row per spectrum, in the spectra's order, even after the rewind
    assert len(data.spectra) == len(rows["zlp"]) == 36
    np.testing.assert_allclose(np.column_stack([rows["x"], rows["y"]]), data.positions)
    raw = locate_zero_loss(data.spectra, data.energy_axis)
    np.testing.assert_allclose(rows["zlp"], raw)  # primary holds the spectra as measured
    assert np.std(raw) > 0.1
    assert rows["trusted"].all()
    np.testing.assert_allclose(rows["shift"], -raw)
    aligned = locate_zero_loss(data.aligned_spectra, data.energy_axis)
    assert np.max(np.abs(aligned)) < 0.02
    # the walk is the median of each batch of 12
    np.testing.assert_allclose(rows["walk"][:12], np.median(raw[:12]))

    from ophyd_stem.app.analysis.counterfactual import counterfactual
    from ophyd_stem.app.analysis.forensics import forensics

    report = forensics(data)
    assert report.ok, report.text()
    assert [c.what for c in report.checks] == ["zero_loss"]
    result = counterfactual(data, "off", out_dir=None)
    assert "ZLP scatter after (eV)" in result.summary
    assert result.agree.sum() < 36  # unaligned, almost every shift differs

    from matplotlib.figure import Figure

    from ophyd_stem.app.views import draw

    fig = Figure(figsize=(15, 4.6))
    drawn = draw(fig, data)
    assert drawn["zlp_map"] == drawn["zlp_trace"] == 36
    assert figure_problems(fig) == []


def test_core_loss_spectra_are_not_aligned_and_forcing_it_is_a_clear_error(RE, jittery):
    RE(bps.mv(jittery.eels.energy_offset, 250.0))
    RE(spectrum_image(jittery.scan, jittery.eels_points, 2, 2))
    data = unpack_run(RE.documents)
    assert not data.zero_loss
    assert "zero_loss" not in data.streams
    RE.documents.clear()
    with pytest.raises(ValueError, match="holds no zero-loss peak"):
        RE(spectrum_image(jittery.scan, jittery.eels_points, 2, 2, zero_loss=True))
    assert RE.state == "idle"
    RE(bps.mv(jittery.eels.energy_offset, -5.0))  # the session still works
    RE.documents.clear()
    RE(spectrum_image(jittery.scan, jittery.eels_points, 2, 2, zero_loss=False))
    data = unpack_run(RE.documents)
    assert data.start["zero_loss"]["mode"] == "off"
    assert "zero_loss" not in data.streams


def test_the_agent_is_fed_aligned_spectra_and_forensics_agrees(RE, jittery):
    from agents.scalarizers import get_scalarizer
    from ophyd_stem.app.analysis.forensics import forensics

    # a peak-position scalar is what the jitter spoils most
    RE(adaptive_eels(jittery.scan, jittery.eels_points, "bandit", "peak:3.2:4.4",
                     agent_kwargs={"n_arms": 3, "seed": 2}, steps=4, batch=2))  # fmt: skip
    data = unpack_run(RE.documents)
    assert len(data.zero_loss["zlp"]) == len(data.values) == 8
    peak = get_scalarizer("peak:3.2:4.4")
    np.testing.assert_allclose(data.values, peak(data.aligned_spectra, data.energy_axis))
    assert not np.allclose(data.values, peak(data.spectra, data.energy_axis))
    report = forensics(data)
    assert report.ok, report.text()
    assert report.value_error is not None
    assert report.value_error < 1e-9
    assert "zero_loss" in [c.what for c in report.checks]


def test_the_dkl_benchmark_reads_spectra_as_the_plan_does(RE, jittery):
    # benchmarks/dkl_discovery.py scored unaligned values while `run dkl` feeds its agent
    # aligned ones: runs that diverged from the first spectrum on (seed 2: 91 % against 44 %)
    from types import SimpleNamespace

    from agents.scalarizers import get_scalarizer
    from benchmarks.dkl_discovery import read_as_the_plan_does

    RE(adaptive_eels(jittery.scan, jittery.eels_points, "bandit", "peak:3.2:4.4",
                     agent_kwargs={"n_arms": 3, "seed": 2}, steps=3, batch=2))  # fmt: skip
    data = unpack_run(RE.documents)
    measured = SimpleNamespace(spectra=data.spectra, energy_axis=data.energy_axis)
    np.testing.assert_array_equal(read_as_the_plan_does(measured, "peak:3.2:4.4"), data.values)
    raw = get_scalarizer("peak:3.2:4.4")(data.spectra, data.energy_axis)
    assert not np.allclose(raw, data.values)
