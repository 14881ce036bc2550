"""Drift tracking: sub-pixel registration and the positions that follow the specimen."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, shift

from agents.drift import DriftTracker, phase_correlation


def _texture(seed=0, size=96):
    rng = np.random.default_rng(seed)
    return gaussian_filter(rng.random((size, size)), 1.0) * 100


@pytest.mark.parametrize("normalisation", ["cross", "phase"])
def test_a_known_subpixel_displacement_is_recovered(normalisation):
    ref = _texture()
    moved = shift(ref, (-1.3, 2.6), mode="reflect", order=3)  # rows up 1.3, columns right 2.6
    est = phase_correlation(ref, moved, upsample=20, normalisation=normalisation)
    # whitening splits a sub-pixel peak: phase correlation is the less precise of the two
    tolerance = 0.05 if normalisation == "cross" else 0.15
    assert est["dx"] == pytest.approx(2.6, abs=tolerance)
    assert est["dy"] == pytest.approx(-1.3, abs=tolerance)
    assert est["peak"] > 0.1


def test_tracker_follows_linear_drift_and_corrects_at_each_time():
    ref = _texture(1)
    tracker = DriftTracker(ref, reference_time=0.0, every_points=5)
    for t in (10.0, 20.0, 30.0):
        moved = shift(ref, (0.05 * t, 0.1 * t), mode="reflect", order=3)
        out = tracker.measure(moved, t)
    assert out["vx"] == pytest.approx(0.1, abs=0.01)
    assert out["vy"] == pytest.approx(0.05, abs=0.01)
    corrected = tracker.correct([[40.0, 40.0], [10.0, 50.0]], times=[40.0, 50.0])
    np.testing.assert_allclose(corrected, [[44.0, 42.0], [15.0, 52.5]], atol=0.2)
    assert tracker.report()["measurements"] == 3


def test_due_and_chunk_by_count_and_by_time():
    # (first_points=0: the start's closer re-measurements are the next test's)
    tracker = DriftTracker(_texture(), every_points=20, every_seconds=30.0, first_points=0)
    assert not tracker.due(5, 10.0)
    assert tracker.due(20, 1.0)
    assert tracker.due(1, 31.0)
    assert tracker.chunk(seconds_per_point=3.0) == 10  # 30 s come before 20 points
    assert tracker.chunk(seconds_per_point=0.0) == 20
    # the fewest spectra that reach 30 s: 7 of 4.5 s (31.5 s), not 6 (27 s, not due yet)
    assert tracker.chunk(seconds_per_point=4.5) == 7


def test_an_untrusted_estimate_does_not_move_the_beam():
    ref = _texture(2)
    tracker = DriftTracker(ref, min_peak=0.9)  # nothing real reaches this peak
    est = tracker.measure(np.random.default_rng(5).random(ref.shape), 10.0)
    assert not est["used"]
    np.testing.assert_allclose(tracker.correct([[3.0, 4.0]]), [[3.0, 4.0]])
    assert tracker.report()["rejected"] == 1


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="2-D image"):
        DriftTracker(np.zeros(10))
    with pytest.raises(ValueError, match="one shape"):
        phase_correlation(np.ones((8, 8)), np.ones((9, 8)))
    with pytest.raises(ValueError, match="constant"):
        phase_correlation(np.ones((8, 8)), _texture(size=8))
    with pytest.raises(ValueError, match="normalisation"):
        phase_correlation(_texture(), _texture(), normalisation="fourier")


def test_the_first_measurements_come_sooner_until_the_velocity_rests_on_two():
    ref = _texture(3)
    tracker = DriftTracker(ref, every_points=10, first_points=3)
    # nothing measured yet: re-measure after 3 spectra, not 10
    assert tracker.chunk(seconds_per_point=1.0) == 3
    assert tracker.due(3, 3.0)
    tracker.measure(shift(ref, (0.1, 0.2), mode="reflect", order=3), 5.0)
    assert tracker.chunk(seconds_per_point=1.0) == 3  # one stretch: its velocity is noisy
    tracker.measure(shift(ref, (0.2, 0.4), mode="reflect", order=3), 10.0)
    assert tracker.chunk(seconds_per_point=1.0) == 10
    assert not tracker.due(3, 3.0)
    assert tracker.config()["first_points"] == 3
    # 0: by every_points alone, from the start
    assert DriftTracker(ref, every_points=10, first_points=0).chunk(1.0) == 10
    with pytest.raises(ValueError, match="first_points"):
        DriftTracker(ref, first_points=-1)
