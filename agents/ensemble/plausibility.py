"""Is the ensemble's atom map plausible? A frame with nothing to find still gets "atoms".

The members were trained to see atoms, and they see them in anything: on a frame of pure
noise or mostly vacuum the default ensemble found 166-643 "atoms" (the real graphene image:
138), each at a maximum of the noise. The atoms' own uncertainty does not say so: the
calibration was fitted on lattices, and rates most noise blobs as real. So after every
prediction the agent asks three questions a microscopist would ask of the map, and says the
answer in its report; it never drops an atom for it:

* **is there anything above the noise where the atoms are?** Around every pixel (a window of
  :data:`WINDOW_RADII` atom radii, at least :data:`MIN_WINDOW` px) the spread of the image's
  curvature is compared with what the image's own pixel noise would give
  there (measured from neighbouring pixels' differences, so a lattice's slow contrast does not
  count as noise), at the atoms' size and up to three times it (the clearest scale: the
  members' footprint is smaller than a broad, noisy column). Pure noise reads about 1; the
  real graphene image and the ABF image of SrTiO3 read above :data:`FEATURELESS`
  everywhere. Below it a place reads as featureless: vacuum, or a dose too
  low to show columns. Atoms found there are flagged (and not suggested);
* **do the members see whole atoms?** The share of atoms they find with probability
  >= 0.9 over at least 60 % of an atom's disc (:mod:`.evidence`): 78-100 % on real and twin
  lattices, 5-37 % on noise and vacuum;
* **are the atoms brighter than the background?** Each atom's intensity (smoothed at its
  size) over the mean around it, in units of the smoothed image's noise there; the median
  over the atoms (noise maxima: ~2; a detection no brighter than its background is not an
  atom).

Positions are ``(row, col)`` pixels; images are oriented (atoms bright), as the members saw
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..structure import (
    FEATURELESS,
    atom_contrast,
    clearest_structure,
    structure_map,
)
from .evidence import CONFIDENT

__all__ = [
    "FEATURELESS",
    "LIMITS",
    "AtomMapCheck",
    "check_atom_map",
    "structure_map",
]

#: the atom map fails when more of the field than ``featureless_field`` is featureless, more
#: atoms than ``atoms_in_featureless`` sit in featureless places, fewer than
#: ``whole_atoms`` are seen as whole atoms by the members, or the atoms stand out from the
#: background by less than ``contrast_snr`` noise sigma
LIMITS = {
    "featureless_field": 0.5,
    "atoms_in_featureless": 0.3,
    "whole_atoms": 0.5,
    "contrast_snr": 1.0,
}
#: a member's view of an atom counts as whole from this share of an atom's disc up
WHOLE_FRACTION = 0.6


@dataclass
class AtomMapCheck:
    """The outcome of :func:`check_atom_map` (shares in 0..1).

    Attributes:
        ok: the map is plausible (no reason below).
        featureless_field: share of the field with nothing above its noise.
        atoms_in_featureless: share of the atoms found in such places.
        whole_atoms: share of the atoms the members see as whole atoms (None: no atom).
        contrast_snr: the atoms' median intensity above the mean around them, in noise
            sigma of the smoothed image (None: no atom).
        n_atoms: atoms judged.
        scale_px: the smoothing scale the structure was read at, px.
        featureless: ``(N,)`` True for each atom in a featureless place.
        reasons: one sentence per failed test, in a microscopist's words.
    """

    ok: bool
    featureless_field: float
    atoms_in_featureless: float
    whole_atoms: float | None
    contrast_snr: float | None
    n_atoms: int
    scale_px: float = 0.0
    featureless: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, bool))
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able and small (no per-atom arrays; shares to 3 decimals; the limits are
        :data:`LIMITS`)."""

        def short(value: float | None) -> float | None:
            return None if value is None else round(float(value), 3)

        return {
            "ok": self.ok,
            "featureless_field": short(self.featureless_field),
            "atoms_in_featureless": short(self.atoms_in_featureless),
            "whole_atoms": short(self.whole_atoms),
            "contrast_snr": short(self.contrast_snr),
            "scale_px": short(self.scale_px),
            "reasons": list(self.reasons),
        }


def check_atom_map(
    image: Any,
    atoms: np.ndarray,
    radius: float,
    evidence: dict[str, np.ndarray] | None = None,
) -> AtomMapCheck:
    """Judge an atom map against its image.

    Args:
        image: ``(H, W)`` the image the atoms were found in, oriented (atoms bright).
        atoms: ``(N, 2)`` atom positions ``(row, col)``, pixels.
        radius: the typical atom radius, pixels (the scale of the smoothing).
        evidence: the atoms' evidence (:mod:`.evidence`: ``probability``, ``fraction``),
            for the share of whole atoms; None skips that test.

    Returns:
        an :class:`AtomMapCheck`; ``ok`` False says why in ``reasons``.
    """
    img = np.asarray(image, dtype=np.float64)
    pts = np.asarray(atoms, dtype=np.float64).reshape(-1, 2)
    # the scale the columns show best at (agents.structure)
    ratio, scale, window = clearest_structure(img, radius)
    base = max(1.0, float(radius))
    flat = ratio < FEATURELESS
    featureless_field = float(flat.mean())
    n = len(pts)
    if n:
        rows = np.clip(np.rint(pts[:, 0]), 0, img.shape[0] - 1).astype(np.intp)
        cols = np.clip(np.rint(pts[:, 1]), 0, img.shape[1] - 1).astype(np.intp)
        featureless = flat[rows, cols]
    else:
        featureless = np.zeros(0, dtype=bool)
    in_featureless = float(featureless.mean()) if n else 0.0

    whole = None
    if n and evidence is not None and "probability" in evidence and "fraction" in evidence:
        seen = (np.asarray(evidence["probability"]) >= CONFIDENT) & (
            np.asarray(evidence["fraction"]) >= WHOLE_FRACTION
        )
        whole = float(seen.mean())

    contrast = None
    if n:
        # at the atoms' own size: a wider smoothing blurs the lattice away
        contrast = float(np.median(atom_contrast(img, pts, base, window)))

    result = AtomMapCheck(
        ok=True,
        featureless_field=featureless_field,
        atoms_in_featureless=in_featureless,
        whole_atoms=whole,
        contrast_snr=contrast,
        n_atoms=n,
        scale_px=float(scale),
        featureless=featureless,
    )
    if n == 0:
        return result
    why = result.reasons
    if featureless_field > LIMITS["featureless_field"]:
        why.append(
            f"{100 * featureless_field:.0f} % of the field shows nothing above its noise "
            "(vacuum, or too low a dose to show columns)"
        )
    if in_featureless > LIMITS["atoms_in_featureless"]:
        why.append(
            f"{int(featureless.sum())} of the {n} atoms sit where the image shows nothing above "
            "its noise: noise maxima, not columns (not suggested)"
        )
    if whole is not None and whole < LIMITS["whole_atoms"]:
        why.append(
            f"the members see a whole atom at only {100 * whole:.0f} % of the detections "
            f"(probability >= {CONFIDENT:g} over >= {100 * WHOLE_FRACTION:.0f} % of an atom's "
            "disc; a lattice gives most): specks, not columns"
        )
    if contrast is not None and contrast < LIMITS["contrast_snr"]:
        why.append(
            f"the detections are no brighter than the background around them ({contrast:.1f} "
            "noise sigma above it)"
        )
    result.ok = not why
    return result
