"""Where each pixel of a scan lands on the sample, and how the sample drifts.

Frames (all lengths in nm):

* the *sample frame*: fixed to the specimen, ``x`` to the right and ``y`` down as in an image
  taken at zero scan rotation, origin at the middle of the sample;
* the *scan field*: pixels ``(x, y)`` = (column, row), ``(0, 0)`` the centre of the top-left
  pixel (ARCHITECTURE.md).

A pixel ``(x, y)`` of a ``width × height`` scan with pixel size ``p`` and scan rotation ``θ``
(degrees, counter-clockwise as seen on screen) images the sample point::

    u = (x - (width - 1) / 2) · p,   v = (y - (height - 1) / 2) · p
    sample = centre + u · (cos θ, -sin θ) + v · (sin θ, cos θ) - drift(t)

so rotating the scan counter-clockwise turns the image content clockwise, as on DigiScan.
Specimen drift ``drift(t)`` (linear plus a random walk, in instrument time) moves the
specimen under a fixed scan, so features move by ``+drift`` in the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

__all__ = ["DriftModel", "ScanFrame"]


@dataclass(frozen=True)
class ScanFrame:
    """The geometry of one scan: pixel grid, pixel size, rotation, centre and drift.

    Attributes:
        width, height: pixels.
        pixel_size: nm per pixel.
        rotation: scan rotation, degrees counter-clockwise.
        centre: sample-frame position of the middle of the field without drift, nm.
        drift: specimen displacement at the time of the scan, nm (``(dx, dy)``).

    Example:
        >>> f = ScanFrame(4, 4, 0.5, 0.0)
        >>> f.to_sample(np.array([1.5]), np.array([1.5]))
        (array([0.]), array([0.]))
    """

    width: int
    height: int
    pixel_size: float
    rotation: float = 0.0
    centre: Tuple[float, float] = (0.0, 0.0)
    drift: Tuple[float, float] = (0.0, 0.0)

    @property
    def _axes(self) -> Tuple[float, float]:
        t = np.deg2rad(self.rotation)
        return float(np.cos(t)), float(np.sin(t))

    def to_sample(
        self, x: np.ndarray, y: np.ndarray, drift: Optional[np.ndarray] = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Sample-frame position (nm) of pixel coordinates ``(x, y)``.

        ``drift`` (shape ``(N, 2)``) replaces the frame's own drift per point, for spectra
        taken at different times.
        """
        c, s = self._axes
        u = (np.asarray(x, dtype=np.float64) - (self.width - 1) / 2.0) * self.pixel_size
        v = (np.asarray(y, dtype=np.float64) - (self.height - 1) / 2.0) * self.pixel_size
        if drift is None:
            dx, dy = self.drift
        else:
            dx, dy = drift[:, 0], drift[:, 1]
        xs = self.centre[0] + c * u + s * v - dx
        ys = self.centre[1] - s * u + c * v - dy
        return xs, ys

    def to_pixels(self, xs: np.ndarray, ys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates ``(x, y)`` of sample-frame positions (nm); the inverse."""
        c, s = self._axes
        rx = np.asarray(xs, dtype=np.float64) - self.centre[0] + self.drift[0]
        ry = np.asarray(ys, dtype=np.float64) - self.centre[1] + self.drift[1]
        u = c * rx - s * ry
        v = s * rx + c * ry
        return (
            u / self.pixel_size + (self.width - 1) / 2.0,
            v / self.pixel_size + (self.height - 1) / 2.0,
        )

    def pixel_grid(self) -> Tuple[np.ndarray, np.ndarray]:
        """Sample-frame coordinates of every pixel, two ``(height, width)`` arrays."""
        c, s = self._axes
        u = (np.arange(self.width) - (self.width - 1) / 2.0) * self.pixel_size
        v = (np.arange(self.height) - (self.height - 1) / 2.0) * self.pixel_size
        xs = (self.centre[0] - self.drift[0]) + c * u[None, :] + s * v[:, None]
        ys = (self.centre[1] - self.drift[1]) - s * u[None, :] + c * v[:, None]
        return xs, ys

    def bounds(self, margin: float = 0.0) -> Tuple[float, float, float, float]:
        """Sample-frame bounding box ``(xmin, xmax, ymin, ymax)`` of the field, nm."""
        xs, ys = self.to_sample(
            np.array([-0.5, self.width - 0.5, -0.5, self.width - 0.5]),
            np.array([-0.5, -0.5, self.height - 0.5, self.height - 0.5]),
        )
        return (
            float(xs.min() - margin),
            float(xs.max() + margin),
            float(ys.min() - margin),
            float(ys.max() + margin),
        )

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "pixel_size": self.pixel_size,
            "rotation": self.rotation,
            "centre_nm": [float(self.centre[0]), float(self.centre[1])],
            "drift_nm": [float(self.drift[0]), float(self.drift[1])],
        }


class DriftModel:
    """Specimen drift in instrument time: ``velocity · t`` plus a Gaussian random walk.

    Args:
        velocity: linear drift ``(vx, vy)``, nm/s (typical stage drift: 0.5–2 nm/min).
        random_walk: diffusion of the random part, nm/√s.
        rng: random generator of the drift (its own stream, so turning drift on does not
            change the noise of the data).
        enabled: False keeps the specimen still.

    The random walk is drawn lazily at the times asked for; times must not go backwards
    (the instrument clock only moves forward).

    Example:
        >>> d = DriftModel((0.1, 0.0), 0.0, np.random.default_rng(0))
        >>> d.offsets(np.array([10.0]))
        array([[1., 0.]])
    """

    def __init__(
        self,
        velocity: Tuple[float, float] = (0.02, 0.01),
        random_walk: float = 0.005,
        rng: Optional[np.random.Generator] = None,
        enabled: bool = True,
    ) -> None:
        self.velocity = (float(velocity[0]), float(velocity[1]))
        self.random_walk = float(random_walk)
        self.enabled = bool(enabled)
        self._rng = rng or np.random.default_rng()
        self._t = 0.0
        self._walk = np.zeros(2)

    def offsets(self, times: np.ndarray) -> np.ndarray:
        """Drift ``(N, 2)`` in nm at the non-decreasing instrument ``times`` (s)."""
        times = np.atleast_1d(np.asarray(times, dtype=np.float64))
        out = np.zeros((len(times), 2))
        if not self.enabled or len(times) == 0:
            return out
        steps = np.diff(np.concatenate([[self._t], times]))
        steps = np.maximum(steps, 0.0)
        if self.random_walk > 0:
            inc = self._rng.standard_normal((len(times), 2)) * (
                self.random_walk * np.sqrt(steps)[:, None]
            )
            walk = self._walk + np.cumsum(inc, axis=0)
        else:
            walk = np.repeat(self._walk[None, :], len(times), axis=0)
        self._walk = walk[-1].copy()
        self._t = max(self._t, float(times[-1]))
        out[:] = walk + times[:, None] * np.asarray(self.velocity)[None, :]
        return out

    def peek(self, time: float) -> Tuple[float, float]:
        """Drift at ``time`` without drawing anything (the random walk as it stands): for
        truth queries, which must not change the data that follows."""
        if not self.enabled:
            return (0.0, 0.0)
        return (
            float(self._walk[0] + self.velocity[0] * time),
            float(self._walk[1] + self.velocity[1] * time),
        )

    def offset(self, time: float) -> Tuple[float, float]:
        """Drift at one instrument time, nm."""
        d = self.offsets(np.array([time]))[0]
        return float(d[0]), float(d[1])
