"""Zero-loss alignment with a camera's dead channel on the peak.

No real low-loss recording is among the shared data (both EELS files are core-loss), so the
spectra are a Gaussian zero-loss peak and a plasmon, as a spectrometer gives them at
0.1 eV per channel, with one channel undefined (NaN: a dead-channel mask).
"""

import logging

import numpy as np

from agents.zlp import ZeroLossAligner, locate_zero_loss

AXIS = np.linspace(-10.0, 40.0, 501)  # eV, 0.1 eV channels
TRUE = np.array([0.23, -0.31, 0.05])


def low_loss() -> np.ndarray:
    z = TRUE[:, None]
    zlp = 1e5 * np.exp(-0.5 * ((AXIS - z) / 0.4) ** 2)
    return zlp + 2e3 * np.exp(-0.5 * ((AXIS - 15.0 - z) / 3.0) ** 2) + 50.0


def test_a_dead_channel_on_the_zero_loss_peak_is_filled_not_left_unaligned(caplog):
    """One NaN channel at 0.2 eV made every spectrum's ZLP position NaN: none was aligned.
    Filled by interpolation, the peak's top is a little flatter: within half a channel."""
    spectra = low_loss()
    dead = spectra.copy()
    dead[:, np.argmin(np.abs(AXIS - 0.2))] = np.nan
    caplog.set_level(logging.WARNING, logger="agents.zlp")
    np.testing.assert_allclose(locate_zero_loss(dead, AXIS), TRUE, atol=0.05)
    aligner = ZeroLossAligner()
    aligned, zlp, shifts = aligner.align_with_shifts(dead, AXIS)
    np.testing.assert_allclose(zlp, TRUE, atol=0.05)
    np.testing.assert_allclose(shifts, -TRUE, atol=0.05)
    assert np.all(np.isfinite(aligned))
    assert aligner.report()["untrusted"] == 0
    assert "filled 3 isolated dead channel(s)" in caplog.text
    assert np.isnan(dead).sum() == 3  # the caller's spectra are left as measured


def test_a_spectrum_mostly_undefined_near_zero_is_still_left_unaligned():
    spectra = low_loss()
    spectra[1, 95:110] = np.nan  # -0.5 to 1 eV: no peak left to find
    aligner = ZeroLossAligner()
    _, zlp, shifts = aligner.align_with_shifts(spectra, AXIS)
    assert np.isnan(zlp[1])
    assert shifts[1] == 0.0
    np.testing.assert_allclose(zlp[[0, 2]], TRUE[[0, 2]], atol=0.03)
