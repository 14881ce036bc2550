"""EELS of the twin: energies after calibration, interface peak, gold band, settings, noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

from dm_bridge.backends.base import EELSParameters, energy_axis


def _calibrate(axis: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
    """Energy axis corrected so the zero-loss peak is at 0 eV (centroid within ±1.5 eV)."""
    peak = axis[np.argmax(spectrum)]
    near = np.abs(axis - peak) <= 1.5
    centre = np.sum(axis[near] * spectrum[near]) / np.sum(spectrum[near])
    return axis - centre


def _peak(axis, spectrum, lo, hi, smooth_ev=0.3):
    s = gaussian_filter1d(spectrum, smooth_ev / (axis[1] - axis[0])) if smooth_ev else spectrum
    m = (axis >= lo) & (axis <= hi)
    return axis[m][np.argmax(s[m])]


def _half_rise(axis, spectrum, onset, smooth_ev=0.3):
    """Edge onset: where the background-subtracted edge reaches half its first maximum.

    ``onset`` only places the windows (pre-edge fit 40–5 eV below, search 5 eV below to
    15 eV above), as a microscopist would.
    """
    s = gaussian_filter1d(spectrum, smooth_ev / (axis[1] - axis[0]))
    pre = (axis > onset - 40) & (axis < onset - 5)
    fit = np.polyfit(np.log(axis[pre]), np.log(s[pre]), 1)
    win = (axis > onset - 5) & (axis < onset + 15)
    a = axis[win]
    v = s[win] - np.exp(np.polyval(fit, np.log(a)))
    j = int(np.argmax(v > 0.3 * v.max()))
    while j + 1 < len(v) and v[j + 1] >= v[j]:
        j += 1
    half = v[j] / 2.0
    k = int(np.nonzero(v[: j + 1] >= half)[0][0])
    return a[k - 1] + (half - v[k - 1]) / (v[k] - v[k - 1]) * (a[k] - a[k - 1])


CASES = {
    # sample: (EELS settings, where (x, y) or None for the middle, peaks, edges)
    "graphene": (
        {"energy_offset": -20.0, "dispersion": 0.25},
        {"plasmons": {4.8: (3, 7), 14.6: (9, 22)}, "edges": [284.0]},
    ),
    "srtio3": (
        {"energy_offset": -20.0, "dispersion": 0.3},
        {"plasmons": {29.5: (22, 38)}, "edges": [456.0, 532.0]},
    ),
}


@pytest.mark.parametrize("sample", sorted(CASES))
def test_plasmons_and_edges_land_at_configured_energies(make_twin, sample):
    settings, expect = CASES[sample]
    twin = make_twin(sample, seed=1, beam_current=1000.0, energy_drift=0.05, energy_jitter=0.4)
    twin.set_eels_parameters(exposure=5.0, **settings)
    twin.acquire_image()  # some instrument time passes: the energy scale has drifted
    acq = twin.acquire_spectra_at_points([[60.3, 70.7], [100.0, 40.5]])
    for spectrum in acq.spectra:
        axis = _calibrate(acq.energy_axis, spectrum.astype(np.float64))
        for energy, (lo, hi) in expect["plasmons"].items():
            assert _peak(axis, spectrum, lo, hi) == pytest.approx(energy, abs=0.5)
        for onset in expect["edges"]:
            assert _half_rise(axis, spectrum, onset) == pytest.approx(onset, abs=0.5)


def test_bulk_plasmons_of_the_nanowire(make_twin):
    twin = make_twin("nanowire", seed=2, energy_jitter=0.3)
    twin.set_eels_parameters(exposure=0.5)
    ends = twin.get_truth()["interface_ends_px"]
    centre = ends.mean(axis=0)
    normal = _unit_normal(ends)
    points = [centre + 20 * normal, centre - 20 * normal]  # GaAs (down the wire), Au (cap)
    acq = twin.acquire_spectra_at_points(points)
    labels = twin.get_truth()["labels"]
    names = twin.get_truth()["label_names"]
    got = {names[labels[round(p[1]), round(p[0])]] for p in points}
    assert got == {"GaAs", "Au"}
    gaas = _calibrate(acq.energy_axis, acq.spectra[0])
    au = _calibrate(acq.energy_axis, acq.spectra[1])
    assert _peak(gaas, acq.spectra[0], 10, 22) == pytest.approx(16.3, abs=0.5)
    assert _peak(au, acq.spectra[1], 20, 35, smooth_ev=1.0) == pytest.approx(25.5, abs=0.5)


def _unit_normal(ends: np.ndarray) -> np.ndarray:
    """Unit vector across the interface, pointing into the wire (away from the cap)."""
    along = ends[1] - ends[0]
    normal = np.array([-along[1], along[0]]) / np.hypot(*along)
    return normal if normal[1] > 0 else -normal  # default wire axis points down the image


def _has_peak_near(axis, spectrum, lo=9.0, hi=12.0):
    s = gaussian_filter1d(spectrum.astype(np.float64), 0.3 / (axis[1] - axis[0]))
    idx, _ = find_peaks(s, prominence=0.02 * s[(axis > lo) & (axis < hi)].mean())
    return np.any((axis[idx] > lo) & (axis[idx] < hi))


def test_interface_peak_at_the_interface_only(make_twin):
    twin = make_twin("nanowire", seed=3)
    twin.set_eels_parameters(exposure=0.2)
    truth = twin.get_truth()
    ends = truth["interface_ends_px"]
    centre, normal = ends.mean(axis=0), _unit_normal(ends)
    names = truth["label_names"]
    offsets = {"interface": 0.0, "GaAs": 15.0, "Au": -15.0}
    for where, off in offsets.items():
        p = centre + off * normal
        assert names[truth["labels"][round(p[1]), round(p[0])]] == where
        acq = twin.acquire_spectra_at_points([p])
        axis = _calibrate(acq.energy_axis, acq.spectra[0])
        assert _has_peak_near(axis, acq.spectra[0]) == (where == "interface"), where


def test_spectra_change_smoothly_across_the_interface(make_twin):
    twin = make_twin("nanowire", seed=3)
    ends = twin.get_truth()["interface_ends_px"]
    centre, normal = ends.mean(axis=0), _unit_normal(ends)
    steps = np.linspace(-4, 4, 161)  # 0.05 pixel apart: sub-pixel beam positions
    axis, spectra = twin.truth_spectra([centre + s * normal for s in steps])
    band = spectra[:, (axis > 10.0) & (axis < 11.0)].sum(axis=1)
    jumps = np.abs(np.diff(band))
    assert jumps.max() < 0.05 * (band.max() - band.min())
    # continuous, not stepped: half the step, half the change
    half = np.abs(np.diff(band[::2]))
    assert half.max() > 1.6 * jumps.max()
    # strongest on the interface itself
    assert abs(steps[np.argmax(band - np.linspace(band[0], band[-1], len(band)))]) < 1.0


def test_gold_has_the_strongest_target_band(make_twin):
    twin = make_twin("nanoparticles", seed=4)
    twin.acquire_image()
    truth = twin.get_truth()
    lo, hi = truth["target_band"]
    gold_px = truth["gold_px"]
    h, w = truth["labels"].shape
    in_view = (
        (gold_px[:, 0] > 2)
        & (gold_px[:, 0] < w - 3)
        & (gold_px[:, 1] > 2)
        & (gold_px[:, 1] < h - 3)
    )
    gold = gold_px[in_view][np.argmax(gold_px[in_view, 2])][:2]  # the largest particle
    labels = truth["labels"]
    names = truth["label_names"]
    assert names[labels[round(gold[1]), round(gold[0])]] == "Au"
    rows, cols = np.nonzero(labels == names.index("carbon"))
    target = truth["target_map"]
    on_carbon = np.argmax(target[rows, cols])  # the most favourable carbon spot
    carbon = (cols[on_carbon], rows[on_carbon])
    r, c = np.unravel_index(np.argmax(target), target.shape)
    # truth agrees with the helper
    assert twin.truth_band_intensity([[c, r]])[0] == pytest.approx(float(target[r, c]), rel=1e-4)
    twin.set_eels_parameters(exposure=0.05)
    acq = twin.acquire_spectra_at_points([gold, carbon])
    in_band = (acq.energy_axis >= lo) & (acq.energy_axis <= hi)
    counts = acq.spectra[:, in_band].sum(axis=1)
    assert counts[0] > 1.2 * counts[1]
    # the true maximum of the target map lies on gold
    assert names[labels[r, c]] == "Au"


@pytest.mark.parametrize(
    ("offset", "dispersion", "binning", "channels"),
    [(-10.0, 0.05, 1, 2048), (5.0, 0.1, 2, 1024), (-20.0, 0.2, 4, 300), (12.0, 0.02, 1, 500)],
)
def test_spectrometer_settings_are_honoured(make_twin, offset, dispersion, binning, channels):
    twin = make_twin("nanowire", seed=5)
    twin.set_eels_parameters(
        energy_offset=offset, dispersion=dispersion, binning=binning, channels=channels
    )
    params = EELSParameters(
        energy_offset=offset, dispersion=dispersion, binning=binning, channels=channels
    )
    ends = twin.get_truth()["interface_ends_px"]
    point = ends.mean(axis=0) + 20 * _unit_normal(ends)  # GaAs
    acq = twin.acquire_spectra_at_points([point])
    assert acq.spectra.shape == (1, channels)
    np.testing.assert_allclose(acq.energy_axis, energy_axis(params))
    axis, clean = twin.truth_spectra([point])
    np.testing.assert_allclose(axis, energy_axis(params))
    assert _peak(axis, clean[0], 12, 20, smooth_ev=0) == pytest.approx(
        16.3, abs=max(0.1, params.channel_width)
    )
    # counts in 14–19 eV do not depend on how the channels cut the axis
    reference = make_twin("nanowire", seed=5)
    ref_axis, ref = reference.truth_spectra([point])
    width = params.channel_width
    sel = (axis - width / 2 >= 14.0) & (axis + width / 2 <= 19.0)
    lo, hi = axis[sel][0] - width / 2, axis[sel][-1] + width / 2
    ref_width = reference.eels.channel_width
    ref_sel = (ref_axis - ref_width / 2 >= lo - 1e-9) & (ref_axis + ref_width / 2 <= hi + 1e-9)
    assert clean[0, sel].sum() == pytest.approx(ref[0, ref_sel].sum(), rel=0.01)


def test_spectra_scatter_around_the_truth_as_poisson(make_twin):
    """The vectorised path and the single-spectrum path both match the noise-free truth."""
    twin = make_twin("nanowire", seed=6)
    twin.set_eels_parameters(exposure=0.001)
    point = [70.25, 60.5]
    twin.set_beam_position(*point)
    single = twin.acquire_spectrum().spectra.astype(np.float64)
    many = twin.acquire_spectra_at_points([point] * 50).spectra.astype(np.float64)
    _, clean = twin.truth_spectra([point])
    expected = clean[0]
    use = expected > 20
    assert use.sum() > 500
    for observed in (single, many.mean(axis=0)):
        n = 1 if observed is single else 50
        chi2 = np.sum((observed[use] - expected[use]) ** 2 / (expected[use] / n))
        dof = use.sum()
        assert abs(chi2 - dof) < 6 * np.sqrt(2 * dof)


def test_energy_drift_moves_the_zero_loss_peak(make_twin):
    twin = make_twin("nanowire", seed=7, energy_drift=0.02)
    twin.set_eels_parameters(energy_offset=-5.0, dispersion=0.02, channels=1024)
    first = twin.acquire_spectra_at_points([[5.0, 5.0]])
    t1 = twin.instrument_time_total
    twin.acquire_image()
    twin.acquire_image()
    second = twin.acquire_spectra_at_points([[5.0, 5.0]])
    t2 = twin.instrument_time_total
    z1 = -_calibrate(first.energy_axis, first.spectra[0])[0] + first.energy_axis[0]
    z2 = -_calibrate(second.energy_axis, second.spectra[0])[0] + second.energy_axis[0]
    assert z1 == pytest.approx(0.02 * t1, abs=0.02)
    assert z2 - z1 == pytest.approx(0.02 * (t2 - t1), abs=0.02)


def test_blanked_beam_gives_no_electrons(make_twin):
    twin = make_twin("nanowire", seed=8, read_noise=0.0, scan_noise=0.0)
    twin.blank_beam()
    assert twin.acquire_image().images["HAADF"].max() == 0
    assert twin.acquire_spectrum().spectra.max() == 0
    twin.unblank_beam()
    assert twin.acquire_spectrum().spectra.max() > 0


@pytest.mark.parametrize(
    ("offset", "dispersion", "binning", "channels"),
    [(-200.0, 5.0, 1, 300), (2900.0, 0.005, 4, 370), (3000.0, 5.0, 8, 256), (-20.0, 0.005, 2, 7)],
)
def test_extreme_spectrometer_settings_stay_physical(
    make_twin, offset, dispersion, binning, channels
):
    twin = make_twin("nanowire", seed=9)
    twin.set_eels_parameters(
        energy_offset=offset, dispersion=dispersion, binning=binning, channels=channels
    )
    _, clean = twin.truth_spectra([[10.0, 10.0], [64.3, 70.1]])
    assert clean.shape == (2, channels)
    assert np.all(np.isfinite(clean))
    assert clean.min() >= -1e-6 * clean.max()
    # never more electrons than the probe delivered
    assert clean.sum(axis=1).max() <= twin._electrons(twin.eels.exposure) * 1.001
    noisy = twin.acquire_spectra_at_points([[10.0, 10.0]]).spectra
    assert np.all(np.isfinite(noisy))
    assert noisy.min() >= 0
