"""Au nanoparticles and Ag nanoplates on lacey carbon (the first paper's DKL sample, Fig. 4).

Nanoscale field (default 128×128 pixels over 300 nm). The lacey carbon film is a network of
strands around the zero contours of a smooth random field (holes between them); Au particles
are spheres (radius ~4–35 nm, log-normal), Ag nanoplates thin triangles or hexagons lying
flat. HAADF is mass-thickness contrast as for the nanowire.

EELS, and the DKL target: the volume-plasmon regions of carbon (24 eV), Ag (17 and 25 eV)
and Au (25.5 eV, broad) lie at similar energies; gold has by far the largest t/λ (thick
spheres, short mean free path), so the counts in the **20–30 eV band** are highest on the
gold particles (first paper: "gold has the largest response in this energy range (largest
relative thickness)"). Localized surface plasmons add the particles' own low-energy peaks:
Au 2.4 eV around each sphere, Ag 1.6/2.9 eV concentrated at plate edges and corners (they
also appear a few tens of nm outside the particles, as aloof excitations).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Dict, List, Optional, Tuple

import numpy as np
from scipy import ndimage, special

from ..geometry import ScanFrame
from ..materials import MATERIALS, material_component, peak_component
from .base import SIGMA_C, Sample, SampleGrid

__all__ = ["Nanoparticles"]

_AU_DECAY = 20.0  # nm, reach of the Au surface plasmon outside a sphere
_AG_DECAY = 15.0  # nm, reach of the Ag edge modes
_BROADENING = 1.0  # nm, 1σ spread of the probe in the specimen (softens edges for EELS)


class Nanoparticles(Sample):
    """Au spheres and Ag nanoplates on a lacey carbon film.

    Args:
        rng: random generator (the sample's own stream).
        size: side of the square sample area, nm.
        n_gold: number of Au particles.
        gold_radius: median Au radius, nm (log-normal, spread 0.35, clipped to 4–35 nm).
        n_silver: number of Ag nanoplates.
        plate_edge: ``(min, max)`` plate edge length, nm.
        plate_thickness: ``(min, max)`` plate thickness, nm.
        carbon_thickness: thickness of the carbon strands at their middle, nm.
        lace_scale: typical size of the holes in the film, nm.
        lsp_strength: weight of the surface plasmons right at a particle.

    Example:
        >>> s = Nanoparticles(np.random.default_rng(0))
        >>> len(s.gold), len(s.silver)
        (20, 5)
    """

    name = "nanoparticles"
    label_names = ("vacuum", "carbon", "Au", "Ag")
    high_tension_kv = 200.0
    default_scan: ClassVar[Dict[str, Any]] = {
        "width": 128,
        "height": 128,
        "field_of_view": 300.0,
        "dwell_time": 32e-6,
    }
    default_eels: ClassVar[Dict[str, Any]] = {
        "energy_offset": -5.0,
        "dispersion": 0.05,
        "channels": 2048,
    }
    zlp_fwhm = 0.15
    reference_feature = "the middle of a carbon strand"

    def __init__(
        self,
        rng: np.random.Generator,
        size: float = 600.0,
        n_gold: int = 20,
        gold_radius: float = 12.0,
        n_silver: int = 5,
        plate_edge: Tuple[float, float] = (40.0, 110.0),
        plate_thickness: Tuple[float, float] = (8.0, 15.0),
        carbon_thickness: float = 25.0,
        lace_scale: float = 120.0,
        lsp_strength: float = 0.08,
    ) -> None:
        if not size >= 100.0:
            raise ValueError("size must be >= 100 nm")
        if not (0 <= n_gold <= 500 and 0 <= n_silver <= 100):
            raise ValueError("n_gold must be in [0, 500] and n_silver in [0, 100]")
        if not 2.0 <= gold_radius <= 50.0:
            raise ValueError("gold_radius must be in [2, 50] nm")
        if not (
            0 < plate_edge[0] <= plate_edge[1] and 0 < plate_thickness[0] <= plate_thickness[1]
        ):
            raise ValueError("plate_edge and plate_thickness must be (min, max) > 0")
        if not (0 < carbon_thickness <= 200 and 10 <= lace_scale <= size):
            raise ValueError("carbon_thickness must be in (0, 200] nm, lace_scale in [10, size]")
        self._params = {
            "size": float(size),
            "n_gold": int(n_gold),
            "gold_radius": float(gold_radius),
            "n_silver": int(n_silver),
            "plate_edge": [float(v) for v in plate_edge],
            "plate_thickness": [float(v) for v in plate_thickness],
            "carbon_thickness": float(carbon_thickness),
            "lace_scale": float(lace_scale),
            "lsp_strength": float(lsp_strength),
        }
        half = size / 2.0
        self.extent = (-half, half, -half, half)
        self.components = (
            material_component(MATERIALS["amorphous_carbon"], "carbon"),
            material_component(MATERIALS["Au"]),
            material_component(MATERIALS["Ag"]),
            peak_component(MATERIALS["Au LSP"], "Au LSP"),
            peak_component(MATERIALS["Ag LSP"], "Ag LSP"),
        )
        self._mu = {
            k: MATERIALS[m].haadf_power(SIGMA_C)
            for k, m in (("C", "amorphous_carbon"), ("Au", "Au"), ("Ag", "Ag"))
        }
        self.grid = SampleGrid(self.extent, step=1.0, margin=10.0)
        noise = rng.standard_normal(self.grid.shape)
        field = ndimage.gaussian_filter(noise, lace_scale / 5.0, mode="wrap")
        self._lace = field / (field.std() or 1.0)
        self.gold: List[Tuple[float, float, float]] = []
        self.silver: List[Dict[str, Any]] = []
        self._place(rng)

    def parameters(self) -> Dict[str, Any]:
        return dict(self._params)

    # ------------------------------------------------------------------ construction

    def _carbon(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Carbon thickness (nm): strands where the random field is near zero."""
        f = self.grid.lookup(self._lace, xs, ys)
        x0, x1, y0, y1 = self.extent
        inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
        w = 0.6
        return self._params["carbon_thickness"] * np.clip(1.0 - (f / w) ** 2, 0.0, None) * inside

    def _place(self, rng: np.random.Generator) -> None:
        half = self._params["size"] / 2.0
        taken: List[Tuple[float, float, float]] = []

        def free_spot(radius: float, central: bool) -> Tuple[float, float]:
            # The first particles go near the middle, so the default field shows them.
            for attempt in range(800):
                lim = 60.0 if central and attempt < 400 else half - radius
                x, y = rng.uniform(-lim, lim, size=2)
                on_carbon = self._carbon(np.array([x]), np.array([y]))[0] > 0
                clear = all(math.hypot(x - a, y - b) > radius + r + 3.0 for a, b, r in taken)
                if on_carbon and clear:
                    return float(x), float(y)
            raise ValueError("could not place the particles apart; lower n_gold / n_silver")

        for i in range(self._params["n_silver"]):
            edge = rng.uniform(*self._params["plate_edge"])
            sides = 3 if rng.random() < 0.7 else 6
            circ = edge / (2.0 * math.sin(math.pi / sides))
            cx, cy = free_spot(circ, central=i == 0)
            taken.append((cx, cy, circ))
            self.silver.append(
                {
                    "centre": (cx, cy),
                    "sides": sides,
                    "edge": float(edge),
                    "rotation": float(rng.uniform(0, 360)),
                    "thickness": float(rng.uniform(*self._params["plate_thickness"])),
                }
            )
        for i in range(self._params["n_gold"]):
            r = float(
                np.clip(self._params["gold_radius"] * math.exp(0.35 * rng.standard_normal()), 4, 35)
            )
            cx, cy = free_spot(r, central=i < 3)
            taken.append((cx, cy, r))
            self.gold.append((cx, cy, r))

    # ------------------------------------------------------------------ fields at points

    def _particles(
        self,
        xs: np.ndarray,
        ys: np.ndarray,
        with_lsp: bool,
        gold: Optional[List[Tuple[float, float, float]]] = None,
        silver: Optional[List[Dict[str, Any]]] = None,
    ) -> Dict[str, np.ndarray]:
        """Au and Ag thickness (nm) and surface-plasmon weights at arbitrary points."""
        out = {k: np.zeros(np.shape(xs)) for k in ("Au", "Ag", "Au LSP", "Ag LSP")}
        strength = self._params["lsp_strength"]
        gold = self.gold if gold is None else gold
        silver = self.silver if silver is None else silver
        for cx, cy, r in gold:
            reach = r + (5 * _AU_DECAY if with_lsp else 0.5)
            sel = (np.abs(xs - cx) < reach) & (np.abs(ys - cy) < reach)
            if not sel.any():
                continue
            d2 = (xs[sel] - cx) ** 2 + (ys[sel] - cy) ** 2
            out["Au"][sel] += 2.0 * np.sqrt(np.clip(r * r - d2, 0.0, None))
            if with_lsp:
                d = np.sqrt(d2) - r
                w = np.where(d > 0, np.exp(-d / _AU_DECAY), 0.6 + 0.4 * np.exp(d / 5.0))
                out["Au LSP"][sel] += strength * min(1.0, r / 15.0) * w
        for plate in silver:
            cx, cy = plate["centre"]
            n = plate["sides"]
            circ = plate["edge"] / (2.0 * math.sin(math.pi / n))
            reach = circ + (5 * _AG_DECAY if with_lsp else 0.5)
            sel = (np.abs(xs - cx) < reach) & (np.abs(ys - cy) < reach)
            if not sel.any():
                continue
            px, py = xs[sel] - cx, ys[sel] - cy
            apothem = circ * math.cos(math.pi / n)
            rot = math.radians(plate["rotation"])
            normals = [rot + (2 * k + 1) * math.pi / n for k in range(n)]
            proj = np.max([px * math.cos(t) + py * math.sin(t) for t in normals], axis=0)
            depth = apothem - proj  # > 0 inside, distance to the nearest edge line
            if with_lsp:
                # EELS: the plate's edge is softened by the probe's spread in the specimen
                share = 0.5 * (1.0 + special.erf(depth / (math.sqrt(2.0) * _BROADENING)))
            else:
                share = (depth >= 0).astype(np.float64)
            out["Ag"][sel] += plate["thickness"] * share
            if with_lsp:
                corners = [rot + 2 * k * math.pi / n for k in range(n)]
                dc = np.min(
                    [np.hypot(px - circ * math.cos(t), py - circ * math.sin(t)) for t in corners],
                    axis=0,
                )
                w = np.exp(-np.abs(depth) / _AG_DECAY) * (1.0 + 0.8 * np.exp(-dc / 10.0))
                out["Ag LSP"][sel] += strength * w
        return out

    def tau(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        carbon = self._carbon(xs, ys)
        p = self._particles(xs, ys, with_lsp=True)
        return np.stack(
            [
                carbon / MATERIALS["amorphous_carbon"].mean_free_path,
                p["Au"] / MATERIALS["Au"].mean_free_path,
                p["Ag"] / MATERIALS["Ag"].mean_free_path,
                p["Au LSP"],
                p["Ag LSP"],
            ],
            axis=-1,
        )

    # ------------------------------------------------------------------ images and truth

    def _thickness_maps(self, frame: ScanFrame) -> Dict[str, np.ndarray]:
        xs, ys = frame.pixel_grid()
        maps = {"C": self._carbon(xs, ys), "Au": np.zeros(xs.shape), "Ag": np.zeros(xs.shape)}
        # each particle touches only its own pixel box: cheap at any image size
        for kind, items in (("Au", self.gold), ("Ag", self.silver)):
            for item in items:
                if kind == "Au":
                    cx, cy, reach = item
                else:
                    cx, cy = item["centre"]
                    reach = item["edge"] / (2.0 * math.sin(math.pi / item["sides"]))
                px, py = frame.to_pixels(np.array([cx]), np.array([cy]))
                rp = reach / frame.pixel_size + 2
                c0, c1 = int(max(0, px[0] - rp)), int(min(frame.width, px[0] + rp + 1))
                r0, r1 = int(max(0, py[0] - rp)), int(min(frame.height, py[0] + rp + 1))
                if c0 >= c1 or r0 >= r1:
                    continue
                sub = (slice(r0, r1), slice(c0, c1))
                one = (
                    self._particles(xs[sub], ys[sub], False, gold=[item], silver=[])
                    if kind == "Au"
                    else self._particles(xs[sub], ys[sub], False, gold=[], silver=[item])
                )
                maps[kind][sub] += one[kind]
        return maps

    def haadf(self, frame: ScanFrame, probe_sigma: float) -> np.ndarray:
        t = self._thickness_maps(frame)
        img = -np.expm1(
            -(self._mu["C"] * t["C"] + self._mu["Au"] * t["Au"] + self._mu["Ag"] * t["Ag"])
        )
        sigma_px = probe_sigma / frame.pixel_size
        if sigma_px > 0.3:
            img = ndimage.gaussian_filter(img, sigma_px, mode="nearest")
        return img

    def reference_fraction(self, probe_sigma: float) -> float:
        return float(-math.expm1(-self._mu["C"] * self._params["carbon_thickness"]))

    def labels(self, frame: ScanFrame) -> np.ndarray:
        t = self._thickness_maps(frame)
        lab = np.zeros(t["C"].shape, dtype=np.uint8)
        lab[t["C"] > 0] = 1
        lab[t["Au"] > 0] = 2
        lab[t["Ag"] > 0] = 3
        return lab

    def thickness(self, frame: ScanFrame) -> np.ndarray:
        t = self._thickness_maps(frame)
        return (t["C"] + t["Au"] + t["Ag"]).astype(np.float32)

    def truth_extras(self, frame: ScanFrame) -> Dict[str, Any]:
        gold = np.array(self.gold, dtype=np.float64).reshape(-1, 3)
        gx, gy = frame.to_pixels(gold[:, 0], gold[:, 1])
        silver = np.array(
            [
                [
                    p["centre"][0],
                    p["centre"][1],
                    p["edge"],
                    p["sides"],
                    p["rotation"],
                    p["thickness"],
                ]
                for p in self.silver
            ],
            dtype=np.float64,
        ).reshape(-1, 6)
        sx, sy = frame.to_pixels(silver[:, 0], silver[:, 1])
        return {
            "gold_nm": gold,
            "gold_px": np.stack([gx, gy, gold[:, 2] / frame.pixel_size], axis=1),
            "silver_nm": silver,
            "silver_px": np.stack([sx, sy], axis=1),
            "gold_columns": ["x", "y", "radius"],
            "silver_columns": ["x", "y", "edge", "sides", "rotation_deg", "thickness"],
        }
