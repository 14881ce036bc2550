"""Unit checks of the twin's parts: geometry, drift, rendering, noise model, spectrum model."""

from __future__ import annotations

import numpy as np
import pytest

from dm_bridge.backends.twin import DriftModel, ScanFrame, imaging, noise_model_for_level
from dm_bridge.backends.twin.eels import SpectrumModel, shift_channels
from dm_bridge.backends.twin.materials import MATERIALS, material_component, peak_component


@pytest.mark.parametrize("rotation", [0.0, 17.0, -90.0, 245.0])
def test_scan_frame_round_trip(rotation):
    frame = ScanFrame(64, 48, 0.05, rotation, centre=(1.0, -2.0), drift=(0.3, 0.1))
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.5, 63.5, 50), rng.uniform(-0.5, 47.5, 50)
    xs, ys = frame.to_sample(x, y)
    bx, by = frame.to_pixels(xs, ys)
    np.testing.assert_allclose(bx, x, atol=1e-9)
    np.testing.assert_allclose(by, y, atol=1e-9)
    gx, gy = frame.pixel_grid()
    sx, sy = frame.to_sample(np.array([5.0]), np.array([7.0]))
    assert gx[7, 5] == pytest.approx(sx[0])
    assert gy[7, 5] == pytest.approx(sy[0])
    # neighbouring pixels are one pixel size apart in the sample
    assert np.hypot(gx[0, 1] - gx[0, 0], gy[0, 1] - gy[0, 0]) == pytest.approx(0.05)


def test_drift_moves_features_by_plus_drift():
    still = ScanFrame(32, 32, 0.1)
    moved = ScanFrame(32, 32, 0.1, drift=(0.2, -0.1))
    px, py = moved.to_pixels(*still.to_sample(np.array([10.0]), np.array([10.0])))
    assert (px[0], py[0]) == pytest.approx((12.0, 9.0))


def test_drift_model_is_linear_plus_random_walk():
    linear = DriftModel((0.1, -0.2), 0.0, np.random.default_rng(0))
    np.testing.assert_allclose(linear.offsets(np.array([0.0, 10.0])), [[0, 0], [1.0, -2.0]])
    walk = DriftModel((0.0, 0.0), 0.5, np.random.default_rng(1))
    ends = np.array([walk.offsets(np.array([t]))[0] for t in np.arange(1, 401)])
    steps = np.diff(ends, axis=0)
    assert steps.std() == pytest.approx(0.5, rel=0.1)
    off = DriftModel(enabled=False)
    assert off.offset(100.0) == (0.0, 0.0)


@pytest.mark.parametrize(("sigma", "n_atoms"), [(1.3, 5), (30.0, 3), (30.0, 200), (0.4, 50)])
def test_every_renderer_draws_the_same_gaussians(sigma, n_atoms):
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 79, n_atoms), rng.uniform(0, 59, n_atoms)
    a = rng.uniform(0.5, 2.0, n_atoms)
    got = imaging.render_gaussians(60, 80, x, y, a, sigma)
    rows, cols = np.mgrid[0:60, 0:80]
    want = sum(
        ak * np.exp(-0.5 * ((cols - xk) ** 2 + (rows - yk) ** 2) / sigma**2)
        for xk, yk, ak in zip(x, y, a)
    )
    # patches stop at 4σ (exp(-8) = 3e-4 of a peak); bilinear splatting (many atoms, wide
    # probe) is exact to second order in 1/σ
    tol = 5e-4 if n_atoms < 100 else 1e-3
    np.testing.assert_allclose(got, want, atol=tol * want.max())


def test_noise_level_mapping():
    models = [noise_model_for_level(level, 100.0) for level in np.linspace(0, 1, 11)]
    assert models[0].dose_scale * 100.0 == pytest.approx(1e4)
    assert models[0].read_noise == 0
    assert models[0].line_gain == 0
    scales = [m.dose_scale for m in models]
    assert all(a > b for a, b in zip(scales, scales[1:]))
    assert all(a.read_noise < b.read_noise for a, b in zip(models, models[1:]))
    with pytest.raises(ValueError, match="noise_level"):
        noise_model_for_level(-0.1, 100.0)


def test_spectrum_model_conserves_electrons():
    model = SpectrumModel([material_component(MATERIALS["GaAs"])], zlp_fwhm=0.5)
    axis, spectra = model.expected(np.array([[0.0], [0.5], [1.5]]), 1e6, -20.0, 1.0, 1, 2048)
    # all electrons land on the axis (the tail beyond 2 keV holds a few 1e-4)
    np.testing.assert_allclose(spectra.sum(axis=1), 1e6, rtol=2e-3)
    zlp = spectra[:, np.abs(axis) < 3].sum(axis=1) / 1e6
    # zero-loss share = exp(-t/λ), Poisson plural scattering
    np.testing.assert_allclose(zlp, np.exp(-np.array([0.0, 0.5, 1.5])), rtol=5e-3)


def test_plural_scattering_puts_the_double_plasmon_at_twice_the_energy():
    peak_only = MATERIALS["GaAs/Au interface"]  # a single 10.5 eV peak
    model = SpectrumModel([peak_component(peak_only)], zlp_fwhm=0.3)
    axis, spectra = model.expected(np.array([[1.0]]), 1e6, -5.0, 0.05, 1, 2048)
    s = spectra[0]
    second = axis[(axis > 16) & (axis < 26)][np.argmax(s[(axis > 16) & (axis < 26)])]
    assert second == pytest.approx(21.0, abs=0.3)
    one = s[(axis > 5) & (axis < 15.5)].sum()
    two = s[(axis > 15.5) & (axis < 26)].sum()
    assert two / one == pytest.approx(0.5, rel=0.15)  # P2 / P1 = τ / 2


def test_shift_channels_moves_the_centroid_exactly():
    spectra = np.zeros((2, 50))
    spectra[:, 20] = 1.0
    spectra[:, 21] = 3.0
    shifted = shift_channels(spectra, np.array([2.25, -1.5]))
    c0 = (np.arange(50) * spectra[0]).sum() / spectra[0].sum()
    cs = (np.arange(50)[None, :] * shifted).sum(axis=1) / shifted.sum(axis=1)
    np.testing.assert_allclose(cs - c0, [2.25, -1.5])
