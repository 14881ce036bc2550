"""The twin's defaults look like the real data sets in ../shared/data (read, never copied)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from dm_bridge.backends.twin import TwinBackend


def _image_stats(img: np.ndarray, atoms_rc: np.ndarray):
    """C–C spacing (pixels) and contrast-to-noise of atoms in a graphene image."""
    d, _ = cKDTree(atoms_rc).query(atoms_rc, k=2)
    spacing = float(np.median(d[:, 1]))
    smooth = gaussian_filter(img.astype(np.float64), 2.0)
    rc = np.clip(np.round(atoms_rc).astype(int), 0, img.shape[0] - 1)
    contrast = np.median(smooth[rc[:, 0], rc[:, 1]]) - np.percentile(smooth, 10)
    noise = np.std(np.diff(img.astype(np.float64), axis=1)) / np.sqrt(2.0)
    return spacing, contrast / noise


def test_default_graphene_image_resembles_the_real_one(shared_data):
    real = np.load(shared_data / "G-Si-2nm.npy")
    coords = np.load(shared_data / "G-Si-2nm-coords.npy")[:, :2]  # (row, column)
    twin = TwinBackend("graphene", seed=0)
    img = twin.acquire_image().images["HAADF"]
    atoms = twin.get_truth()["atoms"]
    carbon = atoms["xy_px"][atoms["z"] == 6][:, ::-1]
    real_spacing, real_cnr = _image_stats(real, coords)
    twin_spacing, twin_cnr = _image_stats(img, carbon)
    assert img.shape == real.shape
    assert twin_spacing == pytest.approx(real_spacing, rel=0.05)
    # as noisy as the real image (within a factor 1.5 in contrast-to-noise)
    assert real_cnr / 1.5 < twin_cnr < real_cnr * 1.5


def test_srtio3_core_loss_resembles_the_real_spectrum(shared_data):
    rsciio = pytest.importorskip("rsciio.digitalmicrograph")
    record = rsciio.file_reader(str(shared_data / "EELS_STO.dm3"))[0]
    ax = record["axes"][0]
    real_e = ax["offset"] + ax["scale"] * np.arange(ax["size"])
    real = np.asarray(record["data"], dtype=np.float64)
    twin = TwinBackend("srtio3", seed=0, beam_current=2000.0)
    twin.set_eels_parameters(energy_offset=350.0, dispersion=0.25, exposure=5.0)
    acq = twin.acquire_spectrum_image(4, 4)  # averaged over a unit cell or so
    spectrum = acq.spectra.reshape(-1, acq.spectra.shape[-1]).sum(axis=0).astype(np.float64)

    def shape(e, s):
        pre = (e > 400) & (e < 450)
        fit = np.polyfit(np.log(e[pre]), np.log(s[pre]), 1)
        background = np.exp(np.polyval(fit, np.log(456.0)))
        return -fit[0], s[(e > 455) & (e < 470)].max() / background

    real_r, real_jump = shape(real_e, real)
    twin_r, twin_jump = shape(acq.energy_axis, spectrum)
    assert twin_r == pytest.approx(real_r, abs=0.5)  # power-law background exponent
    assert twin_jump == pytest.approx(real_jump, rel=0.3)  # Ti L2,3 white lines over background
