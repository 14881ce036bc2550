"""Each scalarizer on synthetic spectra with answers known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from agents.scalarizers import (
    SCALARIZERS,
    band_intensity,
    band_slice,
    edge_jump_ratio,
    get_scalarizer,
    peak_height_ratio,
    peak_position,
    register_scalarizer,
)

E = np.linspace(0.0, 50.0, 501)  # 0.1 eV channels


# ------------------------------------------------------------------ band intensity


def test_band_intensity_of_a_linear_spectrum_is_its_exact_integral():
    spectrum = 2.0 + 0.5 * E  # integral from a to b: 2(b-a) + 0.25(b²-a²)
    a, b = 12.34, 27.89  # band edges between channels: partial channels count in proportion
    expected = 2.0 * (b - a) + 0.25 * (b**2 - a**2)
    assert band_intensity(spectrum, E, a, b) == pytest.approx(expected, rel=1e-12)


def test_band_intensity_vectorises_over_a_stack():
    heights = np.arange(1.0, 7.0).reshape(2, 3, 1)
    stack = heights * np.ones((2, 3, E.size))
    result = band_intensity(stack, E, 20, 30)
    assert result.shape == (2, 3)
    np.testing.assert_allclose(result, heights[..., 0] * 10.0)


def test_band_intensity_tracks_a_plasmon_peak(make_plasmon):
    on_gold = make_plasmon(E, centre=25.0, height=200.0)
    on_carbon = make_plasmon(E, centre=25.0, height=50.0)
    assert band_intensity(on_gold, E, 20, 30) > 3 * band_intensity(on_carbon, E, 20, 30)


@pytest.mark.parametrize(
    ("band", "message"),
    [
        ((60, 70), "outside the energy axis"),
        ((-10, 5), "outside the energy axis"),
        ((30, 20), "start < stop"),
        ((20, 20), "start < stop"),
    ],
)
def test_band_outside_or_reversed_is_a_clear_error(band, message):
    with pytest.raises(ValueError, match=message):
        band_intensity(np.ones_like(E), E, *band)


def test_band_given_as_the_axis_end_points_is_accepted():
    assert band_intensity(np.ones_like(E), E, 0.0, 50.0) == pytest.approx(50.0)


def test_spectrum_and_axis_must_agree():
    with pytest.raises(ValueError, match="channels"):
        band_intensity(np.ones(10), E, 1, 2)
    with pytest.raises(ValueError, match="strictly increasing"):
        band_intensity(np.ones(3), [0.0, 2.0, 1.0], 0.5, 1.5)


def test_band_slice_selects_the_channels_inside():
    sl = band_slice(E, 10.0, 10.3)
    np.testing.assert_allclose(E[sl], [10.0, 10.1, 10.2, 10.3])
    with pytest.raises(ValueError, match="no channel"):
        band_slice(E, 10.01, 10.02)


# ------------------------------------------------------------------ peak height ratio


def test_peak_height_ratio_of_two_known_peaks(make_plasmon):
    # two backgrounds of 1 count each: peaks of 2 + 98 and 2 + 48 counts (tails ~1e-22)
    spectrum = make_plasmon(E, centre=15.0, height=98.0) + make_plasmon(E, 35.0, height=48.0)
    assert peak_height_ratio(spectrum, E, (10, 20), (30, 40)) == pytest.approx(2.0, rel=1e-6)


def test_peak_height_ratio_vectorised_and_nan_for_an_empty_denominator():
    stack = np.zeros((3, E.size))
    stack[0, 150] = 6.0
    stack[0, 350] = 3.0
    stack[1, 150] = 1.0
    stack[1, 350] = 4.0
    stack[2, 150] = 5.0  # nothing in the denominator band: no meaningful ratio
    result = peak_height_ratio(stack, E, (10, 20), (30, 40))
    np.testing.assert_allclose(result[:2], [2.0, 0.25])
    assert np.isnan(result[2])


# ------------------------------------------------------------------ peak position


@pytest.mark.parametrize("method", ["parabolic", "centroid"])
@pytest.mark.parametrize("centre", [15.0, 15.03, 15.07, 14.96])
def test_peak_position_is_sub_channel(method, centre, make_plasmon):
    spectrum = make_plasmon(E, centre=centre, width=1.5)
    found = peak_position(spectrum, E, centre - 4, centre + 4, method=method)
    # a quarter of a 0.1 eV channel: no channel-snapping method can do this
    assert found == pytest.approx(centre, abs=0.025)


def test_peak_position_over_a_stack_of_shifted_peaks(make_plasmon):
    centres = np.array([14.2, 15.55, 16.91])
    stack = np.stack([make_plasmon(E, c, 1.5) for c in centres])
    np.testing.assert_allclose(peak_position(stack, E, 11, 20), centres, atol=0.02)


def test_peak_position_rejects_an_unknown_method(make_plasmon):
    with pytest.raises(ValueError, match="parabolic"):
        peak_position(make_plasmon(E), E, 10, 20, method="gaussian")


# ------------------------------------------------------------------ edge jump ratio

core_axis = np.linspace(300.0, 700.0, 801)


def core_loss(jump: float, r: float = 3.0, a: float = 1e10, onset: float = 456.0):
    background = a * core_axis**-r
    return background * np.where(core_axis >= onset, jump, 1.0)


@pytest.mark.parametrize("jump", [1.0, 1.5, 3.0])
@pytest.mark.parametrize("r", [2.5, 3.5])
def test_edge_jump_ratio_of_a_step_on_a_power_law(jump, r):
    ratio = edge_jump_ratio(core_loss(jump, r), core_axis, (380, 450), (460, 520))
    assert ratio == pytest.approx(jump, rel=1e-9)


def test_edge_jump_ratio_vectorised_and_robust_to_noise():
    rng = np.random.default_rng(0)
    stack = np.stack([core_loss(j) for j in (1.2, 2.0, 4.0)])
    noisy = rng.poisson(stack).astype(float)
    np.testing.assert_allclose(
        edge_jump_ratio(noisy, core_axis, (380, 450), (460, 520)), [1.2, 2.0, 4.0], rtol=0.03
    )


def test_edge_jump_windows_in_the_wrong_order_are_an_error():
    with pytest.raises(ValueError, match="end below"):
        edge_jump_ratio(core_loss(2.0), core_axis, (460, 520), (380, 450))


# ------------------------------------------------------------------ registry


@pytest.mark.parametrize(
    ("spec", "direct"),
    [
        ("band:20:30", lambda s: band_intensity(s, E, 20, 30)),
        ("ratio:10:20:30:40", lambda s: peak_height_ratio(s, E, (10, 20), (30, 40))),
        ("peak:12:18", lambda s: peak_position(s, E, 12, 18)),
        ("peak:12:18:centroid", lambda s: peak_position(s, E, 12, 18, "centroid")),
        ("jump:5:10:20:30", lambda s: edge_jump_ratio(s, E, (5, 10), (20, 30))),
    ],
)
def test_spec_names_the_same_function(spec, direct, make_plasmon):
    spectrum = make_plasmon(E, 15.0) + make_plasmon(E, 35.0, height=20.0)
    scalarize = get_scalarizer(spec)
    assert scalarize(spectrum, E) == pytest.approx(direct(spectrum))
    assert scalarize.__name__ == spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("plasmon:1:2", "unknown scalarizer 'plasmon'.*known: .*band"),
        ("band:20", "band needs 2 energies"),
        ("band:a:b", "band needs 2 energies"),
        ("ratio:1:2:3", "ratio needs 4"),
        ("peak:1:2:mode", "parabolic"),
        ("", "non-empty"),
    ],
)
def test_bad_specs_are_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        get_scalarizer(spec)


def test_a_band_outside_the_axis_fails_when_first_used():
    scalarize = get_scalarizer("band:100:120")
    with pytest.raises(ValueError, match="100-120 eV lies outside the energy axis 0-50 eV"):
        scalarize(np.ones_like(E), E)


def test_users_register_their_own_scalarizer():
    def max_counts(low, high):
        def scalarize(spectrum, energy):
            return np.asarray(spectrum)[..., band_slice(energy, low, high)].max(axis=-1)

        return scalarize

    register_scalarizer("maxcounts", max_counts)
    try:
        spectrum = np.where((E > 20) & (E < 21), 7.0, 1.0)
        assert get_scalarizer("maxcounts:15:25")(spectrum, E) == 7.0
    finally:
        SCALARIZERS.pop("maxcounts")
    with pytest.raises(ValueError, match="letters"):
        register_scalarizer("my:band", max_counts)


def test_a_callable_passes_through():
    def f(spectrum, energy):
        return 1.0

    assert get_scalarizer(f) is f


# ------------------------------------------------------------------ edge signal


def test_edge_signal_is_the_counts_above_the_power_law_background():
    e = np.linspace(300.0, 600.0, 601)  # 0.5 eV channels
    background = 1e9 * e**-3.0
    step = np.where(e >= 450, 10.0, 0.0)
    from agents.scalarizers import edge_signal

    assert edge_signal(background + step, e, (350, 440), (460, 500)) == pytest.approx(
        10.0 * 0.5 * 81, rel=1e-6
    )  # 81 channels of 0.5 eV, 10 counts each above the background
    assert edge_signal(background, e, (350, 440), (460, 500)) == pytest.approx(0.0, abs=1e-6)
    f = get_scalarizer("edge:350:440:460:500")
    assert f.__name__ == "edge:350:440:460:500"
    stack = np.stack([background, background + step, background + 2 * step])
    np.testing.assert_allclose(f(stack, e), [0.0, 405.0, 810.0], atol=1e-6)


@pytest.mark.parametrize(
    ("spec", "units"),
    [
        ("band:20:30", "counts"),
        ("edge:350:440:460:500", "counts"),
        ("peak:12:18", "eV"),
        ("ratio:20:30:40:50", ""),
        ("jump:400:450:460:500", ""),
        ("despike:peak:12:18", "eV"),  # despiking changes no units
    ],
)
def test_every_built_in_spec_says_the_units_of_its_values(spec, units):
    assert get_scalarizer(spec).units == units


def test_an_isolated_dead_channel_is_filled_and_a_mostly_dead_band_refused(
    shared_data, caplog, monkeypatch
):
    """A NaN channel inside the band made the real line scan's spectrum give no number (the
    agents skipped it); an isolated one is interpolated over (counted in a warning), a band
    mostly undefined still gives NaN."""
    import logging

    pytest.importorskip("rsciio")
    from rsciio.hspy import file_reader

    from agents import spectrum_checks
    from agents.scalarizers import get_scalarizer

    monkeypatch.setattr(spectrum_checks, "_last_dead", frozenset())  # nothing said before
    signal = file_reader(str(shared_data / "LSMO_STO_linescan.hspy"))[0]
    spectra = np.asarray(signal["data"], dtype=np.float64)  # (10, 512), 395-906 eV
    axis = signal["axes"][1]["offset"] + signal["axes"][1]["scale"] * np.arange(512)
    o_k = get_scalarizer("band:530:560")  # the O K edge
    expected = o_k(spectra, axis)
    dead = spectra.copy()
    dead[:, 145] = np.nan  # one dead channel in the band (540 eV)
    dead[3, 300] = np.inf  # and one outside it (695 eV)
    with caplog.at_level(logging.WARNING, logger="agents.scalarizers"):
        values = o_k(dead, axis)
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values, expected, rtol=2e-3)
    assert "filled 11 isolated dead channel(s) (NaN/inf; channel(s) 145, 300)" in caplog.text
    # the same dead channels in the next spectra (a camera's): said once, not per spectrum
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agents.scalarizers"):
        for spectrum in dead[:3, :]:  # channel 145 dead in each
            o_k(spectrum, axis)
    assert caplog.text.count("dead channel") == 1

    crowded = spectra.copy()
    crowded[:, 140:165:2] = np.nan  # every other channel of the band: mostly undefined
    crowded[:, 170:174] = np.nan  # and a run of 4
    assert np.all(np.isnan(o_k(crowded, axis)))
    assert np.all(np.isnan(get_scalarizer("band:565:575")(crowded, axis)))
