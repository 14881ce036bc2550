"""Recordings as a real microscope gives them, beyond the twin's clean arrays: undefined pixels
in a drift frame, a zero-loss peak clipped by the camera or off the end of the energy axis.
Each case once crashed inside scipy/skimage or gave a silently wrong number."""

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _graphene() -> np.ndarray:
    if not (DATA / "G-Si-2nm.npy").is_file():
        pytest.skip(f"G-Si-2nm.npy (real HAADF image) is not in {DATA}")
    return np.load(DATA / "G-Si-2nm.npy")


def test_drift_is_measured_on_frames_with_undefined_pixels():
    """A dead-pixel mask or an aligned frame's border leaves NaN/inf pixels; skimage's
    registration refused the whole frame ("NaN values found") and stopped the run."""
    from agents.drift import DriftTracker

    image = _graphene()
    reference = image.copy()
    reference[10, 20] = np.nan
    later = np.roll(image, (3, -2), axis=(0, 1))
    later[100, 7] = np.inf
    later[5, 200] = np.nan
    tracker = DriftTracker(reference)
    estimate = tracker.measure(later, time=10.0)
    assert estimate["dx"] == pytest.approx(-2.0, abs=0.1)
    assert estimate["dy"] == pytest.approx(3.0, abs=0.1)
    assert estimate["used"]


def test_a_blank_drift_frame_is_untrusted_and_the_run_goes_on(caplog):
    """A frame with the beam blanked for a moment (or a detector glitch) is constant:
    measure() raised "a constant image has no features to correlate" and stopped the run."""
    import logging

    from agents.drift import DriftTracker

    image = _graphene()
    tracker = DriftTracker(image)
    first = tracker.measure(np.roll(image, (2, 0), axis=(0, 1)), time=10.0)
    assert first["used"]
    caplog.set_level(logging.WARNING, logger="agents.drift")
    blank = tracker.measure(np.zeros(image.shape, dtype=np.uint16), time=20.0)
    assert blank["used"] is False
    assert blank["peak"] == 0.0
    assert (blank["vx"], blank["vy"]) == (first["vx"], first["vy"])  # the drift known so far
    assert "constant" in caplog.text
    later = tracker.measure(np.roll(image, (4, 0), axis=(0, 1)), time=30.0)
    assert later["used"]
    assert later["dy"] == pytest.approx(4.0, abs=0.1)
    # a blank reference is a setup error, said at once
    with pytest.raises(ValueError, match="reference image is constant"):
        DriftTracker(np.full((64, 64), 7.0))


AXIS = np.arange(-10.0, 30.0, 0.05)


def _low_loss(zlp: float = 0.2, axis: np.ndarray = AXIS) -> np.ndarray:
    return 2e5 * np.exp(-0.5 * ((axis - zlp) / 0.4) ** 2) + 3e3 * np.exp(
        -0.5 * ((axis - 17.0 - zlp) / 4.0) ** 2
    )


def test_a_zero_loss_peak_clipped_by_the_camera_is_centred_on_its_flat_top():
    """The ZLP saturates the spectrometer camera (uint16 full scale) on many recordings; the
    brightest channel was the flat top's first, 0.5 eV off the true centre."""
    from agents.zlp import ZeroLossAligner, locate_zero_loss

    true = np.array([0.2, -0.35, 0.6])
    spectra = np.stack([_low_loss(z) for z in true])
    clipped = np.minimum(spectra, 65535).astype(np.uint16)  # ~12 channels at full scale
    assert (clipped == 65535).sum(axis=1).min() >= 5
    found = locate_zero_loss(clipped, AXIS)
    np.testing.assert_allclose(found, true, atol=0.05)
    _, _, shifts = ZeroLossAligner().align_with_shifts(clipped, AXIS)
    np.testing.assert_allclose(shifts, -true, atol=0.05)


def test_a_zero_loss_peak_off_the_axis_is_not_taken_from_its_tail():
    """An energy axis that starts just above the ZLP (offset set for the plasmons) holds
    only its tail: the first channel was taken for the peak and every spectrum shifted."""
    from agents.zlp import ZeroLossAligner, locate_zero_loss

    axis = np.arange(0.5, 50.0, 0.05)
    spectra = np.stack([_low_loss(0.1, axis), _low_loss(0.2, axis)])
    assert np.isnan(locate_zero_loss(spectra, axis)).all()
    aligner = ZeroLossAligner()
    aligned, zlp, shifts = aligner.align_with_shifts(spectra, axis)
    assert np.isnan(zlp).all()
    np.testing.assert_array_equal(aligned, spectra)  # left as measured
    assert np.all(shifts == 0.0)
    assert aligner.report()["untrusted"] == 2
    # and a peak beyond +-search (5 eV) inside a longer axis is not taken from its tail
    assert np.isnan(locate_zero_loss(_low_loss(6.0), AXIS))
    # the real peak right at the search window's edge is still found
    assert locate_zero_loss(_low_loss(4.7), AXIS) == pytest.approx(4.7, abs=0.02)


def test_logstar_refuses_a_pixel_size_at_which_the_columns_cannot_be_resolved():
    """A survey at 0.5 nm/px puts graphene's columns 0.3 px apart: LoG* reported ~7,000
    'atoms' (noise maxima) on the real image and the plan took EELS at them."""
    from agents.logstar import LoGStarAgent

    image = _graphene()
    agent = LoGStarAgent("graphene", budget=8, n_initial=6, n_clusters=0, seed=0)
    with pytest.raises(ValueError, match=r"0\.284 px apart.*calibration.*0\.071 nm/px or finer"):
        agent.observe(image, pixel_size_nm=0.5)
    # the image's own lattice reflections give its real calibration, as the message says
    agent = LoGStarAgent("graphene", pixel_size_nm="fft", budget=8, n_initial=6, n_clusters=0)
    summary = agent.observe(image, pixel_size_nm=0.5)
    assert 100 < summary["n_atoms"] < 200  # ~140 atoms in the reference


def test_every_survey_reader_takes_a_one_frame_stack_and_honours_a_mask():
    """LoG* refused the (1, H, W) one-frame stack every other agent takes; a masked array's
    masked pixels (dead or saturated, as the recording marks them) were read with the
    values under the mask, by every agent."""
    from agents.ensemble._runtime import as_image
    from agents.images import survey_image_array
    from agents.logstar.scalespace import as_float_image

    image = _graphene()
    flawed = image.copy()
    flawed[100:104, 50:54] = 1e6  # a saturated blob: 16 px, too many for a hot-pixel filter
    masked = np.ma.masked_greater(flawed, 1e5)
    for read in (survey_image_array, as_image, as_float_image):
        frame = read(image[None])
        assert frame.shape == image.shape
        clean = read(masked)
        assert clean.max() <= image.max()  # the blob is gone: filled from around it
        assert clean[100:104, 50:54].max() <= image[98:106, 48:56].max()
        assert clean[0, 0] == pytest.approx(read(image)[0, 0])
        with pytest.raises(ValueError, match="stack of frames: pass one frame"):
            read(np.stack([image] * 3))  # and says what to do with a real stack


def test_the_latent_agent_trains_on_a_bounded_number_of_patches_on_a_large_field():
    """A 1024 x 1024 survey (the real graphene image tiled) trained the rVAE on 65,536
    patches: over 3 minutes at the default 20 epochs before the first suggestion."""
    from agents.latent import MAX_TRAIN_PATCHES, LatentAgent, training_step

    image = np.tile(_graphene(), (4, 4))
    agent = LatentAgent(image, n_clusters=2, epochs=1, step=16, seed=0)
    rvae = agent.report()["rvae"]
    assert rvae["train_patches"] <= MAX_TRAIN_PATCHES
    assert rvae["train_step"] == 16  # 64 x 64 patches
    assert agent.config()["train_step"] == 4  # as asked: a replay builds the same agent
    suggestions = agent.suggest(3)
    assert all(0 <= s["x"] < 1024 and 0 <= s["y"] < 1024 for s in suggestions)
    # fields up to 256 x 256 train as asked
    assert training_step((256, 256), 4) == 4
    assert training_step((128, 128), 3) == 3


@pytest.mark.parametrize("name", ["physics", "hypotheses"])
def test_the_pyro_agents_keep_suggesting_when_seed_spectra_give_no_number(name):
    """Two of three seed spectra without a number (a dead read-out) left one value, too
    few to fit: the agent suggested nothing more and the run ended after its seeds."""
    from agents.registry import agent_entry

    image = _graphene()
    settings = {"train_steps": 5, "finetune_steps": 2, "draws": 2, "n_seed": 3, "step": 8}
    agent = agent_entry(name).load()(image, **settings)
    seeds = agent.suggest(3)
    agent.ingest([[s["x"], s["y"]] for s in seeds], [1.0, np.nan, np.nan])
    more = agent.suggest(2)
    assert len(more) == 2
    assert all(s["source"] == "seed" for s in more)
    measured = {(s["x"], s["y"]) for s in seeds}
    assert not measured & {(s["x"], s["y"]) for s in more}
    agent.ingest([[s["x"], s["y"]] for s in more], [2.0, 3.0])
    assert agent.suggest(1)[0]["source"] == "model"  # three values: the model takes over


def test_logstar_report_on_a_featureless_frame_is_strict_json():
    """A frame without atoms (the beam blanked, vacuum only) gave NaN in the report's
    plausibility, which strict JSON readers of the run's record refuse."""
    import json

    from agents.logstar import LoGStarAgent

    agent = LoGStarAgent("graphene", budget=8, n_initial=6, n_clusters=0, seed=0)
    summary = agent.observe(np.full((96, 96), 120.0), pixel_size_nm=0.01)
    assert summary["n_atoms"] == 0
    report = json.loads(json.dumps(agent.report(), allow_nan=False))
    assert report["plausibility"]["median_offset_px"] is None
    assert report["plausibility"]["ok"] is False


def _with_hot_pixels(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = image.astype(np.float64)
    out[mask] = 3 * image.max()
    return out


def test_the_edge_path_and_the_drift_ignore_the_cameras_hot_pixels():
    """0.3 % hot pixels (where the camera has them, in every frame): 99 of the edge path's
    100 points went to them, and the drift measured between two frames was zero."""
    from agents.drift import DriftTracker
    from agents.edges import EdgeAgent

    image = _graphene()
    hot = np.random.default_rng(0).random(image.shape) < 0.003
    rows, cols = np.nonzero(hot)
    agent = EdgeAgent(_with_hot_pixels(image, hot), budget=100)
    xy = agent.candidates
    near = np.hypot(xy[:, 0, None] - cols[None], xy[:, 1, None] - rows[None]).min(axis=1) <= 3
    assert near.mean() < 0.2  # ~0.1 by chance on the clean image
    assert agent.report()["hot_pixels"] >= 0.9 * hot.sum()
    assert EdgeAgent(image, budget=100).report()["hot_pixels"] == 0  # the real image as is

    later = _with_hot_pixels(np.roll(image, (3, -2), axis=(0, 1)), hot)
    estimate = DriftTracker(_with_hot_pixels(image, hot)).measure(later, time=10.0)
    assert estimate["dx"] == pytest.approx(-2.0, abs=0.1)
    assert estimate["dy"] == pytest.approx(3.0, abs=0.1)


def test_a_survey_smaller_than_the_latent_window_says_so():
    """An 8 x 8 px survey (a quick look at a small region) was refused as 'window must be
    1..8 pixels, got 12', not saying the window is the agent's default patch size."""
    from agents.latent import LatentAgent

    with pytest.raises(ValueError, match=r"larger than the 8 x 8 px survey image.*window="):
        LatentAgent(_graphene()[:8, :8], epochs=1)
