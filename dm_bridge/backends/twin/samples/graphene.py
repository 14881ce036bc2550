"""Graphene with Si dopants, vacancies, holes and an optional grain boundary (60 kV).

The second paper's model system: a honeycomb lattice (a = 0.246 nm, C–C 0.142 nm) on which
the beam knocks atoms out. HAADF contrast comes from each atom's cross-section
(``∝ Z**1.7``: a Si atom is ~4.2× a C atom) plus a patchy layer of amorphous hydrocarbon
contamination (~1 nm), which is what makes real graphene images noisy between atoms. The
default field (256×256 pixels over 2 nm, a Si atom near the middle) matches the real
``G-Si-2nm`` image.

Beam damage: each scan gives every atom in the field a knock-out probability
``1 - exp(-σ · dose)`` (dose in electrons/nm²); atoms with fewer than three neighbours (edges
of holes and vacancies) are ``edge_factor`` times easier to remove, so holes grow under the
beam as in the real material.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Dict, Optional, Tuple

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..geometry import ScanFrame
from ..materials import MATERIALS, core_component, material_component
from .base import SIGMA_C, AtomicSample

__all__ = ["Graphene"]

A_LATTICE = 0.246  # nm
LAYER_THICKNESS = 0.335  # nm
AREAL_DENSITY = 4.0 / (math.sqrt(3.0) * A_LATTICE**2)  # atoms per nm², 38.2


class Graphene(AtomicSample):
    """Monolayer graphene with defects.

    Args:
        rng: random generator (the sample's own stream).
        size: side of the square sample, nm (vacuum beyond).
        lattice_rotation: orientation of the lattice, degrees.
        si_fraction: share of lattice sites holding a Si atom.
        si_near_centre: put one Si atom within 0.5 nm of the sample centre (as in the real
            ``G-Si-2nm`` image) so the default field shows one.
        vacancy_fraction: share of sites left empty (single vacancies).
        hole_density: holes per 100 nm² (kept 1.5 nm clear of the centre).
        hole_radius: ``(min, max)`` hole radius, nm.
        grain_boundary_angle: misorientation of a second grain for ``x > 0``, degrees; None
            for a single crystal.
        contamination: mean thickness of amorphous carbon contamination on the lattice, nm.
        damage_cross_section: knock-out cross-section of a fully bonded atom, nm².
        edge_factor: how much easier an under-coordinated atom is knocked out.

    Example:
        >>> g = Graphene(np.random.default_rng(0), size=4.0, hole_density=0.0)
        >>> int(g.present.sum()) > 500
        True
    """

    name = "graphene"
    label_names = ("vacuum", "graphene", "grain_boundary", "vacancy", "dopant")
    species_names = ("C", "Si")
    high_tension_kv = 60.0
    default_scan: ClassVar[Dict[str, Any]] = {
        "width": 256,
        "height": 256,
        "field_of_view": 2.0,
        "dwell_time": 32e-6,
    }
    default_eels: ClassVar[Dict[str, Any]] = {
        "energy_offset": -20.0,
        "dispersion": 0.25,
        "channels": 2048,
    }
    zlp_fwhm = 0.5
    reference_feature = "a carbon atom"

    def __init__(
        self,
        rng: np.random.Generator,
        size: float = 20.0,
        lattice_rotation: float = 7.0,
        si_fraction: float = 0.002,
        si_near_centre: bool = True,
        vacancy_fraction: float = 0.001,
        hole_density: float = 1.0,
        hole_radius: Tuple[float, float] = (0.5, 2.0),
        grain_boundary_angle: Optional[float] = None,
        contamination: float = 1.0,
        damage_cross_section: float = 1e-11,
        edge_factor: float = 50.0,
    ) -> None:
        _check(size > 1.0, "size must be > 1 nm")
        _check(0.0 <= si_fraction <= 0.5, "si_fraction must be in [0, 0.5]")
        _check(0.0 <= vacancy_fraction <= 0.2, "vacancy_fraction must be in [0, 0.2]")
        _check(hole_density >= 0.0, "hole_density must be >= 0")
        _check(0.0 < hole_radius[0] <= hole_radius[1], "hole_radius must be (min, max) > 0")
        _check(contamination >= 0.0, "contamination must be >= 0 nm")
        _check(damage_cross_section >= 0.0 and edge_factor >= 1.0, "bad damage parameters")
        self._params = {
            "size": float(size),
            "lattice_rotation": float(lattice_rotation),
            "si_fraction": float(si_fraction),
            "si_near_centre": bool(si_near_centre),
            "vacancy_fraction": float(vacancy_fraction),
            "hole_density": float(hole_density),
            "hole_radius": [float(hole_radius[0]), float(hole_radius[1])],
            "grain_boundary_angle": None
            if grain_boundary_angle is None
            else float(grain_boundary_angle),
            "contamination": float(contamination),
            "damage_cross_section": float(damage_cross_section),
            "edge_factor": float(edge_factor),
        }
        half = size / 2.0
        self.extent = (-half, half, -half, half)
        self.components = (
            material_component(MATERIALS["graphene"]),
            material_component(MATERIALS["amorphous_carbon"], "contamination"),
            core_component(MATERIALS["Si_dopant"], MATERIALS["graphene"], "Si"),
        )
        pos = _lattice(half, lattice_rotation)
        if grain_boundary_angle is not None:
            other = _lattice(half, lattice_rotation + grain_boundary_angle)
            pos, other = pos[pos[:, 0] < 0], other[other[:, 0] >= 0]
            d, _ = cKDTree(pos).query(other, distance_upper_bound=0.12)
            pos = np.concatenate([pos, other[~np.isfinite(d)]])
        self.holes = _holes(rng, size, hole_density, hole_radius)
        for cx, cy, r0, harm in self.holes:
            ang = np.arctan2(pos[:, 1] - cy, pos[:, 0] - cx)
            rad = r0 * (1.0 + sum(a * np.cos(k * ang + p) for k, a, p in harm))
            pos = pos[np.hypot(pos[:, 0] - cx, pos[:, 1] - cy) > rad]
        pos = _drop_dangling(pos)
        n_vac = round(vacancy_fraction * len(pos))
        vac = rng.choice(len(pos), size=n_vac, replace=False) if n_vac else np.zeros(0, int)
        self.initial_vacancies = pos[vac]
        pos = np.delete(pos, vac, axis=0)
        z = np.full(len(pos), 6, dtype=np.int64)
        n_si = round(si_fraction * len(pos))
        if n_si:
            z[rng.choice(len(pos), size=n_si, replace=False)] = 14
        if si_near_centre and len(pos):
            target = rng.uniform(-0.35, 0.35, size=2)
            z[int(np.argmin(np.hypot(*(pos - target).T)))] = 14
        self.positions = pos
        self.z = z
        self.species = (z == 14).astype(np.int8)
        self.cross_section = SIGMA_C * (z / 6.0) ** 1.7
        self.present = np.ones(len(pos), dtype=bool)
        pairs = cKDTree(pos).query_pairs(0.16, output_type="ndarray")
        self._pairs = pairs.reshape(-1, 2)
        self._knocked = 0
        self._init_grid()
        self._patch = self._contamination_patches(rng)

    # ------------------------------------------------------------------ truth and params

    def parameters(self) -> Dict[str, Any]:
        return dict(self._params)

    def reference_fraction(self, probe_sigma: float) -> float:
        return SIGMA_C / (2.0 * math.pi * probe_sigma**2)

    @property
    def knocked_out(self) -> int:
        return self._knocked

    def truth_extras(self, frame: ScanFrame) -> Dict[str, Any]:
        px, py = frame.to_pixels(*self._vacancy_sites().T)
        return {
            "vacancies_px": np.stack([px, py], axis=1),
            "holes_nm": np.array([[h[0], h[1], h[2]] for h in self.holes]).reshape(-1, 3),
        }

    # ------------------------------------------------------------------ fields

    def _contamination_patches(self, rng: np.random.Generator) -> np.ndarray:
        """Patchy thickness factor (mean ~1, 0.3–1.7) varying over ~1 nm."""
        noise = rng.standard_normal(self.grid.shape)
        smooth = np.fft.irfft2(
            ndimage.fourier_gaussian(np.fft.rfft2(noise), 0.6 / self.grid.step, n=noise.shape[1]),
            s=noise.shape,
        )
        smooth /= smooth.std() or 1.0
        return np.clip(1.0 + 0.45 * smooth, 0.2, 2.0)

    def _vacancy_sites(self) -> np.ndarray:
        return np.concatenate([self.initial_vacancies, self.positions[~self.present]])

    def _fields(self) -> Dict[str, np.ndarray]:
        return {k: self._field(k, lambda k=k: self._make(k)) for k in ("cov", "si", "cont")}

    def _make(self, key: str) -> np.ndarray:
        p = self.positions[self.present]
        if key == "cov":
            # plasmon excitation is delocalised over a few Å
            return self.grid.density(*p.T, np.ones(len(p)), 0.25) / AREAL_DENSITY
        if key == "si":
            si = self.positions[self.present & (self.z == 14)]
            return self.grid.density(*si.T, np.ones(len(si)), 0.08) / AREAL_DENSITY
        cov = self._field("cov", lambda: self._make("cov"))
        return self._params["contamination"] * self._patch * np.clip(cov, 0.0, 1.0)

    def tau(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        cov, si, cont = (self._lookup_many(["cov", "si", "cont"], xs, ys)).T
        layer = LAYER_THICKNESS / MATERIALS["graphene"].mean_free_path
        kappa_si = self.components[2].strength
        return np.stack(
            [
                layer * cov,
                cont / MATERIALS["amorphous_carbon"].mean_free_path,
                layer * si * kappa_si,
            ],
            axis=-1,
        )

    def background(self, frame: ScanFrame) -> np.ndarray:
        xs, ys = frame.pixel_grid()
        cont = self.grid.lookup(self._fields()["cont"], xs, ys)
        return cont * MATERIALS["amorphous_carbon"].haadf_power(SIGMA_C)

    # ------------------------------------------------------------------ labels, thickness

    def _label_grid(self) -> np.ndarray:
        def make() -> np.ndarray:
            g = self.grid
            step = g.step

            def dist_to(points: np.ndarray) -> np.ndarray:
                occ = np.zeros(g.shape, dtype=bool)
                if len(points):
                    r, c = g.index(*points.T)
                    r = np.clip(np.round(r).astype(int), 0, g.ny - 1)
                    c = np.clip(np.round(c).astype(int), 0, g.nx - 1)
                    occ[r, c] = True
                else:
                    return np.full(g.shape, np.inf)
                return ndimage.distance_transform_edt(~occ) * step

            atoms = dist_to(self.positions[self.present])
            lab = np.ones(g.shape, dtype=np.uint8)
            gb = self._params["grain_boundary_angle"]
            if gb is not None:
                xs = g.x0 + step * np.arange(g.nx)
                lab[:, np.abs(xs) < 0.4] = 2
            lab[dist_to(self._vacancy_sites()) < 0.15] = 3
            lab[dist_to(self.positions[self.present & (self.z == 14)]) < 0.15] = 4
            lab[atoms > 0.2] = 0
            return lab

        return self._field("labels", make)

    def labels(self, frame: ScanFrame) -> np.ndarray:
        xs, ys = frame.pixel_grid()
        return self.grid.lookup(self._label_grid(), xs, ys, order=0).astype(np.uint8)

    def thickness(self, frame: ScanFrame) -> np.ndarray:
        xs, ys = frame.pixel_grid()
        lab = self.grid.lookup(self._label_grid(), xs, ys, order=0)
        cont = self.grid.lookup(self._fields()["cont"], xs, ys)
        return ((lab > 0) * LAYER_THICKNESS + cont).astype(np.float32)

    # ------------------------------------------------------------------ damage

    def apply_dose(
        self, frame: ScanFrame, electrons_per_nm2: float, rng: np.random.Generator
    ) -> int:
        sigma = self._params["damage_cross_section"]
        if sigma <= 0 or electrons_per_nm2 <= 0:
            return 0
        px, py = frame.to_pixels(*self.positions.T)
        hit = (
            self.present
            & (px >= -0.5)
            & (px <= frame.width - 0.5)
            & (py >= -0.5)
            & (py <= frame.height - 0.5)
        )
        idx = np.nonzero(hit)[0]
        if len(idx) == 0:
            return 0
        both = self.present[self._pairs[:, 0]] & self.present[self._pairs[:, 1]]
        coord = np.bincount(self._pairs[both].ravel(), minlength=len(self.positions))
        factor = np.where(coord[idx] < 3, self._params["edge_factor"], 1.0)
        p = -np.expm1(-sigma * factor * electrons_per_nm2)
        out = idx[rng.random(len(idx)) < p]
        if len(out):
            self.present[out] = False
            self._knocked += len(out)
            self._changed()
        return len(out)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _lattice(half: float, rotation: float) -> np.ndarray:
    """Honeycomb sites covering the square ``|x|, |y| <= half`` (nm)."""
    a = A_LATTICE
    n = math.ceil(half * 2.0 / a) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1))
    i, j = i.ravel(), j.ravel()
    base_x = a * (i + 0.5 * j)
    base_y = a * (math.sqrt(3.0) / 2.0) * j
    xs = np.concatenate([base_x, base_x + a / 2.0])
    ys = np.concatenate([base_y, base_y + a / (2.0 * math.sqrt(3.0))])
    t = math.radians(rotation)
    c, s = math.cos(t), math.sin(t)
    rx, ry = c * xs - s * ys, s * xs + c * ys
    keep = (np.abs(rx) <= half) & (np.abs(ry) <= half)
    return np.stack([rx[keep], ry[keep]], axis=1)


def _holes(
    rng: np.random.Generator, size: float, density: float, radius: Tuple[float, float]
) -> list:
    n = int(rng.poisson(density * size * size / 100.0)) if density > 0 else 0
    holes = []
    half = size / 2.0
    for _ in range(n):
        for _attempt in range(50):
            r0 = rng.uniform(*radius)
            cx, cy = rng.uniform(-half, half, size=2)
            if math.hypot(cx, cy) > r0 * 1.3 + 1.5:
                break
        else:
            continue
        harm = [(k, rng.uniform(0.0, 0.12), rng.uniform(0, 2 * math.pi)) for k in (2, 3, 5)]
        holes.append((float(cx), float(cy), float(r0), harm))
    return holes


def _drop_dangling(pos: np.ndarray) -> np.ndarray:
    """Remove atoms with fewer than two neighbours (they would not survive)."""
    for _ in range(10):
        if len(pos) == 0:
            return pos
        counts = cKDTree(pos).query_ball_point(pos, 0.16, return_length=True) - 1
        keep = counts >= 2
        if keep.all():
            return pos
        pos = pos[keep]
    return pos
