"""Materials as the spectrometer sees them: single-scattering loss shapes, edges, mean free paths.

Every EELS *component* of a sample (a material, an interface, a surface plasmon, the core
edges of one element) is a normalised single-scattering distribution ``S(E)`` (1/eV, area 1
over 0–4000 eV) and a local weight ``tau`` (the mean number of such scattering events, t/λ
for a bulk material). :mod:`.eels` turns the weights into spectra with Poisson plural
scattering, so the shapes here are all a sample has to say about its spectrum.

Shapes (chosen so a test can read the configured energies back off a spectrum):

* valence peaks: Drude loss functions whose *maximum* is at the configured energy;
* valence tail: a power law ``E**-r`` above the plasmons (the background under core edges);
* core edges: an arctan step at the onset times ``(E/onset)**-exponent``, optionally delayed
  (Ga, As, Sr L; Si L; Sr M) and with Gaussian white lines / near-edge peaks. The first
  white line sits one half-width above the onset, so the edge reaches half its first maximum
  at the configured onset. Edge heights are given as jump ratios over the host's valence tail.

Onsets are tabulated values (EELS Atlas): C K 284, Si L2,3 99, Ti L2,3 456, O K 532, Sr M4,5
133, Sr L3 1940, Ga L3 1115, As L3 1323, Ag M4,5 367, Au N6,7 83, Au M5 2206 eV.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "MATERIALS",
    "Component",
    "Edge",
    "Material",
    "Peak",
    "core_component",
    "material_component",
    "peak_component",
]

#: normalisation range and step of every shape, eV
_REF_MAX = 4000.0
_REF_STEP = 0.02


@dataclass(frozen=True)
class Peak:
    """A valence-loss peak (plasmon, interband transition, surface plasmon).

    Attributes:
        energy: energy loss where the peak is highest, eV.
        fwhm: damping width of the Drude loss function, eV.
        weight: relative area among the peaks of one material.
    """

    energy: float
    fwhm: float
    weight: float = 1.0


@dataclass(frozen=True)
class Edge:
    """A core-loss edge.

    Attributes:
        label: name as a microscopist writes it, e.g. ``"Ti L2,3"``.
        onset: edge onset, eV (where the edge reaches half its first maximum).
        jump_ratio: signal just above the edge (its first maximum) over the background just
            below it, in the pure material at moderate thickness.
        exponent: decay of the continuum, ``(E / onset) ** -exponent``.
        delay: eV; a delayed edge rises as ``1 - exp(-(E - onset) / delay)`` (L edges of Ga,
            As, Sr; Si L2,3; Sr M4,5). 0 for a sharp (saw-tooth) edge.
        white_lines: ``(centre above onset, half width at half maximum, height)`` Gaussian
            peaks, heights relative to the continuum step.
        broadening: lifetime width of the step, eV.
    """

    label: str
    onset: float
    jump_ratio: float
    exponent: float = 2.5
    delay: float = 0.0
    white_lines: Tuple[Tuple[float, float, float], ...] = ()
    broadening: float = 0.2

    def profile(self, energy: np.ndarray) -> np.ndarray:
        """Edge shape on ``energy`` (eV), scaled so that its first maximum is 1."""
        return self._raw(np.asarray(energy, dtype=np.float64)) / _edge_peak(self)

    def _raw(self, e: np.ndarray) -> np.ndarray:
        x = e - self.onset
        step = 0.5 + np.arctan(x / self.broadening) / np.pi
        decay = (np.maximum(e, self.onset) / self.onset) ** (-self.exponent)
        if self.delay > 0:
            # A small sharp step keeps a visible onset, as in real delayed edges.
            rise = 0.15 + 0.85 * (1.0 - np.exp(-np.maximum(x, 0.0) / self.delay))
        else:
            rise = 1.0
        shape = step * rise * decay
        for centre, hwhm, height in self.white_lines:
            sigma = hwhm / np.sqrt(2.0 * np.log(2.0))
            shape = shape + height * np.exp(-0.5 * ((x - centre) / sigma) ** 2)
        return shape


@lru_cache(maxsize=None)
def _edge_peak(edge: Edge) -> float:
    """Height of the edge's first maximum above its onset (its "jump")."""
    e = np.arange(edge.onset, edge.onset + 400.0, 0.01)
    ref = edge._raw(e)
    rising = np.diff(ref) > 0
    turns = np.nonzero(rising[:-1] & ~rising[1:])[0]
    return float(ref[turns[0] + 1]) if len(turns) else float(ref.max())


@dataclass(frozen=True)
class Material:
    """A material's loss function, edges and scattering data.

    Attributes:
        name: e.g. ``"GaAs"``.
        peaks: valence peaks.
        tail_fraction: share of the valence single scattering in the power-law tail.
        tail_exponent: ``r`` of the ``E**-r`` valence tail (real spectra: 2.5–3).
        edges: core edges of the material's own elements.
        mean_free_path: inelastic mean free path λ at the twin's beam energy, nm.
        atom_density: atoms per nm³ (for mass-thickness HAADF contrast).
        mean_z: atomic numbers of the constituents (HAADF uses the mean of ``Z**1.7``).
    """

    name: str
    peaks: Tuple[Peak, ...] = ()
    tail_fraction: float = 0.08
    tail_exponent: float = 3.0
    edges: Tuple[Edge, ...] = ()
    mean_free_path: float = 100.0
    atom_density: float = 50.0
    mean_z: Tuple[int, ...] = (6,)

    def haadf_power(self, sigma_c: float) -> float:
        """Fraction of electrons scattered to the HAADF detector per nm of thickness.

        ``sigma_c`` is the HAADF cross-section of one carbon atom (nm²); heavier atoms scale
        as ``(Z / 6) ** 1.7``.
        """
        zf = np.mean([(z / 6.0) ** 1.7 for z in self.mean_z])
        return float(self.atom_density * sigma_c * zf)


@dataclass(frozen=True)
class Component:
    """One EELS component: a normalised single-scattering shape, sampled on demand.

    Attributes:
        name: label used in truth and docs.
        source: the material (or core element) it comes from.
        kind: ``"material"`` (valence and own edges), ``"core"`` (edges of an element in a
            host), or ``"peak"`` (interface or surface plasmon).
        host: for ``"core"`` components, the host material whose valence tail sets the edge
            heights; None otherwise.
    """

    name: str
    source: Material
    kind: str = "material"
    host: Optional[Material] = None

    def shape(self, energy: np.ndarray) -> np.ndarray:
        """Single-scattering density (1/eV) at ``energy`` (eV), area 1 over 0–4000 eV."""
        return _shape(self, np.asarray(energy, dtype=np.float64))

    @property
    def strength(self) -> float:
        """For a core component: its tau per unit host tau (``kappa``); 1 otherwise."""
        return _parts(self)[1]


# ------------------------------------------------------------------ shape construction


def _drude(e: np.ndarray, ep: float, gamma: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        f = e * gamma * ep**2 / ((e**2 - ep**2) ** 2 + (e * gamma) ** 2)
    return np.where(e > 0, f, 0.0)


@lru_cache(maxsize=None)
def _drude_centre(energy: float, fwhm: float) -> float:
    """Drude parameter whose loss function peaks at ``energy``."""
    e = np.arange(_REF_STEP, energy * 3 + 5 * fwhm, _REF_STEP / 4)
    ep = energy
    for _ in range(30):
        peak = e[np.argmax(_drude(e, ep, fwhm))]
        if abs(peak - energy) < _REF_STEP / 8:
            break
        ep += energy - peak
    return ep


def _peak_density(e: np.ndarray, peak: Peak, area: float) -> np.ndarray:
    ep = _drude_centre(peak.energy, peak.fwhm)
    return _drude(e, ep, peak.fwhm) * (peak.weight / area)


@lru_cache(maxsize=None)
def _ref_grid() -> np.ndarray:
    return np.arange(_REF_STEP / 2, _REF_MAX, _REF_STEP)


@lru_cache(maxsize=None)
def _peak_area(peak: Peak) -> float:
    e = _ref_grid()
    return float(_drude(e, _drude_centre(peak.energy, peak.fwhm), peak.fwhm).sum() * _REF_STEP)


def _tail_raw(e: np.ndarray, material: Material) -> np.ndarray:
    top = max((p.energy for p in material.peaks), default=20.0)
    turn_on = 1.6 * top
    with np.errstate(divide="ignore", over="ignore"):
        raw = np.where(e > 0, np.maximum(e, 1e-3) ** (-material.tail_exponent), 0.0) * -np.expm1(
            -((np.maximum(e, 0.0) / turn_on) ** 4)
        )
    return raw


@lru_cache(maxsize=None)
def _tail_area(material: Material) -> float:
    return float(_tail_raw(_ref_grid(), material).sum() * _REF_STEP)


def _valence(e: np.ndarray, material: Material) -> np.ndarray:
    """Valence single scattering (area 1): peaks plus tail."""
    out = np.zeros_like(e)
    if material.peaks:
        total_w = sum(p.weight for p in material.peaks)
        for p in material.peaks:
            out += _peak_density(e, p, _peak_area(p)) * (1.0 - material.tail_fraction) / total_w
    tail_share = material.tail_fraction if material.peaks else 1.0
    out += _tail_raw(e, material) * (tail_share / _tail_area(material))
    return out


def _edge_sum(e: np.ndarray, edges: Sequence[Edge], host: Material) -> np.ndarray:
    out = np.zeros_like(e)
    for edge in edges:
        bg = float(_valence(np.array([edge.onset]), host)[0])
        out += edge.profile(e) * (edge.jump_ratio - 1.0) * bg
    return out


@lru_cache(maxsize=None)
def _parts(component: Component) -> Tuple[float, float]:
    """(normalisation of the shape, strength kappa)."""
    e = _ref_grid()
    src = component.source
    if component.kind == "material":
        total = (_valence(e, src) + _edge_sum(e, src.edges, src)).sum() * _REF_STEP
        return float(total), 1.0
    if component.kind == "core":
        assert component.host is not None
        area = float(_edge_sum(e, src.edges, component.host).sum() * _REF_STEP)
        return area, area
    # "peak": the material's peaks alone, area 1 by construction
    return float(_peaks_only(e, src).sum() * _REF_STEP), 1.0


def _peaks_only(e: np.ndarray, material: Material) -> np.ndarray:
    out = np.zeros_like(e)
    total_w = sum(p.weight for p in material.peaks) or 1.0
    for p in material.peaks:
        out += _peak_density(e, p, _peak_area(p)) / total_w
    return out


def _shape(component: Component, e: np.ndarray) -> np.ndarray:
    norm, _ = _parts(component)
    src = component.source
    if component.kind == "material":
        raw = _valence(e, src) + _edge_sum(e, src.edges, src)
    elif component.kind == "core":
        raw = _edge_sum(e, src.edges, component.host)
    else:
        raw = _peaks_only(e, src)
    return raw / norm


def material_component(material: Material, name: Optional[str] = None) -> Component:
    """A bulk material: valence peaks, tail and its own edges; tau = t / λ."""
    return Component(name or material.name, material, "material")


def core_component(element: Material, host: Material, name: Optional[str] = None) -> Component:
    """Edges of ``element`` sitting in ``host``; tau = host tau × local fraction × strength."""
    return Component(name or element.name, element, "core", host)


def peak_component(material: Material, name: Optional[str] = None) -> Component:
    """Peaks only (interface plasmon, surface plasmon); tau set by the sample's geometry."""
    return Component(name or material.name, material, "peak")


# ------------------------------------------------------------------ the material table

_C_K_GRAPHITIC = Edge(
    "C K", 284.0, 4.0, exponent=2.0, white_lines=((0.5, 0.5, 1.6), (8.0, 1.5, 1.2))
)
_C_K_AMORPHOUS = Edge("C K", 284.0, 3.0, exponent=2.0, white_lines=((0.5, 0.5, 0.6),))

#: materials of the four samples (energies in eV, λ in nm for 60–200 kV as appropriate)
MATERIALS = {
    # monolayer graphene at 60 kV: π and π+σ plasmons (Eberlein et al. 2008)
    "graphene": Material(
        "graphene",
        peaks=(Peak(4.8, 1.8, 0.25), Peak(14.6, 7.0, 1.0)),
        tail_fraction=0.10,
        edges=(_C_K_GRAPHITIC,),
        mean_free_path=80.0,
        atom_density=113.0,
        mean_z=(6,),
    ),
    "amorphous_carbon": Material(
        "amorphous carbon",
        peaks=(Peak(6.0, 3.0, 0.08), Peak(24.0, 12.0, 1.0)),
        tail_fraction=0.10,
        edges=(_C_K_AMORPHOUS,),
        mean_free_path=160.0,
        atom_density=100.0,
        mean_z=(6,),
    ),
    "Si_dopant": Material(
        "Si",
        edges=(Edge("Si L2,3", 99.0, 1.6, exponent=2.0, delay=8.0),),
        mean_z=(14,),
    ),
    "SrTiO3": Material(
        "SrTiO3",
        peaks=(Peak(13.5, 5.0, 0.3), Peak(29.5, 10.0, 1.0), Peak(47.0, 6.0, 0.1)),
        tail_fraction=0.10,
        tail_exponent=2.8,
        mean_free_path=105.0,
        atom_density=82.0,
        mean_z=(38, 22, 8, 8, 8),
    ),
    "Sr": Material(
        "Sr",
        edges=(
            Edge("Sr M4,5", 133.0, 1.15, delay=12.0),
            Edge("Sr L3", 1940.0, 1.5, delay=10.0, white_lines=((1.0, 1.0, 0.3),)),
            Edge("Sr L2", 2007.0, 1.2, delay=10.0),
        ),
        mean_z=(38,),
    ),
    "Ti": Material(
        "Ti",
        # STO: crystal-field split L3 (t2g, eg) and L2 (t2g, eg) white lines
        edges=(
            Edge(
                "Ti L2,3",
                456.0,
                3.0,
                exponent=2.0,
                white_lines=((0.5, 0.5, 2.5), (2.7, 0.8, 3.0), (5.7, 0.7, 2.2), (8.1, 1.0, 2.6)),
            ),
        ),
        mean_z=(22,),
    ),
    "O": Material(
        "O",
        edges=(
            Edge(
                "O K",
                532.0,
                1.25,
                exponent=2.0,
                white_lines=((0.7, 0.7, 1.2), (6.0, 2.5, 1.3), (14.0, 3.0, 0.8)),
            ),
        ),
        mean_z=(8,),
    ),
    # GaAs at 200 kV: bulk plasmon 16.3 eV; Ga and As L edges are delayed
    "GaAs": Material(
        "GaAs",
        peaks=(Peak(16.3, 4.0, 1.0),),
        tail_fraction=0.08,
        edges=(
            Edge("Ga L3", 1115.0, 1.4, delay=15.0),
            Edge("Ga L2", 1142.0, 1.15, delay=15.0),
            Edge("As L3", 1323.0, 1.3, delay=15.0),
            Edge("As L2", 1359.0, 1.12, delay=15.0),
        ),
        mean_free_path=110.0,
        atom_density=44.2,
        mean_z=(31, 33),
    ),
    # Au: interband features and a broad ~25 eV volume-plasmon region
    "Au": Material(
        "Au",
        peaks=(
            Peak(2.5, 1.5, 0.04),
            Peak(6.5, 4.0, 0.12),
            Peak(16.0, 8.0, 0.3),
            Peak(25.5, 11.0, 1.0),
        ),
        tail_fraction=0.10,
        edges=(Edge("Au N6,7", 83.0, 1.2, delay=10.0), Edge("Au M5", 2206.0, 1.3, delay=20.0)),
        mean_free_path=85.0,
        atom_density=59.0,
        mean_z=(79,),
    ),
    # Ag: sharp bulk plasmon at 3.8 eV, broad features at 17 and 25 eV
    "Ag": Material(
        "Ag",
        peaks=(
            Peak(3.8, 0.8, 0.3),
            Peak(7.5, 4.0, 0.1),
            Peak(17.0, 8.0, 0.4),
            Peak(25.0, 12.0, 0.6),
        ),
        tail_fraction=0.10,
        edges=(Edge("Ag M4,5", 367.0, 1.3, delay=20.0),),
        mean_free_path=95.0,
        atom_density=58.6,
        mean_z=(47,),
    ),
    # the GaAs/Au interface state: a peak found in neither bulk (first paper, Fig. 2c)
    "GaAs/Au interface": Material("GaAs/Au interface", peaks=(Peak(10.5, 2.5, 1.0),)),
    # localized surface plasmons of the particles (dipole modes)
    "Au LSP": Material("Au LSP", peaks=(Peak(2.4, 0.35, 1.0),)),
    "Ag LSP": Material("Ag LSP", peaks=(Peak(1.6, 0.3, 1.0), Peak(2.9, 0.35, 0.4))),
}
