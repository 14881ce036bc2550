"""SrTiO3 viewed along [001]: Sr columns, Ti–O columns and O columns (200 kV).

A cubic perovskite (a = 0.3905 nm). In [001] projection each unit cell shows one Sr column
(corner), one Ti–O column (centre) and two pure O columns (edge centres). A column's HAADF
cross-section is the sum of its atoms' (``∝ Z**1.7``) over the slab thickness, so the
brightness ratios are Sr : TiO : O ≈ 1 : 0.47 : 0.07, as in real images where the O columns
are barely visible.

EELS: the bulk low-loss (plasmon ~29.5 eV) is delocalised; the core edges (Sr M4,5 133 eV,
Ti L2,3 456 eV, O K 532 eV, Sr L3 1940 eV) are stronger with the probe on a column of that
element (atomic-resolution EELS maps), 60 % modulated over the unit cell.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Dict

import numpy as np

from ..geometry import ScanFrame
from ..materials import MATERIALS, core_component, material_component
from .base import SIGMA_C, AtomicSample

__all__ = ["SrTiO3"]

A_LATTICE = 0.3905  # nm
_COLUMNS = (
    # (name, fractional position, Z of the heaviest atom, atoms per cell: Z list)
    ("Sr", (0.0, 0.0), 38, (38,)),
    ("TiO", (0.5, 0.5), 22, (22, 8)),
    ("O", (0.5, 0.0), 8, (8,)),
    ("O", (0.0, 0.5), 8, (8,)),
)
_MODULATION = 0.6


class SrTiO3(AtomicSample):
    """A SrTiO3 slab in [001] zone axis.

    Args:
        rng: random generator (the sample's own stream).
        size: side of the square slab, nm.
        thickness: slab thickness along the beam, nm.
        lattice_rotation: in-plane orientation of the cell, degrees.
        column_vacancy_fraction: share of columns missing atoms (their intensity drops to
            50–90 %).

    Example:
        >>> s = SrTiO3(np.random.default_rng(0), size=2.0)
        >>> sorted(set(s.species.tolist()))
        [0, 1, 2]
    """

    name = "srtio3"
    label_names = ("vacuum", "SrTiO3")
    species_names = ("Sr", "TiO", "O")
    high_tension_kv = 200.0
    default_scan: ClassVar[Dict[str, Any]] = {
        "width": 256,
        "height": 256,
        "field_of_view": 4.0,
        "dwell_time": 32e-6,
    }
    default_eels: ClassVar[Dict[str, Any]] = {
        "energy_offset": -20.0,
        "dispersion": 0.3,
        "channels": 2048,
    }
    zlp_fwhm = 0.5
    reference_feature = "a Sr column"

    def __init__(
        self,
        rng: np.random.Generator,
        size: float = 20.0,
        thickness: float = 10.0,
        lattice_rotation: float = 0.0,
        column_vacancy_fraction: float = 0.0,
    ) -> None:
        if not size > 1.0:
            raise ValueError("size must be > 1 nm")
        if not 0.5 <= thickness <= 200.0:
            raise ValueError("thickness must be in [0.5, 200] nm")
        if not 0.0 <= column_vacancy_fraction <= 0.5:
            raise ValueError("column_vacancy_fraction must be in [0, 0.5]")
        self._params = {
            "size": float(size),
            "thickness": float(thickness),
            "lattice_rotation": float(lattice_rotation),
            "column_vacancy_fraction": float(column_vacancy_fraction),
        }
        half = size / 2.0
        self.extent = (-half, half, -half, half)
        host = MATERIALS["SrTiO3"]
        self.components = (
            material_component(host),
            core_component(MATERIALS["Sr"], host, "Sr"),
            core_component(MATERIALS["Ti"], host, "Ti"),
            core_component(MATERIALS["O"], host, "O"),
        )
        n = math.ceil(half * 1.5 / A_LATTICE) + 1
        i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1))
        i, j = i.ravel().astype(float), j.ravel().astype(float)
        t = math.radians(lattice_rotation)
        c, s = math.cos(t), math.sin(t)
        cells = max(1, round(thickness / A_LATTICE))
        pos, z, species, xsec = [], [], [], []
        for code, (_name, (fx, fy), heavy, zs) in enumerate(_COLUMNS):
            x = A_LATTICE * (i + fx)
            y = A_LATTICE * (j + fy)
            rx, ry = c * x - s * y, s * x + c * y
            keep = (np.abs(rx) <= half) & (np.abs(ry) <= half)
            pos.append(np.stack([rx[keep], ry[keep]], axis=1))
            z.append(np.full(keep.sum(), heavy))
            species.append(np.full(keep.sum(), min(code, 2)))
            per_cell = sum(SIGMA_C * (zz / 6.0) ** 1.7 for zz in zs)
            xsec.append(np.full(keep.sum(), per_cell * cells))
        self.positions = np.concatenate(pos)
        self.z = np.concatenate(z).astype(np.int64)
        self.species = np.concatenate(species).astype(np.int8)
        self.cross_section = np.concatenate(xsec)
        if column_vacancy_fraction > 0:
            hit = rng.random(len(self.z)) < column_vacancy_fraction
            self.cross_section[hit] *= rng.uniform(0.5, 0.9, size=int(hit.sum()))
        self.present = np.ones(len(self.z), dtype=bool)
        self._cells = cells
        self._init_grid()

    def parameters(self) -> Dict[str, Any]:
        return dict(self._params)

    def reference_fraction(self, probe_sigma: float) -> float:
        sr = SIGMA_C * (38 / 6.0) ** 1.7 * self._cells
        return sr / (2.0 * math.pi * probe_sigma**2)

    # ------------------------------------------------------------------ EELS

    def _fields(self) -> Dict[str, np.ndarray]:
        return {k: self._field(k, lambda k=k: self._make(k)) for k in ("slab", "Sr", "Ti", "O")}

    def _make(self, key: str) -> np.ndarray:
        g = self.grid
        if key == "slab":
            # 1 inside the slab, falling off over ~0.3 nm at its edges
            xs = g.x0 + g.step * np.arange(g.nx)
            ys = g.y0 + g.step * np.arange(g.ny)
            x0, x1, y0, y1 = self.extent
            fx = _soft_box(xs, x0, x1, 0.3)
            fy = _soft_box(ys, y0, y1, 0.3)
            return fy[:, None] * fx[None, :]
        code = {"Sr": [0], "Ti": [1], "O": [2]}[key]
        sel = np.isin(self.species, code) & self.present
        per_area = {"Sr": 1.0, "Ti": 1.0, "O": 2.0}[key] / A_LATTICE**2
        dens = g.density(*self.positions[sel].T, np.ones(int(sel.sum())), 0.07) / per_area
        slab = self._field("slab", lambda: self._make("slab"))
        return slab * ((1.0 - _MODULATION) + _MODULATION * dens)

    def tau(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        slab, sr, ti, o = self._lookup_many(["slab", "Sr", "Ti", "O"], xs, ys).T
        host = self._params["thickness"] / MATERIALS["SrTiO3"].mean_free_path
        k = [c.strength for c in self.components[1:]]
        return np.stack([host * slab, host * sr * k[0], host * ti * k[1], host * o * k[2]], axis=-1)

    # ------------------------------------------------------------------ truth

    def labels(self, frame: ScanFrame) -> np.ndarray:
        xs, ys = frame.pixel_grid()
        x0, x1, y0, y1 = self.extent
        inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
        return inside.astype(np.uint8)

    def thickness(self, frame: ScanFrame) -> np.ndarray:
        return (self.labels(frame) * self._params["thickness"]).astype(np.float32)


def _soft_box(v: np.ndarray, lo: float, hi: float, width: float) -> np.ndarray:
    return 0.5 * (np.tanh((v - lo) / width * 3.0) - np.tanh((v - hi) / width * 3.0))
