"""Do the atoms LoG* found sit where the lattice its rewards assumed puts them?

The rewards count atoms and spacings; they cannot see *where* the atoms are. With the wrong
lattice typed (only the W columns of WS2, whose honeycomb also holds S2 columns), a parameter
set can find the expected number of atoms, none too close, all in the wrong places: between
columns, on hollow sites, on the dimmer sublattice. So after the optimisation the agent
checks the chosen atoms against the image and the lattice, whatever the count says:

* **on a column**: a found atom should sit on a column: closer to a local maximum of the
  image's curvature (its Laplacian of Gaussian over an eighth of the spacing: a dim column
  beside a bright one is a shoulder, not a maximum, of the intensity) than a column's half
  width (0.05 nm, at most a quarter of the nearest-neighbour distance, at least 2 px);
* **no bright column left out**: the columns at least 0.8 x as strong as the typical found
  atom (at a coarser scale, a fifth of the spacing, where noise makes no maxima) should each
  have a found atom on them (finding the dim sublattice and missing the bright one is the
  WS2 case; so is finding one atom of many);
* **neighbours where the lattice puts them**: around each found atom, at least half of its
  found neighbours should sit at the lattice's neighbour vectors (for some in-plane rotation,
  per atom, so a grain boundary or a second grain does not count as an error), within a
  quarter of the nearest-neighbour distance;
* **anything above the noise at the columns' size?** (:mod:`agents.structure`, the test the
  ensemble's atom map passes too) the image's structure at a quarter of the spacing over what
  its own pixel noise gives there, and the atoms' intensity over their background in noise
  sigma. On a field too noisy to show columns, searched at too small a scale (a pixel size
  given 2.4 x too large on the twin's graphene at noise 1, 96 px), the three tests above
  passed 852 noise maxima (F1 0.37 against the truth): a lattice's spacing that small fits
  noise anywhere. Here, 68 % of that field reads featureless and those atoms stand 0.7 noise
  sigma above their background (real columns: 2.6 on the real graphene image, 60 on the
  real ABF image), and the check says the field is too noisy.

Below :data:`LIMITS` the check fails and says which test failed and by how much, in a
sentence per test (``warnings``) and in a few words for a run's record (``reason``); fewer
than :data:`MIN_ATOMS` atoms cannot be judged and fail too. It never changes the atoms; the
agent puts it in its report (and so in the run), with the pixel size the image itself
suggests when that differs from the one used (a wrong calibration is the commonest cause:
the real graphene image given as 0.02 nm/px instead of its 0.0077 gave 1062 "atoms"), and
logs a warning.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..structure import FEATURELESS, atom_contrast, clearest_structure
from .lattice import Lattice, check_pixel_size

__all__ = [
    "LIMITS",
    "NOISE_LIMITS",
    "ImplausibleAtomsWarning",
    "Plausibility",
    "check_plausibility",
]

log = logging.getLogger("agents.logstar")

#: the check fails when fewer atoms than ``on_columns`` sit on a column, fewer judged atoms
#: than ``on_lattice`` have their neighbours in place, or more bright columns than
#: ``missed_bright`` are left without an atom
LIMITS = {"on_columns": 0.7, "on_lattice": 0.6, "missed_bright": 0.3}
#: ... and when more of the field than ``featureless_field`` shows nothing above its noise at
#: the columns' size, more atoms than ``atoms_in_featureless`` sit in such places, or the
#: atoms' median intensity stands less than ``contrast_snr`` noise sigma above their
#: background (the ensemble's limits: agents.ensemble.plausibility)
NOISE_LIMITS = {"featureless_field": 0.5, "atoms_in_featureless": 0.3, "contrast_snr": 1.0}
#: the columns' radius the noise is judged at, as a fraction of the nearest-neighbour distance
COLUMN_RADIUS = 0.25
#: fewer atoms than this cannot be judged (and fail)
MIN_ATOMS = 5
#: a column counts as bright when its response is at least this fraction of the median found
#: atom's (a dim sublattice, S2 beside W at 0.15, stays out; so does noise at the coarse scale)
BRIGHT_LEVEL = 0.8
#: tolerance of the neighbour vectors, as a fraction of the nearest-neighbour distance
TOLERANCE = 0.25
#: a found atom is on a column when closer to its centre than this (nm; and than a quarter of
#: the nearest-neighbour distance, and never less than 2 px)
COLUMN_WIDTH_NM = 0.05
_ANGLES = np.deg2rad(np.arange(0.0, 360.0, 2.0))
#: at most this many atoms have their neighbourhood judged (a seeded sample beyond)
MAX_JUDGED = 400


class ImplausibleAtomsWarning(UserWarning):
    """The atoms found do not sit on the lattice the rewards assumed."""


@dataclass
class Plausibility:
    """The outcome of :func:`check_plausibility` (fractions in 0..1, distances in px).

    Attributes:
        ok: all three tests passed.
        on_columns: share of found atoms within the tolerance of a bright column.
        median_offset_px: median distance from a found atom to the nearest column.
        missed_bright: share of the bright columns (as bright as the median found atom)
            with no found atom on them.
        on_lattice: share of the atoms with at least two found neighbours whose neighbours
            sit at the lattice's neighbour vectors (None: no atom had two neighbours).
        n_atoms: atoms checked.
        lattice: the lattice's name.
        warnings: one sentence per failed test.
        reasons: the same in a few words each (``"40 % of bright columns missed"``).
        pixel_size_nm: the pixel size the atoms were judged at, nm.
        suggested_pixel_size_nm: the pixel size the image itself suggests, nm, when it
            differs from ``pixel_size_nm`` (set by the agent: :meth:`suggest_pixel_size`).
        suggested_by: what suggests it (``"its lattice reflections"``, ``"its atoms'
            spacing"``).
        featureless_field: share of the field with nothing above its noise at the
            columns' size (:mod:`agents.structure`; None: not judged).
        atoms_in_featureless: share of the atoms in such places (None: not judged).
        contrast_snr: the atoms' median intensity above their background, in noise sigma
            (None: not judged).
    """

    ok: bool
    on_columns: float
    median_offset_px: float
    missed_bright: float
    on_lattice: Any
    n_atoms: int
    lattice: str
    warnings: List[str] = field(default_factory=list)
    reasons: List[str] = field(default_factory=list)
    pixel_size_nm: Optional[float] = None
    suggested_pixel_size_nm: Optional[float] = None
    suggested_by: Optional[str] = None
    featureless_field: Optional[float] = None
    atoms_in_featureless: Optional[float] = None
    contrast_snr: Optional[float] = None

    def fail(self, sentence: str, words: str) -> None:
        """Record a failed test: a sentence for the operator, a few words for the run."""
        self.ok = False
        self.warnings.append(sentence)
        self.reasons.append(words)

    def suggest_pixel_size(self, pixel_size_nm: float, by: str) -> None:
        """The image suggests ``pixel_size_nm`` (nm) instead of the one used (``by``: what
        says so, e.g. ``"its lattice reflections"``)."""
        self.suggested_pixel_size_nm = float(pixel_size_nm)
        self.suggested_by = by

    @property
    def reason(self) -> str:
        """Why the atoms are not plausible, in a few words ("" when they are): what a run
        records beside its ``plausible`` flag, e.g. ``"40 % of bright columns missed; the
        image suggests 0.0077 nm/px, not 0.02"``."""
        if self.ok:
            return ""
        words = list(self.reasons) or ["implausible"]
        if self.suggested_pixel_size_nm is not None and self.pixel_size_nm is not None:
            words.append(
                f"the image suggests {self.suggested_pixel_size_nm:.2g} nm/px, not "
                f"{self.pixel_size_nm:.2g}"
            )
        return "; ".join(words)

    def message(self) -> str:
        """The logged warning: every failed test, and the pixel size the image suggests."""
        text = "LoG* atoms implausible: " + "; ".join(self.warnings)
        if self.suggested_pixel_size_nm is not None and self.pixel_size_nm is not None:
            text += (
                f". The image suggests {self.suggested_pixel_size_nm:.4g} nm/px (from "
                f"{self.suggested_by or 'itself'}), not the {self.pixel_size_nm:.4g} nm/px "
                "used: check the survey's calibration (pixel_size_nm='fft' takes the image's "
                "own) or the lattice"
            )
        return text

    def as_dict(self) -> Dict[str, Any]:
        """JSON-able (strict JSON: a median offset that could not be measured, with no atom
        or no column to measure it on, is None rather than NaN or infinity)."""
        offset = self.median_offset_px
        return {
            "ok": self.ok,
            "on_columns": self.on_columns,
            "median_offset_px": offset if offset is not None and math.isfinite(offset) else None,
            "missed_bright": self.missed_bright,
            "on_lattice": self.on_lattice,
            "n_atoms": self.n_atoms,
            "lattice": self.lattice,
            "limits": {**LIMITS, **NOISE_LIMITS},
            "featureless_field": _rounded(self.featureless_field),
            "atoms_in_featureless": _rounded(self.atoms_in_featureless),
            "contrast_snr": _rounded(self.contrast_snr),
            "warnings": list(self.warnings),
            "reason": self.reason,
            "pixel_size_nm": self.pixel_size_nm,
            "suggested_pixel_size_nm": self.suggested_pixel_size_nm,
            "suggested_by": self.suggested_by,
        }


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None or not math.isfinite(value) else round(float(value), 3)


def _neighbour_vectors(lattice: Lattice, pixel_size_nm: float) -> List[np.ndarray]:
    """Per basis column: the vectors (px, as ``(row, col)``) to its neighbours out to a
    little past the third nearest, so even a dumbbell's partner is not the only one."""
    cell = np.asarray(lattice.cell, dtype=float)
    basis = np.asarray(lattice.basis, dtype=float) % 1.0
    shifts = np.array([(i, j) for i in range(-3, 4) for j in range(-3, 4)], dtype=float)
    sites = (basis[None, :, :] + shifts[:, None, :]).reshape(-1, 2) @ cell  # (x, y) nm
    out = []
    for origin in basis @ cell:
        v = sites - origin
        d = np.linalg.norm(v, axis=1)
        v, d = v[d > 1e-9], d[d > 1e-9]
        reach = 1.1 * np.sort(d)[min(2, len(d) - 1)]
        keep = v[d <= reach] / pixel_size_nm
        out.append(keep[:, ::-1])  # (row, col) like the atoms; a mirror the angles absorb
    return out


def _on_lattice(points: np.ndarray, vectors: List[np.ndarray], tol: float) -> np.ndarray:
    """Per point: its neighbours' match fraction (best rotation and basis column), or NaN
    when it has fewer than two neighbours within reach (or is not among the
    :data:`MAX_JUDGED` points judged: a fixed, seeded sample keeps big images quick)."""
    reach = max(float(np.linalg.norm(v, axis=1).max()) for v in vectors) + tol
    tree = cKDTree(points)
    out = np.full(len(points), np.nan)
    judged = np.arange(len(points))
    if len(points) > MAX_JUDGED:
        judged = np.sort(np.random.default_rng(0).choice(len(points), MAX_JUDGED, replace=False))
    rot = np.stack([np.cos(_ANGLES), -np.sin(_ANGLES), np.sin(_ANGLES), np.cos(_ANGLES)], -1)
    rot = rot.reshape(-1, 2, 2)
    # each basis column's vectors (and their mirror images: a flipped scan) at every angle
    rotated = [
        np.einsum("aij,vj->avi", rot, v * sign)
        for v in vectors
        for sign in (np.array([1.0, 1.0]), np.array([1.0, -1.0]))
    ]
    for i in judged:
        p = points[i]
        near = [j for j in tree.query_ball_point(p, reach) if j != i]
        if len(near) < 2:
            continue
        u = points[near] - p  # (U, 2)
        best = 0.0
        for v in rotated:  # (angles, V, 2)
            radius = float(np.linalg.norm(v[0], axis=1).max()) + tol
            judged = np.linalg.norm(u, axis=1) <= radius
            if judged.sum() < 2:
                continue
            d = np.linalg.norm(u[judged][None, :, None, :] - v[:, None, :, :], axis=-1)
            matched = (d.min(axis=2) <= tol).mean(axis=1)  # per angle
            best = max(best, float(matched.max()))
        out[i] = best
    return out


def check_plausibility(
    atoms: Any,
    image: Any,
    lattice: Lattice,
    pixel_size_nm: float,
    warn: bool = False,
    quiet: bool = False,
) -> Plausibility:
    """Check found atoms against the image and the lattice the rewards assumed.

    Args:
        atoms: ``(N, 2+)`` rows ``(row, col, ...)`` in pixels.
        image: the image they were found in (bright atoms: HAADF, or an inverted ABF).
        lattice: the lattice the rewards used.
        pixel_size_nm: the pixel size the rewards used, nm.
        warn: also issue an :class:`ImplausibleAtomsWarning` when the check fails (a failed
            check is logged as a warning on the ``agents.logstar`` logger).
        quiet: neither log nor warn: the caller says it (the agent, once it has added the
            pixel size the image suggests).

    Example (a synthetic graphene image: the columns found with LoG pass, atoms put at
    random do not):
        >>> import numpy as np
        >>> from agents.logstar import LoGParameters, get_lattice
        >>> from agents.logstar.plausibility import check_plausibility
        >>> from agents.logstar.render import render_lattice
        >>> from agents.logstar.scalespace import ScaleSpace, prepare_image
        >>> lattice = get_lattice("graphene")
        >>> image = render_lattice(lattice, (96, 96), 0.02)
        >>> params = LoGParameters(min_sigma=1.5, max_sigma=3.0, threshold=0.05)
        >>> atoms = ScaleSpace(prepare_image(image)).detect(params)
        >>> check_plausibility(atoms, image, lattice, 0.02).ok
        True
        >>> anywhere = np.random.default_rng(0).uniform(0, 96, (len(atoms), 2))
        >>> check = check_plausibility(anywhere, image, lattice, 0.02)
        >>> check.ok, check.warnings[0]
        (False, 'only 29 % of the found atoms sit on a bright column ...')
    """
    px = check_pixel_size(pixel_size_nm)
    img = np.asarray(image, dtype=np.float64)
    pts = np.asarray(atoms, dtype=np.float64)
    pts = pts.reshape(len(pts), -1)[:, :2] if pts.size else np.empty((0, 2))
    nn_px = lattice.nn_distance_px(px)
    tol = TOLERANCE * nn_px
    # on a column means closer than its own half width (0.05 nm), however
    # far apart the lattice's columns are; never below the pixel grid's own error
    tol_column = max(2.0, min(TOLERANCE * nn_px, COLUMN_WIDTH_NM / px))
    if len(pts) < MIN_ATOMS:
        result = Plausibility(False, 0.0, float("nan"), 1.0, None, len(pts), lattice.name)
        result.pixel_size_nm = px
        result.fail(
            f"only {len(pts)} atoms were found: too few to judge where they sit (the lattice "
            f"{lattice.name} expects many more in a field this size?)",
            f"only {len(pts)} atoms",
        )
        return _finish(result, warn, quiet)

    # the columns: local maxima of the image's curvature (a Laplacian of Gaussian over an
    # eighth of the spacing), not of its intensity: a dim column beside bright ones (S2
    # beside W) is a shoulder, not a maximum, of the intensity
    columns, _ = _maxima(img, 0.12 * nn_px, 0.35 * nn_px)
    if len(columns):
        offset, _ = cKDTree(columns).query(pts)
    else:
        offset = np.full(len(pts), np.inf)
    on_columns = float(np.mean(offset <= tol_column))

    # bright columns with no atom: at a coarser scale (a fifth of the spacing, where noise
    # makes no maxima), those as strong as the typical found atom, away from the edge
    strong, response = _maxima(img, 0.2 * nn_px, 0.5 * nn_px)
    rows, cols = img.shape
    level = BRIGHT_LEVEL * float(np.median(_sample(response, pts)))
    inside = (
        (strong[:, 0] >= tol)
        & (strong[:, 0] <= rows - 1 - tol)
        & (strong[:, 1] >= tol)
        & (strong[:, 1] <= cols - 1 - tol)
    )
    bright = strong[inside & (_sample(response, strong) >= level)] if len(strong) else strong
    if len(bright):
        gap, _ = cKDTree(pts).query(bright)
        missed = float(np.mean(gap > tol_column))
    else:
        missed = 0.0

    matched = _on_lattice(pts, _neighbour_vectors(lattice, px), tol)
    judged = np.isfinite(matched)
    on_lattice = float(np.mean(matched[judged] >= 0.5)) if judged.any() else None

    result = Plausibility(
        ok=True,
        on_columns=on_columns,
        median_offset_px=float(np.median(offset)),
        missed_bright=missed,
        on_lattice=on_lattice,
        n_atoms=len(pts),
        lattice=lattice.name,
        pixel_size_nm=px,
    )
    name = f"{lattice.name} (nearest neighbours {lattice.nn_distance_nm:.3f} nm = {nn_px:.1f} px)"
    if on_columns < LIMITS["on_columns"]:
        result.fail(
            f"only {100 * on_columns:.0f} % of the found atoms sit on a bright column "
            f"(median {result.median_offset_px:.1f} px away; tolerance {tol_column:.1f} px): "
            f"the image may not show {name}",
            f"{100 * on_columns:.0f} % of atoms on a column",
        )
    if missed > LIMITS["missed_bright"]:
        result.fail(
            f"{100 * missed:.0f} % of the image's bright columns have no atom on them: the "
            f"atoms found may be a dimmer sublattice, or the lattice {name} misses columns",
            f"{100 * missed:.0f} % of bright columns missed",
        )
    if on_lattice is not None and on_lattice < LIMITS["on_lattice"]:
        result.fail(
            f"the neighbours of only {100 * on_lattice:.0f} % of the atoms sit where {name} puts "
            "them: check the lattice and the pixel size",
            f"{100 * on_lattice:.0f} % of atoms with lattice neighbours",
        )
    _check_noise(result, img, pts, COLUMN_RADIUS * nn_px, name)
    return _finish(result, warn, quiet)


def _check_noise(
    result: Plausibility, image: np.ndarray, pts: np.ndarray, radius: float, name: str
) -> None:
    """Is there anything above the noise at the columns' size, where the atoms are?
    (:mod:`agents.structure`; fills the result's noise figures, fails it when not.)"""
    ratio, scale, window = clearest_structure(image, radius)
    flat = ratio < FEATURELESS
    rows = np.clip(np.rint(pts[:, 0]), 0, image.shape[0] - 1).astype(np.intp)
    cols = np.clip(np.rint(pts[:, 1]), 0, image.shape[1] - 1).astype(np.intp)
    result.featureless_field = float(flat.mean())
    result.atoms_in_featureless = float(flat[rows, cols].mean())
    result.contrast_snr = float(np.median(atom_contrast(image, pts, radius, window)))
    too_noisy = (
        "too noisy (too low a dose) to show the columns of "
        f"{name}, or the pixel size is too large and the search ran at too small a scale"
    )
    if result.featureless_field > NOISE_LIMITS["featureless_field"]:
        result.fail(
            f"{100 * result.featureless_field:.0f} % of the field shows nothing above its "
            f"noise at the columns' size ({scale:.1f} px): the field is {too_noisy}",
            f"{100 * result.featureless_field:.0f} % of the field featureless (too noisy)",
        )
    elif result.atoms_in_featureless > NOISE_LIMITS["atoms_in_featureless"]:
        result.fail(
            f"{100 * result.atoms_in_featureless:.0f} % of the atoms sit where the image shows "
            "nothing above its noise (vacuum, or too low a dose): noise maxima, not columns",
            f"{100 * result.atoms_in_featureless:.0f} % of atoms in featureless places",
        )
    if result.contrast_snr < NOISE_LIMITS["contrast_snr"]:
        result.fail(
            f"the atoms found stand only {result.contrast_snr:.1f} noise sigma above the "
            f"background around them: noise maxima, not columns; the field is {too_noisy}",
            f"atoms {result.contrast_snr:.1f} noise sigma above background (too noisy)",
        )


def _maxima(image: np.ndarray, sigma: float, size: float) -> Any:
    """Local maxima ``(row, col)`` of the image's negative Laplacian of Gaussian at
    ``sigma`` px, at least ``size`` px apart, and the response image itself."""
    response = -ndimage.gaussian_laplace(image, max(1.0, sigma))
    window = max(3, int(size) | 1)
    peaks = (response == ndimage.maximum_filter(response, size=window)) & (
        response > ndimage.minimum_filter(response, size=window)
    )
    return np.argwhere(peaks).astype(np.float64), response


def _sample(image: np.ndarray, pts: np.ndarray) -> np.ndarray:
    r = np.clip(np.rint(pts[:, 0]).astype(int), 0, image.shape[0] - 1)
    c = np.clip(np.rint(pts[:, 1]).astype(int), 0, image.shape[1] - 1)
    return image[r, c]


def _finish(result: Plausibility, warn: bool, quiet: bool) -> Plausibility:
    if not result.ok and not quiet:
        message = result.message()
        log.warning(message)
        if warn:
            warnings.warn(message, ImplausibleAtomsWarning, stacklevel=3)
    return result
