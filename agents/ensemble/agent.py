"""The forward "DCNN" workflow as an agent: survey image -> atoms -> where to take EELS.

``observe(survey_image)`` runs the ensemble and keeps the atoms with their probability,
uncertainty and image intensity; ``suggest(n)`` proposes EELS positions at a chosen class
of atoms: the *most uncertain* ones (where a spectrum tells the most about what the network
could not decide), the *brightest* (heavy atoms such as Si dopants in graphene, bright in
HAADF), or the most *confident*. Positions come out as beam coordinates ``x`` = column,
``y`` = row, pixels of the survey image's scan field.

The members were trained on bright columns (HAADF). An annular bright-field (ABF) or
bright-field image, columns dark, is inverted first (``contrast``: :mod:`agents.contrast`);
"brightest" then means the strongest columns, the darkest in the ABF image. An atom's recorded
``intensity`` is always the survey image's own value there (its units: counts for a raw
detector), never that of the inverted copy; the ranking's :attr:`EnsembleAgent.strength` is
the inverted one.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Union

import numpy as np
from scipy import ndimage

from ..base import Agent, Suggestion
from ..contrast import ContrastDecision, check_contrast, orient, update_decision
from ..device import check_device, describe, resolve_device
from ..images import with_clipped_levelled, without_hot_pixels
from ._runtime import as_image
from .evidence import DEFAULT_MIN_SPACING, atom_radius
from .members import Ensemble
from .plausibility import AtomMapCheck, check_atom_map
from .predict import DEFAULT_MAX_FALSE, predict
from .prediction import Prediction
from .scale import bin_factor, binned, unbinned
from .store import load_ensemble

__all__ = ["TARGETS", "EnsembleAgent"]

log = logging.getLogger("agents.ensemble")

#: the atom classes ``suggest`` can aim at
TARGETS = ("uncertain", "brightest", "confident")
#: :func:`agents.ensemble.predict`'s rules for which atoms are reported, as defaults
ATOM_RULES = {
    "min_spacing": DEFAULT_MIN_SPACING,
    "exclude_edge": True,
    "max_false": DEFAULT_MAX_FALSE,
}


class EnsembleAgent(Agent):
    """Find atoms with the U-Net ensemble and suggest EELS positions among them.

    Args:
        ensemble: an :class:`Ensemble`, or the name or folder of a saved one (loaded now,
            so a missing ensemble fails here with a message saying how to train it).
        target: which atoms ``suggest`` returns first: ``"uncertain"`` (highest uncertainty:
            the atoms most likely false when the ensemble is calibrated, else the highest
            variance across members), ``"brightest"`` (highest image intensity) or
            ``"confident"``.
        min_separation: suggestions stay at least this far (pixels) from positions already
            suggested for the current image or measured; default: half the median distance
            between the found atoms.
        num_threads: threads for prediction (``None``: the default of
            :func:`agents.ensemble.predict_members`).
        device: where the members run: ``"auto"`` (a GPU when there is one), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``. Recorded in :meth:`config` as asked and in
            :meth:`report` as used.
        contrast: how the survey image shows the columns: ``"bright"`` (HAADF/ADF),
            ``"dark"`` (ABF/BF: inverted before prediction; positions unchanged) or
            ``"auto"``: from the detector's name given to :meth:`observe`, else from the
            image (its column skewness over 6-24 px; an image that does not say stays
            bright). Kept for the next images unless they name another detector;
            recorded in :meth:`config` as asked and in :meth:`report` as decided.
        rescale: bin an image whose lattice repeats over more than
            :data:`~agents.ensemble.scale.MAX_PERIOD` px (columns far larger than the members
            learned: a finer sampling, a higher magnification) before prediction, by the
            smallest whole factor that brings the repeat under it; the atoms come back on
            the image's own pixels (:mod:`agents.ensemble.scale`; the factor and repeat:
            ``report()["binned"]``). ``False``: predict on the image as it is.
        **predict_kwargs: passed to :func:`agents.ensemble.predict` (threshold, tile_size,
            precision...).

    Example (a synthetic 64 x 64 lattice with one brighter column, a dopant, and a tiny
    ensemble trained on it in a second; ``EnsembleAgent("default")`` loads the ensemble saved
    under that name instead, :func:`agents.ensemble.save_ensemble`):
        >>> import numpy as np
        >>> yy, xx = np.mgrid[:64, :64]
        >>> atoms = [(r, c) for r in range(4, 64, 8) for c in range(4, 64, 8)]     # (row, col), px
        >>> image = sum(np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 4.0) for r, c in atoms)
        >>> image += 0.5 * np.exp(-((yy - 28) ** 2 + (xx - 36) ** 2) / 4.0)   # the dopant
        >>> from agents.ensemble import EnsembleAgent, TrainingSettings, train_ensemble
        >>> tiny = TrainingSettings(members=1, steps=40, levels=2, base_filters=4, crop_size=32)
        >>> agent = EnsembleAgent(train_ensemble([image], [atoms], tiny), target="brightest")
        >>> prediction = agent.observe(image)
        >>> len(prediction.atoms)
        64
        >>> s = agent.suggest(1)[0]
        >>> round(s["x"]), round(s["y"])       # the dopant (beam x = column, y = row)
        (36, 28)
        >>> sorted(s)
        ['_id', 'atom', 'intensity', 'probability', 'target', 'uncertainty', 'x', 'y']
    """

    name = "ensemble"

    def __init__(
        self,
        ensemble: Union[Ensemble, str, os.PathLike] = "default",
        *,
        target: str = "uncertain",
        min_separation: float | None = None,
        num_threads: int | None = None,
        device: str = "auto",
        contrast: str = "auto",
        rescale: bool = True,
        **predict_kwargs: Any,
    ) -> None:
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if min_separation is not None and min_separation < 0:
            raise ValueError(f"min_separation must be >= 0, got {min_separation}")
        self.ensemble = ensemble if isinstance(ensemble, Ensemble) else load_ensemble(ensemble)
        self.target = target
        self.min_separation = min_separation
        self.num_threads = num_threads
        self.device_request = check_device(device)
        self.device = resolve_device(self.device_request)
        self.contrast = check_contrast(contrast)
        self.contrast_decision: ContrastDecision | None = None
        self.rescale = bool(rescale)
        #: the last image's binning before prediction (1: none) and its lattice repeat, px
        self.bin_factor = 1
        self.column_period: float | None = None
        self.predict_kwargs = predict_kwargs
        self.prediction: Prediction | None = None
        #: the survey image's own intensity at each atom (its units), smoothed over the footprint
        self.intensity = np.empty(0)
        #: how strong each atom's column is: ``intensity`` on bright columns, its negative on
        #: dark ones (ABF/BF); what ``target="brightest"`` ranks by
        self.strength = np.empty(0)
        self._suggested = np.empty((0, 2))
        self._observed = 0
        self.hot_pixels = 0
        #: pixels of the last image at the detector's full scale, levelled before prediction
        self.clipped_pixels = 0
        #: is the last image's atom map plausible, and why not (:mod:`.plausibility`)
        self.plausibility: AtomMapCheck | None = None

    # ------------------------------------------------------------------ observe

    def observe(self, survey_image: Any, detector: str | None = None) -> Prediction:
        """Find the atoms in a survey image (replaces the previous image's atoms).

        Args:
            survey_image: ``(H, W)`` image; isolated extreme pixels (hot pixels, X-ray
                spikes) are replaced by their neighbourhood's median first
                (:func:`agents.images.without_hot_pixels`; how many: :attr:`hot_pixels`).
            detector: the survey detector's name (``"HAADF"``, ``"ABF"``...), when known:
                under ``contrast="auto"`` it says whether the columns are bright or dark.

        Returns:
            the ensemble's :class:`Prediction`; atom ``(x, y)`` are ``prediction.xy``.
        """
        image = as_image(survey_image, "survey_image")
        # a hot pixel or X-ray spike is a one-pixel blob: with 40 of them (0.05 %) on the
        # real graphene image, 4 of the 5 most uncertain "atoms" suggested were hot pixels
        image, self.hot_pixels = without_hot_pixels(image)
        # a patch where the detector was full (a thick particle) must not set the scale the
        # members see the lattice at: levelled to the rest's 99.5th percentile
        levelled, self.clipped_pixels = with_clipped_levelled(image)
        self.contrast_decision = update_decision(
            self.contrast_decision, self.contrast, levelled, detector
        )
        oriented = orient(levelled, self.contrast_decision.contrast)
        # columns far larger than the members learned: each column's texture read as several
        # atoms (the real graphene image sampled 2 x finer: 4,755 "atoms" of 140); bin first
        self.bin_factor, self.column_period = bin_factor(oriented) if self.rescale else (1, None)
        if self.bin_factor > 1:
            log.info(
                "ensemble: the lattice repeats every %.0f px, more than the members learned: "
                "the image is binned %d x %d before prediction",
                self.column_period,
                self.bin_factor,
                self.bin_factor,
            )
        prediction = predict(
            self.ensemble,
            binned(oriented, self.bin_factor),
            num_threads=self.num_threads,
            device=self.device,
            **self.predict_kwargs,
        )
        self.prediction = unbinned(prediction, self.bin_factor, oriented.shape)
        # read on the image as recorded: an ABF atom's intensity is the (low) counts there,
        # not the negative counts of the inverted copy the members saw
        self.intensity = _atom_intensity(image, self.prediction)
        dark = self.contrast_decision.contrast == "dark"
        self.strength = -self.intensity if dark else self.intensity
        # the members see atoms in anything (noise, vacuum): say when the map is not plausible
        p = self.prediction
        self.plausibility = check_atom_map(
            oriented, p.atoms, atom_radius(p.area, p.probability), p.evidence
        )
        if not self.plausibility.ok:
            log.warning(
                "ensemble atoms implausible (%d atoms): %s",
                len(p.atoms),
                "; ".join(self.plausibility.reasons),
            )
        self._suggested = np.empty((0, 2))
        self._observed += 1
        return self.prediction

    def atoms(self) -> dict[str, list[float]]:
        """The current atoms as JSON-able columns: x, y, probability, uncertainty, intensity
        (the survey image's own value at the atom, in its units, dark columns included) and
        featureless (True where the image shows nothing above its noise: never suggested)."""
        p = self._require_prediction()
        xy = p.xy
        return {
            "x": xy[:, 0].tolist(),
            "y": xy[:, 1].tolist(),
            "probability": p.probability.tolist(),
            "uncertainty": p.uncertainty.tolist(),
            "intensity": self.intensity.tolist(),
            "featureless": self._featureless().tolist(),
        }

    # ------------------------------------------------------------------ suggest

    def suggest(self, n: int = 1) -> list[Suggestion]:
        """The next ``n`` atoms of the target class to put the beam on, best first.

        Atoms near a position already suggested for this image, or already measured, are
        skipped, so repeated calls walk down the list. Atoms where the image shows nothing
        above its noise (:attr:`plausibility`: noise maxima in vacuum, say) are never
        suggested. Fewer than ``n`` come back when the image has no more atoms.

        Raises:
            RuntimeError: before the first :meth:`observe`.
        """
        if int(n) < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        p = self._require_prediction()
        score = {
            "uncertain": p.uncertainty,
            "brightest": self.strength,
            "confident": p.probability,
        }[self.target]
        order = np.argsort(-score, kind="stable")
        xy = p.xy
        sep = self._separation(p)
        taken = np.concatenate([self._suggested, self.positions])
        featureless = self._featureless()
        out: list[Suggestion] = []
        for i in order:
            if len(out) >= int(n):
                break
            if featureless[i]:
                continue
            if len(taken) and np.min(np.hypot(*(taken - xy[i]).T)) < sep:
                continue
            out.append(
                self.make_suggestion(
                    xy[i, 0],
                    xy[i, 1],
                    atom=int(i),
                    target=self.target,
                    probability=float(p.probability[i]),
                    uncertainty=float(p.uncertainty[i]),
                    intensity=float(self.intensity[i]),
                )
            )
            taken = np.vstack([taken, xy[i]])
        if out:
            self._suggested = np.vstack([self._suggested, [[s["x"], s["y"]] for s in out]])
        return out

    def _separation(self, p: Prediction) -> float:
        if self.min_separation is not None:
            return float(self.min_separation)
        if len(p.atoms) < 2:
            return 1.0
        from scipy.spatial import cKDTree

        d, _ = cKDTree(p.atoms).query(p.atoms, k=2)
        return 0.5 * float(np.median(d[:, 1]))

    def _featureless(self) -> np.ndarray:
        """Per atom: True where the image shows nothing above its noise."""
        p = self._require_prediction()
        check = self.plausibility
        if check is None or len(check.featureless) != len(p.atoms):
            return np.zeros(len(p.atoms), dtype=bool)
        return check.featureless

    def _require_prediction(self) -> Prediction:
        if self.prediction is None:
            raise RuntimeError("no survey image yet: call observe(survey_image) first")
        return self.prediction

    # ------------------------------------------------------------------ report

    def config(self) -> dict[str, Any]:
        """How this agent was made (JSON-able): the ensemble by name with its weights'
        checksum (a replay must load the same weights), the target, the prediction settings
        (the atom rules filled in, so a later default cannot change what a replay finds) and
        the uncertainty calibration used (``None``: the members' variance)."""
        predict_kwargs = {**ATOM_RULES, **self.predict_kwargs}
        calibration = predict_kwargs.pop("calibration", "auto")
        if calibration == "auto":
            calibration = self.ensemble.calibration
        return {
            "ensemble": self.ensemble.name,
            "weights_sha256": self.ensemble.metadata.get("weights_sha256"),
            "target": self.target,
            "min_separation": self.min_separation,
            "predict": predict_kwargs,
            "calibration": calibration.to_dict() if calibration is not None else None,
            "device": self.device_request,
            "contrast": self.contrast,
            "rescale": self.rescale,
        }

    def report(self) -> dict[str, Any]:
        """Small JSON-able state: ensemble, target, atom count and uncertainty figures."""
        meta = self.ensemble.metadata
        out: dict[str, Any] = {
            "agent": self.name,
            "config": self.config(),
            "ensemble": self.ensemble.name,
            "members": len(self.ensemble),
            "trained": meta.get("created"),
            "target": self.target,
            # where the atoms were found (config() holds what was asked for)
            "device": describe(self.device),
            # bright or dark columns, and why (config() holds what was asked for)
            "contrast": (
                self.contrast_decision.as_dict()
                if self.contrast_decision is not None
                else {"asked": self.contrast, "contrast": None}
            ),
            "images_observed": self._observed,
            # isolated extreme pixels of the last image, replaced before prediction
            "hot_pixels": self.hot_pixels,
            # pixels of a clipped plateau (the detector full), levelled before prediction
            "clipped_pixels": self.clipped_pixels,
            # the last image's binning before prediction (columns far larger than learned)
            "binned": {"factor": self.bin_factor, "column_period_px": self.column_period},
            "suggested": len(self._suggested),
            "measured": len(self.values),
            # is the atom map plausible (None before the first image), and why not
            "plausibility": (
                self.plausibility.as_dict() if self.plausibility is not None else None
            ),
        }
        if self.prediction is not None:
            out.update(self.prediction.summary())
        return out


def _atom_intensity(image: np.ndarray, p: Prediction) -> np.ndarray:
    """Mean image intensity over a disc the size of each atom's footprint.

    Smoothing the image with a Gaussian of the footprint's radius and reading it at each
    atom averages out the shot noise, which would otherwise decide "brightest" on its own.
    """
    if len(p.atoms) == 0:
        return np.empty(0)
    radius = float(np.sqrt(np.median(p.area) / np.pi))
    smooth = ndimage.gaussian_filter(image.astype(np.float64), sigma=max(0.5, radius / 2))
    return ndimage.map_coordinates(smooth, p.atoms.T, order=1, mode="nearest")
