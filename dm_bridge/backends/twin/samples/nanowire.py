"""A GaAs nanowire with its Au catalyst cap (the first paper's edge-filter sample, Fig. 2).

Nanoscale field (default 128×128 pixels over 200 nm): atoms are not resolved, so the HAADF
image is mass-thickness Z-contrast, ``1 - exp(-Σ μ_m t_m)`` with ``μ`` from each material's
atom density and ``Z**1.7``: the Au cap is ~6× brighter than the wire.

Geometry (sample frame, nm): the wire is a hexagonal prism (circumradius ``wire_radius``)
whose axis leaves the interface at ``interface_centre`` in direction ``axis_angle`` (0° =
down the image). The Au particle is a sphere of radius ``au_radius`` truncated by the growth
interface, on which it meets the wire's full width. The interface is the plane across the
axis; its region (``interface_width`` wide) is labelled explicitly because the edge workflow
is scored on it, and it carries an EELS peak (10.5 eV) found in neither bulk.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Dict, Tuple

import numpy as np
from scipy import ndimage, special

from ..geometry import ScanFrame
from ..materials import MATERIALS, material_component, peak_component
from .base import SIGMA_C, Sample

__all__ = ["Nanowire"]


class Nanowire(Sample):
    """GaAs nanowire capped by a Au particle.

    Args:
        rng: random generator (the sample's own stream).
        size: side of the square sample area, nm (the wire runs out of it).
        wire_radius: circumradius of the hexagonal wire, nm.
        au_radius: radius of the Au sphere, nm (>= ``wire_radius``).
        axis_angle: direction of the wire axis from the interface, degrees (0 = down).
        interface_centre: ``(x, y)`` of the interface centre, nm.
        interface_width: FWHM of the interface region, nm (a few nm).
        interface_strength: t/λ-like weight of the interface peak at the interface centre.
        texture: relative thickness modulation of the wire (diameter fluctuations).
        beam_broadening: how far (nm, 1σ) a spectrum sees around the beam position across
            the GaAs/Au boundary (probe spreading in the specimen).

    Example:
        >>> w = Nanowire(np.random.default_rng(0))
        >>> w.tau(np.array([0.0]), np.array([20.0])).shape
        (1, 3)
    """

    name = "nanowire"
    label_names = ("vacuum", "GaAs", "Au", "interface")
    high_tension_kv = 200.0
    default_scan: ClassVar[Dict[str, Any]] = {
        "width": 128,
        "height": 128,
        "field_of_view": 200.0,
        "dwell_time": 32e-6,
    }
    default_eels: ClassVar[Dict[str, Any]] = {
        "energy_offset": -10.0,
        "dispersion": 0.05,
        "channels": 2048,
    }
    zlp_fwhm = 0.3
    reference_feature = "the middle of the GaAs wire"

    def __init__(
        self,
        rng: np.random.Generator,
        size: float = 1000.0,
        wire_radius: float = 30.0,
        au_radius: float = 33.0,
        axis_angle: float = 10.0,
        interface_centre: Tuple[float, float] = (0.0, -20.0),
        interface_width: float = 3.0,
        interface_strength: float = 0.15,
        texture: float = 0.03,
        beam_broadening: float = 1.0,
    ) -> None:
        if not size > 10.0:
            raise ValueError("size must be > 10 nm")
        if not 2.0 <= wire_radius <= size / 2:
            raise ValueError("wire_radius must be in [2, size/2] nm")
        if not au_radius >= wire_radius:
            raise ValueError("au_radius must be >= wire_radius (the cap covers the wire end)")
        if not 0.2 <= interface_width <= 20.0:
            raise ValueError("interface_width must be in [0.2, 20] nm")
        if not 0.0 <= beam_broadening <= 20.0:
            raise ValueError("beam_broadening must be in [0, 20] nm")
        if not 0.0 <= interface_strength <= 2.0 or not 0.0 <= texture <= 0.3:
            raise ValueError("interface_strength must be in [0, 2] and texture in [0, 0.3]")
        self._params = {
            "size": float(size),
            "wire_radius": float(wire_radius),
            "au_radius": float(au_radius),
            "axis_angle": float(axis_angle),
            "interface_centre": [float(interface_centre[0]), float(interface_centre[1])],
            "interface_width": float(interface_width),
            "interface_strength": float(interface_strength),
            "texture": float(texture),
            "beam_broadening": float(beam_broadening),
        }
        half = size / 2.0
        self.extent = (-half, half, -half, half)
        self.components = (
            material_component(MATERIALS["GaAs"]),
            material_component(MATERIALS["Au"]),
            peak_component(MATERIALS["GaAs/Au interface"], "interface"),
        )
        self._cap_offset = math.sqrt(au_radius**2 - wire_radius**2)
        # diameter fluctuations along the wire: a few random long waves
        self._modes = [
            (rng.uniform(2 * math.pi / 120.0, 2 * math.pi / 25.0), rng.uniform(0, 2 * math.pi))
            for _ in range(4)
        ]
        self._mu = {
            "GaAs": MATERIALS["GaAs"].haadf_power(SIGMA_C),
            "Au": MATERIALS["Au"].haadf_power(SIGMA_C),
        }

    def parameters(self) -> Dict[str, Any]:
        return dict(self._params)

    # ------------------------------------------------------------------ geometry

    def _local(self, xs: np.ndarray, ys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(lateral, along-axis) coordinates; along > 0 is the wire, < 0 the cap."""
        t = math.radians(self._params["axis_angle"])
        cx, cy = self._params["interface_centre"]
        dx, dy = np.asarray(xs) - cx, np.asarray(ys) - cy
        lateral = math.cos(t) * dx + math.sin(t) * dy
        along = -math.sin(t) * dx + math.cos(t) * dy
        return lateral, along

    def _inside(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        x0, x1, y0, y1 = self.extent
        return (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)

    def _thicknesses(
        self, xs: np.ndarray, ys: np.ndarray, blur: float = 0.0
    ) -> Tuple[np.ndarray, np.ndarray]:
        """GaAs and Au thickness along the beam, nm.

        ``blur`` (nm) softens the GaAs/Au boundary for EELS: the probe spreads in the
        specimen (beam broadening, delocalisation), so a spectrum near the interface sees
        both materials and spectra change smoothly across it.
        """
        r = self._params["wire_radius"]
        lat, along = self._local(xs, ys)
        a = np.abs(lat)
        hexagon = np.where(a <= r / 2, math.sqrt(3.0) * r, 2 * math.sqrt(3.0) * (r - a))
        wave = sum(np.sin(k * along + p) for k, p in self._modes)
        hexagon = np.clip(hexagon, 0.0, None) * (1.0 + self._params["texture"] * wave / 2.0)
        inside = self._inside(xs, ys)
        rs = self._params["au_radius"]
        sq = rs**2 - lat**2 - (along + self._cap_offset) ** 2
        sphere = 2.0 * np.sqrt(np.clip(sq, 0.0, None))
        if blur > 0:
            wire_share = 0.5 * (1.0 + special.erf(along / (math.sqrt(2.0) * blur)))
        else:
            wire_share = (along >= 0).astype(np.float64)
        return hexagon * wire_share * inside, sphere * (1.0 - wire_share) * inside

    def _interface_weight(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        r = self._params["wire_radius"]
        lat, along = self._local(xs, ys)
        s = self._params["interface_width"] / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        across = np.exp(-0.5 * (along / s) ** 2)
        # follows the wire's thickness profile across its width
        a = np.abs(lat)
        profile = np.clip(np.where(a <= r / 2, 1.0, 2.0 * (r - a) / r), 0.0, 1.0)
        return across * profile * self._inside(xs, ys)

    # ------------------------------------------------------------------ signals

    def haadf(self, frame: ScanFrame, probe_sigma: float) -> np.ndarray:
        xs, ys = frame.pixel_grid()
        gaas, au = self._thicknesses(xs, ys)
        img = -np.expm1(-(self._mu["GaAs"] * gaas + self._mu["Au"] * au))
        sigma_px = probe_sigma / frame.pixel_size
        if sigma_px > 0.3:
            img = ndimage.gaussian_filter(img, sigma_px, mode="nearest")
        return img

    def reference_fraction(self, probe_sigma: float) -> float:
        return float(-math.expm1(-self._mu["GaAs"] * math.sqrt(3.0) * self._params["wire_radius"]))

    def tau(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        gaas, au = self._thicknesses(xs, ys, blur=self._params["beam_broadening"])
        inter = self._params["interface_strength"] * self._interface_weight(xs, ys)
        return np.stack(
            [
                gaas / MATERIALS["GaAs"].mean_free_path,
                au / MATERIALS["Au"].mean_free_path,
                inter,
            ],
            axis=-1,
        )

    # ------------------------------------------------------------------ truth

    def labels(self, frame: ScanFrame) -> np.ndarray:
        xs, ys = frame.pixel_grid()
        gaas, au = self._thicknesses(xs, ys)
        lat, along = self._local(xs, ys)
        lab = np.zeros(xs.shape, dtype=np.uint8)
        lab[gaas > 0] = 1
        lab[au > 0] = 2
        half = self._params["interface_width"] / 2.0
        near = (np.abs(along) <= half) & (np.abs(lat) < self._params["wire_radius"])
        lab[near & self._inside(xs, ys)] = 3
        return lab

    def thickness(self, frame: ScanFrame) -> np.ndarray:
        gaas, au = self._thicknesses(*frame.pixel_grid())
        return (gaas + au).astype(np.float32)

    def truth_extras(self, frame: ScanFrame) -> Dict[str, Any]:
        t = math.radians(self._params["axis_angle"])
        cx, cy = self._params["interface_centre"]
        r = self._params["wire_radius"]
        ends = np.array(
            [
                [cx - r * math.cos(t), cy - r * math.sin(t)],
                [cx + r * math.cos(t), cy + r * math.sin(t)],
            ]
        )
        px, py = frame.to_pixels(ends[:, 0], ends[:, 1])
        return {
            "interface_ends_nm": ends,
            "interface_ends_px": np.stack([px, py], axis=1),
        }
