"""Despiking: cosmic-ray spikes out, real edges (the shared recordings') left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.despike import despike, find_spikes
from agents.scalarizers import get_scalarizer

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
#: core-loss edges of the line scan and the SrTiO3 spectrum (Ti L2,3, O K, Mn L2,3, La M4,5)
EDGES_EV = ((455.0, 468.0), (528.0, 548.0), (638.0, 656.0), (830.0, 853.0))


def _real_spectra():
    if not (DATA / "LSMO_STO_linescan.hspy").is_file() or not (DATA / "EELS_STO.dm3").is_file():
        pytest.skip(f"the real recordings are not in {DATA}")
    from dm_bridge.backends.recording import load_recording

    line = load_recording(DATA / "LSMO_STO_linescan.hspy")
    single = load_recording(DATA / "EELS_STO.dm3")
    out = [(s, line.energy_axis) for s in line.spectra.reshape(-1, line.channels)]
    return [*out, (single.spectra.reshape(-1), single.energy_axis)]


def test_real_edges_are_left_alone_including_a_one_channel_peak():
    for spectrum, energy in _real_spectra():
        spikes = find_spikes(spectrum)
        assert spikes.sum() <= 3  # a few 2-3 % excursions of the recordings themselves
        for lo, hi in EDGES_EV:
            on_edge = (energy >= lo) & (energy <= hi)
            assert not spikes[on_edge].any(), f"an edge at {lo}-{hi} eV was taken for a spike"


def test_injected_spikes_of_one_to_three_channels_are_removed():
    spectra = _real_spectra()
    rng = np.random.default_rng(1)
    removed = 0
    for trial in range(60):
        spectrum, _ = spectra[trial % len(spectra)]
        clean = np.asarray(spectrum, dtype=np.float64)
        width = 1 + trial % 3
        start = int(rng.integers(10, len(clean) - 10))
        hit = clean.copy()
        hit[start : start + width] += rng.uniform(0.5, 2.0) * np.median(clean)
        fixed = despike(hit)
        removed += np.max(np.abs(fixed - clean)[start : start + width]) < 0.1 * np.median(clean)
    assert removed >= 54  # 90 %: the rest sit on an edge's own slope


def test_despike_keeps_other_channels_exactly_and_works_on_stacks():
    stack = np.tile(np.linspace(100.0, 50.0, 80), (3, 2, 1))
    stack[1, 0, 40] += 500.0
    fixed = despike(stack)
    assert fixed.shape == stack.shape
    untouched = np.ones(stack.shape, dtype=bool)
    untouched[1, 0, 40] = False
    np.testing.assert_array_equal(fixed[untouched], stack[untouched])
    assert fixed[1, 0, 40] == pytest.approx(stack[1, 0, 40] - 500.0, rel=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"width": 4}, "odd"), ({"width": 1}, "odd"), ({"threshold": 0}, "threshold")],
)
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        despike(np.ones(20), **kwargs)


def test_a_despiked_scalarizer_says_so_and_ignores_a_spike_in_its_band():
    energy = np.linspace(0.0, 50.0, 501)
    spectrum = 10.0 + np.exp(-0.5 * ((energy - 25.0) / 3.0) ** 2) * 100.0
    hit = spectrum.copy()
    hit[180] += 5000.0  # 18 eV, inside the band
    plain, clean = get_scalarizer("band:15:35"), get_scalarizer("despike:band:15:35")
    assert clean.__name__ == "despike:band:15:35"
    assert plain(hit, energy) > 1.1 * plain(spectrum, energy)
    assert clean(hit, energy) == pytest.approx(plain(spectrum, energy), rel=1e-3)
    with pytest.raises(ValueError, match="give the scalarizer to despike"):
        get_scalarizer("despike")


def test_a_low_dose_spectrum_in_counts_keeps_its_noise_and_loses_its_spikes():
    """At a count or two per channel most neighbourhoods held equal values (median absolute
    deviation 0) and every channel above its median was a "spike": 778 of the 5,120 channels
    of the real line scan resampled at ~1 count per channel. Whole-number spectra are counts,
    and their spread is at least Poisson's."""
    spectra = np.stack([s for s, _ in _real_spectra()[:10]])  # the line scan, 10 x 512
    rng = np.random.default_rng(0)
    for dose in (1, 2, 5):  # mean counts per channel
        low = rng.poisson(spectra / spectra.mean() * dose).astype(np.float64)
        assert find_spikes(low).sum() <= 0.001 * low.size, dose
        hit = low.copy()
        hit[3, 200] += 100  # a cosmic ray: far above any Poisson excursion at this dose
        assert find_spikes(hit)[3, 200]
        assert despike(hit)[3, 200] < 10
