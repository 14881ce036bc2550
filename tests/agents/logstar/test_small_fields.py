"""The pixel size of small fields: crops of the real graphene image (../shared/data).

On a field of a few unit cells the lattice's reflections sink into the noise; the Hann
window made it worse (it weighs most of a small field next to nothing) and the FFT read the
pixel size x sqrt 3 or x 4, used with only a warning. Now the agent reads the FFT through a
flatter window when Hann's reading is not clear, checks it against the atoms' spacing,
refuses it and uses the spacing when they disagree (and says so), and asks for the pixel
size when neither can be read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from agents.logstar import LoGStarAgent, get_lattice
from agents.logstar.calibration import estimate_pixel_size
from agents.logstar.neighbours import coordination, estimate_from_neighbours
from agents.logstar.plausibility import ImplausibleAtomsWarning

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


@pytest.fixture(scope="module")
def graphene():
    """The real G-Si-2nm image and its pixel size from its reference atoms' own lattice
    (their second neighbours are one cell, 0.246 nm, apart): 0.00771 nm/px."""
    if not (DATA / "G-Si-2nm.npy").is_file():
        pytest.skip(f"G-Si-2nm.npy is not in {DATA}")
    image = np.load(DATA / "G-Si-2nm.npy")
    atoms = np.load(DATA / "G-Si-2nm-coords.npy")[:, :2]
    d, _ = cKDTree(atoms).query(atoms, k=10)
    nn = np.median(d[:, 1])
    second = d[(d > 1.5 * nn) & (d < 1.9 * nn)]
    return image, 0.246 / float(np.mean(second))


def test_a_200_px_crop_is_read_through_the_flat_window(graphene):
    image, px = graphene
    crop = image[:200, :200]
    hann = estimate_pixel_size(crop, get_lattice("graphene"))  # the default window
    assert not hann.clear  # two spots: x sqrt 3, what the agent used before
    assert hann.pixel_size_nm > 1.5 * px
    auto = estimate_pixel_size(crop, get_lattice("graphene"), window="auto")
    assert auto.window == "tukey"
    assert auto.clear
    assert auto.pixel_size_nm == pytest.approx(px, rel=0.01)


@pytest.mark.parametrize("size", [80, 96, 112, 128])
def test_the_atoms_spacing_reads_small_crops(graphene, size):
    image, px = graphene
    for crop in (image[:size, :size], image[-size:, -size:]):
        estimate = estimate_from_neighbours(crop, get_lattice("graphene"))
        assert estimate is not None
        assert estimate.pixel_size_nm == pytest.approx(px, rel=0.05)
        assert estimate.n_atoms >= 8


def test_the_agent_refuses_a_small_fields_fft_and_says_what_it_used(graphene):
    """112 x 112 (4.5 x 4.5 unit cells): the FFT's reading is x sqrt 3, the atoms' spacing
    2.8 % short; the agent uses the spacing, and the report and a warning say so."""
    image, px = graphene
    agent = LoGStarAgent(
        "graphene", budget=6, n_initial=6, n_clusters=0, seed=0, warn_implausible=True
    )
    with pytest.warns(ImplausibleAtomsWarning, match="from the FFT was refused"):
        agent.observe(image[:112, :112])
    report = agent.report()
    info = report["pixel_size"]
    assert info["source"] == "neighbours"
    assert report["pixel_size_nm"] == pytest.approx(px, rel=0.05)
    assert info["fft"]["pixel_size_nm"] > 1.5 * px  # what it refused, kept beside it
    assert info["neighbours"]["n_atoms"] >= 8
    assert "give the calibration" in info["warning"]


def test_a_doubtful_fft_the_atoms_confirm_is_kept(graphene):
    image, px = graphene
    agent = LoGStarAgent("graphene", budget=6, n_initial=6, n_clusters=0, seed=0)
    agent.observe(image[-128:, -128:])
    info = agent.report()["pixel_size"]
    assert info["source"] == "fft"
    assert info["confirmed_by"] == "neighbours"
    assert "warning" not in info
    assert agent.report()["pixel_size_nm"] == pytest.approx(px, rel=0.01)


def test_a_field_too_small_for_both_asks_for_the_pixel_size(graphene):
    image, px = graphene
    agent = LoGStarAgent("graphene", budget=6, n_initial=6, n_clusters=0, seed=0)
    with pytest.raises(ValueError, match=r"too few regular atoms.*give the pixel size"):
        agent.observe(image[:64, :64])
    # and a calibration given with the next image works
    agent.observe(image[:64, :64], pixel_size_nm=px)
    assert agent.report()["pixel_size_nm"] == pytest.approx(px)


def test_coordination_of_library_lattices():
    assert coordination(get_lattice("graphene")) == 3
    assert coordination(get_lattice("SrTiO3")) == 4
    assert coordination(get_lattice("WS2:W")) == 6


def test_unresolved_pairs_do_not_pass_for_the_spacing():
    """Si[110] at 0.015 nm/px: its dumbbells barely resolved. Blobs whose next shell of
    neighbours is not where the lattice puts it are not taken (they read +20 %)."""
    from agents.logstar.neighbours import next_shell_ratio
    from agents.logstar.render import render_lattice

    lattice = get_lattice("Si[110]")
    image = render_lattice(lattice, (96, 96), 0.015, rotation_deg=23, counts=30)
    estimate = estimate_from_neighbours(image, lattice)
    assert estimate is not None
    assert estimate.pixel_size_nm == pytest.approx(0.015, rel=0.05)
    assert estimate.shell_ratio <= 1.1 * next_shell_ratio(lattice)
