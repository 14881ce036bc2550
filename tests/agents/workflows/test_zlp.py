"""Zero-loss alignment: sub-channel ZLP positions, spectra moved onto the nominal axis."""

import numpy as np
import pytest

from agents.zlp import ZeroLossAligner, is_low_loss, locate_zero_loss, shift_spectra

AXIS = np.arange(-5.0, 20.0, 0.05)


def _spectrum(zlp, plasmon=15.0):
    return 1e4 * np.exp(-0.5 * ((AXIS - zlp) / 0.2) ** 2) + 300 * np.exp(
        -0.5 * ((AXIS - plasmon - zlp) / 1.5) ** 2
    )


@pytest.mark.parametrize("method", ["log-parabola", "centroid"])
def test_the_zero_loss_peak_is_located_to_a_fraction_of_a_channel(method):
    true = np.array([0.0, 0.013, -0.171, 0.33])
    found = locate_zero_loss(np.stack([_spectrum(z) for z in true]), AXIS, method=method)
    np.testing.assert_allclose(found, true, atol=0.005 if method == "log-parabola" else 0.01)
    assert isinstance(locate_zero_loss(_spectrum(0.1), AXIS), float)


def test_alignment_moves_every_peak_onto_the_nominal_axis():
    shifts = np.array([0.21, -0.14, 0.02])
    spectra = np.stack([_spectrum(z) for z in shifts])
    aligned, zlp = ZeroLossAligner().align(spectra, AXIS)
    np.testing.assert_allclose(zlp, shifts, atol=0.005)
    np.testing.assert_allclose(locate_zero_loss(aligned, AXIS), 0.0, atol=0.005)
    # the plasmon came along: its maximum is now at 15 eV in every spectrum
    band = (AXIS > 10) & (AXIS < 20)
    peaks = AXIS[band][np.argmax(aligned[:, band], axis=1)]
    np.testing.assert_allclose(peaks, 15.0, atol=0.05)


def test_a_zlp_too_far_away_is_flagged_not_moved_and_walk_is_the_median():
    spectra = np.stack([_spectrum(0.1), _spectrum(4.0)])
    aligner = ZeroLossAligner(max_shift=1.0)
    aligned, zlp = aligner.align(spectra, AXIS)
    np.testing.assert_allclose(aligned[1], spectra[1])
    assert aligner.report()["untrusted"] == 1
    assert aligner.walk(zlp) == pytest.approx(0.1, abs=0.01)


def test_twin_jitter_is_removed():
    from dm_bridge.backends.twin import TwinBackend

    twin = TwinBackend("nanowire", seed=3, energy_jitter=0.2)
    acq = twin.acquire_spectra_at_points(np.array([[64.0, y] for y in range(20, 100, 4)]))
    zlp = locate_zero_loss(acq.spectra, acq.energy_axis)
    assert np.std(zlp) > 0.1
    aligned, _ = ZeroLossAligner().align(acq.spectra, acq.energy_axis)
    assert np.std(locate_zero_loss(aligned, acq.energy_axis)) < 0.01


def test_bad_input_and_low_loss_detection():
    assert is_low_loss(AXIS)
    assert not is_low_loss(np.arange(100.0, 200.0))
    with pytest.raises(ValueError, match="low-loss"):
        locate_zero_loss(np.ones(100), np.arange(100.0, 200.0))
    with pytest.raises(ValueError, match="method"):
        ZeroLossAligner(method="fourier")
    with pytest.raises(ValueError, match="no counts"):
        locate_zero_loss(np.zeros(len(AXIS)), AXIS)
    with pytest.raises(ValueError, match="channels"):
        shift_spectra(np.ones(10), AXIS, 0.1)
