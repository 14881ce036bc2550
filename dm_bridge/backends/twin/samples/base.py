"""What every simulated sample provides, and the machinery shared by the atomic ones.

A sample is a model of the specimen in its own frame (nm, see :mod:`..geometry`) with known
truth. The backend asks it for

* the noise-free HAADF signal of a scan field (fraction of electrons reaching the detector),
* the EELS component weights ``tau`` at arbitrary positions (sub-pixel, per spectrum),
* the truth of a field: label map, thickness, atoms,

and tells it the electron dose it received (beam damage). Samples never see noise or time.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from ..geometry import ScanFrame
from ..imaging import render_gaussians
from ..materials import Component

__all__ = ["SIGMA_C", "AtomicSample", "Sample", "SampleGrid"]

#: HAADF cross-section of one carbon atom (40–200 mrad), nm². A probe on a C atom sends
#: ~3e-4 of its electrons to the detector; a heavier atom Z scales as (Z / 6) ** 1.7.
SIGMA_C = 2.3e-6


class Sample(ABC):
    """A specimen with ground truth.

    Class attributes say how a microscopist would look at it first: ``default_scan``
    (``width``, ``height``, ``field_of_view`` in nm, ``dwell_time`` in s), ``default_eels``
    (``energy_offset``, ``dispersion``, ``channels``), ``zlp_fwhm`` (eV) and
    ``high_tension_kv``.
    """

    name: ClassVar[str] = "abstract"
    label_names: ClassVar[Tuple[str, ...]] = ("vacuum",)
    high_tension_kv: ClassVar[float] = 200.0
    default_scan: ClassVar[Dict[str, Any]] = {}
    default_eels: ClassVar[Dict[str, Any]] = {}
    zlp_fwhm: ClassVar[float] = 0.5
    #: what ``noise_level`` refers to (docs: a C atom, a Sr column, ...)
    reference_feature: ClassVar[str] = ""

    #: sample-frame extent ``(xmin, xmax, ymin, ymax)``, nm; vacuum beyond
    extent: Tuple[float, float, float, float]
    components: Tuple[Component, ...]

    @abstractmethod
    def haadf(self, frame: ScanFrame, probe_sigma: float) -> np.ndarray:
        """Noise-free fraction of electrons reaching the HAADF detector, ``(height, width)``."""

    @abstractmethod
    def tau(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """EELS component weights ``(N, M)`` at sample-frame positions (nm)."""

    @abstractmethod
    def labels(self, frame: ScanFrame) -> np.ndarray:
        """Region label of every pixel (indices into ``label_names``), uint8."""

    @abstractmethod
    def thickness(self, frame: ScanFrame) -> np.ndarray:
        """Total specimen thickness at every pixel, nm, float32."""

    @abstractmethod
    def reference_fraction(self, probe_sigma: float) -> float:
        """HAADF fraction at the reference feature (what ``noise_level`` is defined on)."""

    @abstractmethod
    def parameters(self) -> Dict[str, Any]:
        """The construction parameters, JSON-able (for truth and docs)."""

    def atoms(self, frame: ScanFrame) -> Optional[Dict[str, Any]]:
        """Atoms (or atomic columns) inside ``frame``; None for continuum samples."""
        return None

    def truth_extras(self, frame: ScanFrame) -> Dict[str, Any]:
        """Sample-specific truth (particles, interface geometry, ...)."""
        return {}

    def apply_dose(
        self, frame: ScanFrame, electrons_per_nm2: float, rng: np.random.Generator
    ) -> int:
        """Expose the scanned field to a uniform dose; returns atoms knocked out."""
        return 0

    @property
    def knocked_out(self) -> int:
        """Atoms removed by the beam so far."""
        return 0


class SampleGrid:
    """A regular grid over the sample frame, for smooth fields looked up by interpolation.

    Args:
        extent: ``(xmin, xmax, ymin, ymax)`` of the sample, nm.
        step: grid spacing, nm.
        margin: extra border, nm (fields fall to zero there).
    """

    def __init__(
        self, extent: Tuple[float, float, float, float], step: float, margin: float = 1.0
    ) -> None:
        self.x0 = extent[0] - margin
        self.y0 = extent[2] - margin
        self.step = float(step)
        self.nx = math.ceil((extent[1] - extent[0] + 2 * margin) / step) + 1
        self.ny = math.ceil((extent[3] - extent[2] + 2 * margin) / step) + 1

    @property
    def shape(self) -> Tuple[int, int]:
        return (self.ny, self.nx)

    def index(self, xs: np.ndarray, ys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Fractional (row, column) grid indices of sample positions."""
        return (np.asarray(ys) - self.y0) / self.step, (np.asarray(xs) - self.x0) / self.step

    def splat(self, xs: np.ndarray, ys: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Bilinear deposit of point weights (a density once divided by ``step²``)."""
        grid = np.zeros(self.ny * self.nx)
        r, c = self.index(xs, ys)
        ir, ic = np.floor(r).astype(np.int64), np.floor(c).astype(np.int64)
        fr, fc = r - ir, c - ic
        for dr, dc, w in (
            (0, 0, (1 - fr) * (1 - fc)),
            (0, 1, (1 - fr) * fc),
            (1, 0, fr * (1 - fc)),
            (1, 1, fr * fc),
        ):
            rr, cc = ir + dr, ic + dc
            ok = (rr >= 0) & (rr < self.ny) & (cc >= 0) & (cc < self.nx)
            grid += np.bincount(
                rr[ok] * self.nx + cc[ok], weights=(weights * w)[ok], minlength=self.ny * self.nx
            )
        return grid.reshape(self.ny, self.nx)

    def density(
        self, xs: np.ndarray, ys: np.ndarray, weights: np.ndarray, sigma: float
    ) -> np.ndarray:
        """Gaussian-smoothed areal density (per nm²) of weighted points."""
        grid = self.splat(xs, ys, weights) / self.step**2
        # In Fourier space: as fast for a 0.3 nm blur as for a 0.05 nm one. The margin
        # around the sample keeps the periodic wrap-around out of the sample.
        ft = sfft.rfft2(grid, workers=-1)
        ft = ndimage.fourier_gaussian(ft, sigma / self.step, n=grid.shape[1])
        return sfft.irfft2(ft, s=grid.shape, workers=-1)

    def lookup(
        self, field: np.ndarray, xs: np.ndarray, ys: np.ndarray, order: int = 1
    ) -> np.ndarray:
        """Interpolate a grid field at sample positions (0 outside the grid)."""
        r, c = self.index(xs, ys)
        coords = np.stack([np.ravel(r), np.ravel(c)])
        vals = ndimage.map_coordinates(field, coords, order=order, mode="constant", cval=0.0)
        return vals.reshape(np.shape(xs))


class AtomicSample(Sample):
    """A sample made of atoms (or atomic columns) with HAADF cross-sections.

    Subclasses fill ``positions`` (N × 2, nm), ``z`` (N,), ``species`` (N, codes into
    ``species_names``) and ``cross_section`` (N, nm², HAADF), and set ``present``.
    """

    species_names: ClassVar[Tuple[str, ...]] = ()
    grid_step: float = 0.02

    positions: np.ndarray
    z: np.ndarray
    species: np.ndarray
    cross_section: np.ndarray
    present: np.ndarray

    def _init_grid(self, max_cells: int = 2200) -> None:
        size = max(self.extent[1] - self.extent[0], self.extent[3] - self.extent[2])
        self.grid = SampleGrid(self.extent, max(self.grid_step, (size + 2.0) / max_cells))
        self._cache: Dict[str, np.ndarray] = {}
        self._cache_version = -1
        self._version = 0

    def _changed(self) -> None:
        """Atoms were removed: cached fields are stale."""
        self._version += 1

    def _field(self, key: str, make: Any) -> np.ndarray:
        if self._cache_version != self._version:
            self._cache.clear()
            self._cache_version = self._version
        got = self._cache.get(key)
        if got is None:
            got = make()
            self._cache[key] = got
        return got

    def background(self, frame: ScanFrame) -> np.ndarray:
        """Smooth HAADF background of the field (contamination, support); default none."""
        return np.zeros((frame.height, frame.width))

    def haadf(self, frame: ScanFrame, probe_sigma: float) -> np.ndarray:
        xmin, xmax, ymin, ymax = frame.bounds(margin=5 * probe_sigma)
        pos = self.positions
        near = (
            self.present
            & (pos[:, 0] >= xmin)
            & (pos[:, 0] <= xmax)
            & (pos[:, 1] >= ymin)
            & (pos[:, 1] <= ymax)
        )
        px, py = frame.to_pixels(pos[near, 0], pos[near, 1])
        # peak fraction of a normalised 2-D Gaussian probe: cross-section / (2π σ²)
        amp = self.cross_section[near] / (2.0 * math.pi * probe_sigma**2)
        sigma_px = probe_sigma / frame.pixel_size
        img = render_gaussians(frame.height, frame.width, px, py, amp, sigma_px)
        return img + self.background(frame)

    def atoms(self, frame: ScanFrame) -> Optional[Dict[str, Any]]:
        px, py = frame.to_pixels(self.positions[:, 0], self.positions[:, 1])
        inside = (
            self.present
            & (px >= -0.5)
            & (px <= frame.width - 0.5)
            & (py >= -0.5)
            & (py <= frame.height - 0.5)
        )
        return {
            "xy_nm": self.positions[inside].copy(),
            "xy_px": np.stack([px[inside], py[inside]], axis=1),
            "z": self.z[inside].astype(np.int64),
            "species": self.species[inside].astype(np.int64),
            "species_names": list(self.species_names),
            "haadf_cross_section_nm2": self.cross_section[inside].copy(),
        }

    def _lookup_many(self, keys: Sequence[str], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return np.stack([self.grid.lookup(self._fields()[k], xs, ys) for k in keys], axis=-1)

    def _fields(self) -> Dict[str, np.ndarray]:
        """Named sample-frame grids (EELS weights, distance maps); subclasses build them."""
        raise NotImplementedError
