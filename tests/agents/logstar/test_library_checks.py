"""The lattice library, the pixel size from the image's FFT, and the plausibility check."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from agents.logstar import LoGStarAgent, get_lattice, library_names
from agents.logstar.calibration import estimate_pixel_size, lattice_reflections
from agents.logstar.lattice import Lattice
from agents.logstar.plausibility import ImplausibleAtomsWarning, check_plausibility
from agents.logstar.render import lattice_sites, render_lattice

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


# ------------------------------------------------------------------ the library

#: nearest-neighbour distances in projection, nm, worked out by hand
NN = {
    "graphene": 0.246 / np.sqrt(3),
    "hBN": 0.2504 / np.sqrt(3),
    "WS2": 0.3154 / np.sqrt(3),  # W to S2
    "WS2:W": 0.3154,  # the W columns alone: a triangular lattice
    "MoSe2:Mo": 0.3289,
    "WS2:bulk": 0.3154 / np.sqrt(3),
    "SrTiO3": 0.3905 / np.sqrt(2),
    "Si[110]": 0.5431 / 4,  # the dumbbell
    "Si[110]:dumbbell": 0.5431 * np.sqrt(3 / 8),
    "GaAs[110]": 0.5653 / 4,
    "Au[001]": 0.4078 / np.sqrt(2),
    "Au[110]": 0.4078 * np.sqrt(3 / 8),
    "Cu[110]": 0.3615 * np.sqrt(3 / 8),
}


@pytest.mark.parametrize(("spec", "nn"), NN.items())
def test_library_lattices_have_the_right_spacings(spec, nn):
    lattice = get_lattice(spec)
    assert lattice.nn_distance_nm == pytest.approx(nn, rel=1e-3)
    assert len(lattice.brightness) == len(lattice.basis)
    assert Lattice.from_dict(lattice.as_dict()) == lattice


def test_every_library_entry_builds_and_columns_are_chosen_by_name():
    for name in library_names():
        assert get_lattice(name).density_per_nm2 > 0
    ws2 = get_lattice("WS2")
    assert ws2.labels == ("W", "S2")
    w, s2 = ws2.brightness
    assert w > 5 * s2  # W (Z 74) outshines two S (Z 16) in HAADF
    assert get_lattice("WS2:W").density_per_nm2 == pytest.approx(ws2.density_per_nm2 / 2)
    assert get_lattice("GaAs[110]").labels == ("Ga", "Ga", "As", "As")
    with pytest.raises(ValueError, match="the library knows"):
        get_lattice("WS3")
    with pytest.raises(ValueError, match="columns must be chosen from"):
        get_lattice("WS2:Mo")


def test_reflections_follow_the_structure_factor():
    g, weight = lattice_reflections(get_lattice("graphene"), 10.0)
    assert 1 / g[0] == pytest.approx(0.213, abs=1e-3)  # 100: the honeycomb halves it
    assert 1 / g[1] == pytest.approx(0.123, abs=1e-3)  # 110: both atoms in phase
    assert weight[0] == pytest.approx(0.25)
    assert weight[1] == pytest.approx(1.0)


# ------------------------------------------------------------------ pixel size from the FFT


@pytest.mark.parametrize(
    ("spec", "pixel"), [("WS2", 0.012), ("hBN", 0.008), ("Si[110]", 0.015), ("Au[110]", 0.02)]
)
def test_pixel_size_from_synthetic_lattices(spec, pixel):
    image = render_lattice(get_lattice(spec), (192, 160), pixel, rotation_deg=23, counts=50)
    estimate = estimate_pixel_size(image, get_lattice(spec))
    assert estimate.pixel_size_nm == pytest.approx(pixel, rel=3e-3)
    assert estimate.spread < 0.02  # a 160-px field: its spots are a few FFT pixels wide


def test_pixel_size_of_the_real_graphene_image_matches_its_reference_atoms():
    if not (DATA / "G-Si-2nm.npy").is_file():
        pytest.skip(f"G-Si-2nm.npy is not in {DATA}")
    image = np.load(DATA / "G-Si-2nm.npy")
    atoms = np.load(DATA / "G-Si-2nm-coords.npy")[:, :2]
    # the reference atoms' own lattice: their second neighbours are one cell (0.246 nm) apart
    d, _ = cKDTree(atoms).query(atoms, k=10)
    nn = np.median(d[:, 1])
    second = d[(d > 1.5 * nn) & (d < 1.9 * nn)]
    from_atoms = 0.246 / float(np.mean(second))
    estimate = estimate_pixel_size(image, get_lattice("graphene"))
    assert estimate.pixel_size_nm == pytest.approx(from_atoms, rel=3e-3)
    # the nearest-neighbour shortcut is biased: the closest of three noisy distances
    assert 0.142 / nn > 1.02 * estimate.pixel_size_nm


@pytest.mark.parametrize(("sample", "spec"), [("graphene", "graphene"), ("srtio3", "SrTiO3")])
def test_pixel_size_of_noisy_twin_images(sample, spec):
    from dm_bridge.backends.twin import TwinBackend

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the twin's EELS model warns on empty bands
        acq = TwinBackend(sample, seed=3, noise_level=0.9).acquire_image()
    true = acq.scan.field_of_view / acq.scan.width
    estimate = estimate_pixel_size(acq.images["HAADF"], get_lattice(spec))
    assert estimate.pixel_size_nm == pytest.approx(true, rel=5e-3)  # 0.9: atoms barely seen


def test_an_image_without_the_lattice_is_a_clear_error():
    noise = np.random.default_rng(0).random((96, 96))
    with pytest.raises(ValueError, match=r"no lattice reflection|no reflection"):
        estimate_pixel_size(noise, get_lattice("graphene"))
    with pytest.raises(ValueError, match="at least 32"):
        estimate_pixel_size(np.ones((8, 8)), get_lattice("graphene"))


# ------------------------------------------------------------------ plausibility

PX = 0.015


@pytest.fixture(scope="module")
def ws2():
    """A synthetic WS2 monolayer (there is no real one in ../shared/data): the image and the
    true W and S2 sites."""
    lattice = get_lattice("WS2")
    image = render_lattice(lattice, (160, 160), PX, rotation_deg=17, sigma_nm=0.06, counts=40)
    sites, kind = lattice_sites(lattice, (160, 160), PX, rotation_deg=17)
    return image, sites[kind == 0], sites[kind == 1]


def test_the_right_atoms_pass(ws2):
    image, w, s2 = ws2
    assert check_plausibility(w, image, get_lattice("WS2:W"), PX).ok
    assert check_plausibility(np.vstack([w, s2]), image, get_lattice("WS2"), PX).ok


@pytest.mark.parametrize("case", ["dim sublattice", "shifted 0.05 nm", "jittered", "wrong lattice"])
def test_the_right_count_in_the_wrong_places_fails(ws2, case):
    image, w, s2 = ws2
    lattice, atoms = get_lattice("WS2:W"), w
    if case == "dim sublattice":
        atoms = s2  # the S2 columns: as many, as far apart, all in the wrong place
    elif case == "shifted 0.05 nm":
        atoms = w + np.array([0.04, 0.03]) / PX
    elif case == "jittered":
        atoms = w + np.random.default_rng(0).normal(0, 0.05 / PX / np.sqrt(2), w.shape)
    else:  # a square lattice of the same density as the W columns: the count would be right
        side = np.sqrt(1 / get_lattice("WS2:W").density_per_nm2)
        lattice = Lattice.from_unit_cell("square", (side, side), 90.0, [(0.0, 0.0)])
    check = check_plausibility(atoms, image, lattice, PX)
    assert not check.ok
    assert check.warnings
    with pytest.warns(ImplausibleAtomsWarning, match=r"LoG\* atoms implausible"):
        check_plausibility(atoms, image, lattice, PX, warn=True)


def test_the_real_graphene_reference_atoms_pass():
    if not (DATA / "G-Si-2nm.npy").is_file():
        pytest.skip(f"G-Si-2nm.npy is not in {DATA}")
    image = np.load(DATA / "G-Si-2nm.npy")
    atoms = np.load(DATA / "G-Si-2nm-coords.npy")[:, :2]
    pixel = estimate_pixel_size(image, get_lattice("graphene")).pixel_size_nm
    assert check_plausibility(atoms, image, get_lattice("graphene"), pixel).ok


# ------------------------------------------------------------------ in the agent


def test_the_agent_estimates_a_missing_pixel_size_and_reports_it(ws2):
    image, _, _ = ws2
    agent = LoGStarAgent("WS2:W", budget=12, n_initial=8, n_clusters=0, seed=0)
    agent.observe(image)
    report = agent.report()
    assert report["pixel_size"]["source"] == "fft"
    assert report["pixel_size_nm"] == pytest.approx(PX, rel=5e-3)
    assert report["plausibility"]["ok"], report["plausibility"]["warnings"]


def test_the_agent_warns_in_its_report_about_a_calibration_the_lattice_contradicts(ws2):
    image, _, _ = ws2
    agent = LoGStarAgent(
        "WS2:W", budget=12, n_initial=8, n_clusters=0, seed=0, warn_implausible=True
    )
    with pytest.warns(ImplausibleAtomsWarning, match="calibration"):
        agent.observe(image, pixel_size_nm=1.3 * PX)
    report = agent.report()
    assert report["pixel_size"]["fft_over_given"] == pytest.approx(1 / 1.3, rel=5e-3)
    assert "calibration" in report["pixel_size"]["warning"]
    # and the agent can be told to trust the image instead
    agent = LoGStarAgent("WS2:W", pixel_size_nm="fft", budget=12, n_initial=8, n_clusters=0)
    agent.observe(image, pixel_size_nm=1.3 * PX)
    assert agent.image_pixel_size_nm == pytest.approx(PX, rel=5e-3)
    assert agent.config()["pixel_size_nm"] == "fft"
    # the report says where the size in use came from, the image's calibration beside it
    info = agent.report()["pixel_size"]
    assert info["source"] == "fft"
    assert info["given_nm"] == pytest.approx(1.3 * PX)
    assert info["fft_over_given"] == pytest.approx(1 / 1.3, rel=5e-3)
