"""HAADF images of the twin: shot noise, atom finding, scan parameters, drift, damage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from skimage.feature import blob_log
from skimage.registration import phase_cross_correlation


def _found_fraction(blobs: np.ndarray, truth_xy: np.ndarray, shape, border: float = 4.0) -> float:
    """Share of true atoms (away from the border) with a found blob within 1 pixel."""
    h, w = shape
    inner = (
        (truth_xy[:, 0] > border)
        & (truth_xy[:, 0] < w - 1 - border)
        & (truth_xy[:, 1] > border)
        & (truth_xy[:, 1] < h - 1 - border)
    )
    assert inner.sum() > 100, "too few atoms in view for a meaningful score"
    d, _ = cKDTree(blobs[:, [1, 0]]).query(truth_xy[inner])
    return float(np.mean(d <= 1.0))


def test_shot_noise_is_poisson(make_twin):
    """Variance equals mean at the given dose (read and scan-line noise off)."""
    twin = make_twin("nanowire", seed=3, noise_level=0.9, read_noise=0.0, scan_noise=0.0)
    twin.set_scan_parameters(width=256, height=256)
    img = twin.acquire_image().images["HAADF"].astype(np.float64)
    clean = twin.get_truth()["clean_image"].astype(np.float64)
    lit = clean > 2.0
    assert lit.sum() > 3000
    z = (img[lit] - clean[lit]) / np.sqrt(clean[lit])
    n = z.size
    # mean 0 and variance 1 within ~4 standard errors
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.var() - 1.0) < 4 * np.sqrt(2.0 / n)
    # low counts are Poisson, not Gaussian: the share of zeros matches exp(-mean)
    dim = (clean > 0.5) & (clean < 3.0)
    assert dim.sum() > 200
    expected_zeros = np.exp(-clean[dim]).mean()
    assert abs(np.mean(img[dim] == 0) - expected_zeros) < 4 * np.sqrt(expected_zeros / dim.sum())


def test_dose_follows_current_and_dwell(make_twin):
    twin = make_twin("nanowire", seed=1)
    a = twin.acquire_image()
    twin.set_scan_parameters(dwell_time=2 * twin.scan.dwell_time)
    b = twin.acquire_image()
    ratio = b.images["HAADF"].sum() / a.images["HAADF"].sum()
    assert ratio == pytest.approx(2.0, rel=0.02)
    assert b.instrument_time > a.instrument_time
    brighter = make_twin("nanowire", seed=1, beam_current=100.0).acquire_image()
    assert brighter.images["HAADF"].sum() / a.images["HAADF"].sum() == pytest.approx(2.0, rel=0.02)


def test_noise_level_is_monotone(make_twin):
    errors = []
    for level in (0.0, 0.3, 0.6, 0.9):
        twin = make_twin("srtio3", seed=2, noise_level=level)
        img = twin.acquire_image().images["HAADF"]
        clean = twin.get_truth()["clean_image"]
        errors.append(np.std(img / clean.max() - clean / clean.max()))
    assert errors[0] < 0.02  # essentially noiseless
    assert all(a < b for a, b in zip(errors, errors[1:]))


def test_blob_log_finds_graphene_atoms_and_bright_dopants(make_twin):
    twin = make_twin("graphene", seed=4, noise_level=0.0)
    twin.set_scan_parameters(field_of_view=4.0)
    img = twin.acquire_image().images["HAADF"]
    truth = twin.get_truth()
    blobs = blob_log(img / img.max(), min_sigma=2, max_sigma=6, num_sigma=5, threshold=0.05)
    assert _found_fraction(blobs, truth["atoms"]["xy_px"], img.shape) >= 0.99
    atoms = truth["atoms"]
    col = np.clip(np.round(atoms["xy_px"]).astype(int), 0, img.shape[1] - 1)
    si = atoms["z"] == 14
    assert si.any()
    assert (~si).any()
    at_atoms = img[col[:, 1], col[:, 0]]
    assert at_atoms[si].min() > np.percentile(at_atoms[~si], 99)
    assert np.median(at_atoms[si]) > 2 * np.median(at_atoms[~si])


def test_blob_log_finds_srtio3_columns(make_twin):
    twin = make_twin("srtio3", seed=4, noise_level=0.0)
    img = twin.acquire_image().images["HAADF"]
    truth = twin.get_truth()
    blobs = blob_log(img / img.max(), min_sigma=1.5, max_sigma=4, num_sigma=5, threshold=0.01)
    assert _found_fraction(blobs, truth["atoms"]["xy_px"], img.shape) >= 0.99
    # brightness order of the columns: Sr > Ti-O > O
    col = np.round(truth["atoms"]["xy_px"]).astype(int)
    ok = (col >= 0).all(axis=1) & (col[:, 0] < img.shape[1]) & (col[:, 1] < img.shape[0])
    value = img[col[ok, 1], col[ok, 0]]
    species = truth["atoms"]["species"][ok]
    means = [value[species == k].mean() for k in range(3)]
    assert means[0] > means[1] > means[2] > 0


def test_image_size_and_field_of_view_are_honoured(make_twin):
    twin = make_twin("srtio3", seed=5, noise_level=0.0)
    spacing = {}
    for fov in (3.0, 6.0):
        twin.set_scan_parameters(width=300, height=200, field_of_view=fov)
        acq = twin.acquire_image()
        img = acq.images["HAADF"]
        assert img.shape == (200, 300)
        assert acq.pixel_size == pytest.approx(fov / 300)
        truth = twin.get_truth()
        assert truth["labels"].shape == (200, 300)
        assert truth["frame"]["pixel_size"] == pytest.approx(fov / 300)
        # the bright columns (Sr and Ti-O) are a/√2 apart
        blobs = blob_log(img / img.max(), min_sigma=1, max_sigma=4, num_sigma=4, threshold=0.2)
        # (mean over the four neighbours: blob positions are whole pixels, and the nearest of
        # four rounded distances is biased short)
        d, _ = cKDTree(blobs[:, :2]).query(blobs[:, :2], k=5)
        spacing[fov] = np.median(d[:, 1:].mean(axis=1))
        assert spacing[fov] * acq.pixel_size == pytest.approx(0.3905 / np.sqrt(2), rel=0.02)
    assert spacing[3.0] / spacing[6.0] == pytest.approx(2.0, rel=0.03)


def _lattice_angle(blobs: np.ndarray) -> float:
    """Orientation (deg, mod 90) of the nearest-neighbour vectors of a square lattice."""
    xy = blobs[:, [1, 0]]
    _, idx = cKDTree(xy).query(xy, k=2)
    v = xy[idx[:, 1]] - xy
    ang = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 90.0
    # circular mean with period 90
    rad = np.radians(ang * 4)
    return float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())) / 4 % 90.0)


def test_scan_rotation_rotates_the_image_and_truth_follows(make_twin):
    twin = make_twin("srtio3", seed=6, noise_level=0.0)
    angles = {}
    for rotation in (0.0, 30.0):
        twin.set_scan_parameters(rotation=rotation)
        img = twin.acquire_image().images["HAADF"]
        # only the bright (Sr, Ti-O) columns: a square lattice rotated by 45° to the cell
        blobs = blob_log(img / img.max(), min_sigma=1.5, max_sigma=4, num_sigma=5, threshold=0.2)
        angles[rotation] = _lattice_angle(blobs)
        truth = twin.get_truth()
        bright = truth["atoms"]["species"] < 2
        assert _found_fraction(blobs, truth["atoms"]["xy_px"][bright], img.shape) >= 0.99
    # Rotating the scan counter-clockwise turns the image content clockwise on screen; with
    # rows pointing down, arctan2(row, col) grows clockwise. (Whole-pixel blobs: ±2°.)
    assert (angles[30.0] - angles[0.0]) % 90.0 == pytest.approx(30.0, abs=2.0)


def test_drift_is_recovered_by_cross_correlation(make_twin):
    twin = make_twin(
        "nanoparticles",
        seed=7,
        noise_level=0.3,
        drift=True,
        drift_velocity=(0.6, -0.4),
        drift_random_walk=0.1,
    )
    first = twin.acquire_image().images["HAADF"]
    t1 = twin.get_truth()["frame"]
    twin.acquire_spectra_at_points([[10.0, 10.0]] * 20)  # ~6 s of instrument time
    second = twin.acquire_image().images["HAADF"]
    t2 = twin.get_truth()["frame"]
    moved_px = (np.array(t2["drift_nm"]) - np.array(t1["drift_nm"])) / t1["pixel_size"]
    assert np.hypot(*moved_px) > 1.5, "the test needs a drift of a few pixels"
    shift, _, _ = phase_cross_correlation(first, second, upsample_factor=20)
    # features move by +drift; registering the second image onto the first undoes it
    measured = -shift[::-1]  # (row, col) -> (x, y)
    assert np.abs(measured - moved_px).max() < 0.5


def test_same_seed_same_data_different_seed_different_noise(make_twin):
    def run(seed):
        twin = make_twin("graphene", seed=seed, noise_level=0.5)
        img = twin.acquire_image().images["HAADF"]
        spectra = twin.acquire_spectra_at_points([[10.0, 20.0], [100.5, 80.25]]).spectra
        return img, spectra

    a_img, a_spec = run(11)
    b_img, b_spec = run(11)
    c_img, c_spec = run(12)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_spec, b_spec)
    assert np.mean(a_img != c_img) > 0.5
    assert np.mean(a_spec != c_spec) > 0.3


def test_asking_for_truth_does_not_change_the_data(make_twin):
    def run(ask):
        twin = make_twin("nanowire", seed=13, drift=True, damage=True, energy_jitter=0.2)
        out = []
        for _ in range(2):
            if ask:
                twin.get_truth()
                twin.truth_spectra([[3.0, 4.0]])
            out.append(twin.acquire_image().images["HAADF"])
            out.append(twin.acquire_spectra_at_points([[5.5, 6.5]]).spectra)
        return out

    for a, b in zip(run(False), run(True)):
        np.testing.assert_array_equal(a, b)


def test_repeated_scans_knock_atoms_out_and_truth_follows(make_twin):
    twin = make_twin(
        "graphene",
        seed=8,
        noise_level=0.0,
        damage=True,
        sample_parameters={"damage_cross_section": 3e-10},
    )
    counts, removed_seen = [], 0
    previous = None
    for _ in range(4):
        twin.acquire_image()
        truth = twin.get_truth()
        atoms = truth["atoms"]
        counts.append(len(atoms["z"]))
        if previous is not None:
            now = cKDTree(atoms["xy_nm"])
            d, _ = now.query(previous["xy_nm"])
            gone = previous["xy_px"][d > 0.01]
            removed_seen += len(gone)
            # where an atom was knocked out, the new noise-free image is dimmer
            clean = truth["clean_image"]
            col = np.clip(np.round(gone).astype(int), 0, clean.shape[0] - 1)
            before = previous["clean"][col[:, 1], col[:, 0]]
            after = clean[col[:, 1], col[:, 0]]
            assert np.all(after < before)
        previous = {"xy_nm": atoms["xy_nm"], "xy_px": atoms["xy_px"], "clean": truth["clean_image"]}
    assert counts[-1] < counts[0]
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert removed_seen == counts[0] - counts[-1]
    assert twin.get_truth()["knocked_out"] == removed_seen


def test_no_damage_unless_asked(make_twin):
    twin = make_twin("graphene", seed=8, sample_parameters={"damage_cross_section": 3e-10})
    n0 = len(twin.get_truth()["atoms"]["z"])
    for _ in range(3):
        twin.acquire_image()
    assert len(twin.get_truth()["atoms"]["z"]) == n0
    assert twin.get_truth()["knocked_out"] == 0
