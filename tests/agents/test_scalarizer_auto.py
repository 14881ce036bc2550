"""The ``auto`` scalarizer on real spectra: the plasmon band where the window has it, else
the strongest core-loss edge of the first spectra (the first onset of its group)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from agents.scalarizer_auto import AutoScalarizer, scalarizer_from_spec, strongest_edge
from agents.scalarizers import get_scalarizer

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LSMO, STO = DATA / "LSMO_STO_linescan.hspy", DATA / "EELS_STO.dm3"


def _read(path):
    if not path.is_file():
        pytest.skip(f"real data missing: {path}")
    if path.suffix == ".hspy":
        from rsciio.hspy import file_reader
    else:
        from rsciio.digitalmicrograph import file_reader
    found = file_reader(str(path))[0]
    axis = found["axes"][-1]
    energy = axis["offset"] + axis["scale"] * np.arange(found["data"].shape[-1])
    return np.asarray(found["data"], dtype=float), energy


def test_a_real_srtio3_spectrum_gives_the_titanium_l_edge():
    spectrum, energy = _read(STO)  # 350-862 eV; Ti L2,3 at 456 eV, O K at 532 eV
    onset = strongest_edge(spectrum, energy)
    assert onset is not None
    assert 440 <= onset <= 460, onset


def test_each_side_of_a_real_interface_gives_its_own_element():
    spectra, energy = _read(LSMO)  # 10 spectra across SrTiO3 (first three) / LSMO
    sto, lsmo = strongest_edge(spectra[0], energy), strongest_edge(spectra[6:], energy)
    assert sto is not None
    assert 440 <= sto <= 460, sto  # Ti L2,3
    # La M5 (832 eV), not M4 (849 eV) above it: the group's first onset
    assert lsmo is not None
    assert 820 <= lsmo <= 840, lsmo


def test_the_chosen_edge_maps_its_element_across_the_interface(caplog):
    spectra, energy = _read(LSMO)
    auto = scalarizer_from_spec("despike:auto")
    with caplog.at_level(logging.INFO, logger="agents.scalarizer_auto"):
        values = auto(spectra[5:], energy)  # the LSMO side first: La M4,5 chosen
    chosen = auto.resolved
    assert chosen.startswith("despike:edge:"), chosen
    assert 820 <= float(chosen.split(":")[4]) <= 845, chosen  # the post-edge window's start
    assert f"scalarizer auto: {chosen[len('despike:') :]}" in caplog.text
    everywhere = auto(spectra, energy)  # the same choice, kept, for every later spectrum
    assert auto.resolved == chosen
    np.testing.assert_allclose(everywhere[5:], values)
    assert everywhere[:3].max() < 0.2 * everywhere[5:].min()  # no La in SrTiO3


def test_a_low_loss_window_keeps_the_plasmon_band():
    energy = np.linspace(-10.0, 90.0, 501)
    spectrum = 1e4 * np.exp(-0.5 * (energy / 1.0) ** 2) + 100.0
    auto = AutoScalarizer()
    assert auto(spectrum, energy) == pytest.approx(get_scalarizer("band:20:30")(spectrum, energy))
    assert auto.resolved == "band:20:30"


def test_no_edge_in_the_noise_gives_the_whole_window_and_a_spike_is_no_edge():
    rng = np.random.default_rng(0)
    energy = np.linspace(400.0, 800.0, 400)
    spectra = rng.poisson(1e12 * energy**-3.0, size=(4, energy.size)).astype(float)
    spectra[1, 200] *= 30  # a cosmic ray
    assert strongest_edge(spectra, energy) is None
    auto = get_scalarizer("auto")
    auto(spectra, energy)
    assert auto.resolved == "band:400:800"


def test_auto_takes_no_fields():
    with pytest.raises(ValueError, match="auto takes no fields"):
        get_scalarizer("auto:20")


def test_the_plasmon_band_rule_is_one_rule_for_a_window_before_and_during_a_run():
    from agents.scalarizer_auto import plasmon_band

    assert plasmon_band(-10.0, 90.0) == plasmon_band(90.0, -10.0) == "band:20:30"
    assert plasmon_band(25.0, 400.0) is None  # half the band outside the window
    assert plasmon_band(395.0, 906.0) is None
