"""What :class:`~agents.logstar.agent.LoGStarAgent` checks about each image, apart from it.

Where the pixel size comes from (given, the last image's, the image's own lattice
reflections, or on a field too small for those its atoms' spacing) and whether a given one
agrees with them; whether the columns are bright or dark (:mod:`agents.contrast`, read at
the lattice's spacing); whether the atoms found are
plausible for the lattice. Kept apart from the agent's cycle (optimise, choose, classify,
suggest) so each stays short.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, Optional

import numpy as np

from ..contrast import ContrastDecision, decide_contrast, orient, update_decision
from .calibration import PixelSizeEstimate, compare_calibration, estimate_pixel_size
from .lattice import Lattice, check_pixel_size
from .neighbours import estimate_from_neighbours
from .plausibility import ImplausibleAtomsWarning, Plausibility, check_plausibility, log

__all__ = [
    "AMBIGUOUS",
    "MIN_SPACING_PX",
    "NEIGHBOURS_CONFIRM",
    "NEIGHBOURS_DISAGREE",
    "ImageChecks",
]

#: a pixel size from the FFT is reported as ambiguous when another one more than 5 % away
#: explains the image's spots this well relative to it
AMBIGUOUS = 0.8
#: a doubtful FFT reading is kept when the atoms' spacing agrees with it this well
NEIGHBOURS_CONFIRM = 0.05
#: a clear FFT reading the atoms' spacing differs from by more than this is warned about
NEIGHBOURS_DISAGREE = 0.10
#: columns closer than this (pixels) cannot be told apart in the image (two columns need a
#: pixel between them): LoG* would report a blob at every noise maximum instead
MIN_SPACING_PX = 2.0


class ImageChecks:
    """Mixin: the pixel size of each image, its contrast and the plausibility of its atoms.

    Expects ``lattice``, ``pixel_size_nm``, ``pixel_size_from_fft``, ``image_pixel_size_nm``,
    ``atoms``, ``contrast`` and ``warn_implausible`` on the agent; sets ``pixel_size_info``,
    ``contrast_decision`` and ``plausibility``.
    """

    lattice: Lattice
    pixel_size_nm: Optional[float]
    pixel_size_from_fft: bool
    image_pixel_size_nm: Optional[float]
    atoms: np.ndarray
    warn_implausible: bool
    pixel_size_info: Dict[str, Any]
    plausibility: Optional[Plausibility]
    contrast: str
    contrast_decision: Optional[ContrastDecision]

    def _pixel_for(
        self, pixel_size_nm: Optional[float], image: Optional[np.ndarray] = None
    ) -> float:
        """The pixel size to use: given with the image, given to the agent, the last image's,
        or (``"fft"``, or none known) estimated from ``image``'s lattice reflections.

        Raises:
            ValueError: none known, or one at which the lattice's columns are closer than
                :data:`MIN_SPACING_PX` (a survey at too low a magnification, or a wrong
                calibration: the message says which pixel size would do).
        """
        return self._resolved(self._pixel_size(pixel_size_nm, image))

    def _resolved(self, px: float) -> float:
        spacing = self.lattice.nn_distance_px(px)
        if spacing < MIN_SPACING_PX:
            nn_nm = spacing * px
            raise ValueError(
                f"at {px:.4g} nm/px the {self.lattice.name} columns ({nn_nm:.3g} nm apart) are "
                f"{spacing:.3g} px apart: fewer than {MIN_SPACING_PX:g} px, they cannot be told "
                f"apart. Check the survey image's calibration (pixel_size_nm='fft' reads it "
                f"from the lattice) or record the survey at {nn_nm / MIN_SPACING_PX:.3g} nm/px "
                "or finer"
            )
        return px

    def _pixel_size(self, pixel_size_nm: Optional[float], image: Optional[np.ndarray]) -> float:
        if image is not None and (
            self.pixel_size_from_fft
            or (
                pixel_size_nm is None
                and self.pixel_size_nm is None
                and self.image_pixel_size_nm is None
            )
        ):
            return self._pixel_from_image(image)
        if pixel_size_nm is not None:
            return check_pixel_size(pixel_size_nm)
        if self.pixel_size_nm is None and self.image_pixel_size_nm is not None:
            return self.image_pixel_size_nm  # the last survey image's calibration
        if self.pixel_size_nm is None:
            raise ValueError(
                "pixel_size_nm is unknown: give it with the image (the survey image's "
                "calibration) or to the agent"
            )
        return self.pixel_size_nm

    def _pixel_from_image(self, image: np.ndarray) -> float:
        """The pixel size from the image alone: its lattice reflections when they show
        clearly, else the spacing of its atoms (a small field), reported either way.

        The FFT's estimate (Hann window, else the flatter Tukey window:
        :func:`~agents.logstar.calibration.estimate_pixel_size`) is used when it is clear
        and unambiguous, and read through the Hann window; the atoms' spacing
        (:mod:`~agents.logstar.neighbours`) is measured beside it and a disagreement of
        more than :data:`NEIGHBOURS_DISAGREE` is warned about. When the reflections do not
        show clearly (a field of a few unit cells: too few spots, or a scale x sqrt 3 away
        explaining them as well) the FFT's reading is refused, unless the atoms' spacing
        confirms it within :data:`NEIGHBOURS_CONFIRM`, and the atoms' spacing is used,
        with a warning. With neither a clear reading nor the atoms' spacing it is an error
        asking for the pixel size (a doubtful reading was used before, with a warning: on a
        96 x 96 crop of the real graphene image it was 4 times too large).
        """
        error: Optional[str] = None
        try:
            estimate: Optional[PixelSizeEstimate] = estimate_pixel_size(
                image, self.lattice, window="auto"
            )
        except ValueError as exc:
            estimate, error = None, str(exc)
        neighbours = estimate_from_neighbours(image, self.lattice)
        info: Dict[str, Any] = {
            "source": "fft",
            "fft": estimate.as_dict() if estimate else None,
            "neighbours": neighbours.as_dict() if neighbours else None,
        }
        self.pixel_size_info = info
        doubt = None
        if estimate is None:
            doubt = f"its Fourier transform does not show the lattice {self.lattice.name} ({error})"
        elif not estimate.clear:
            rings = len({round(r["d_nm"], 6) for r in estimate.reflections})
            doubt = (
                f"its Fourier transform shows the lattice {self.lattice.name} only weakly "
                f"({len(estimate.reflections)} spots on {rings} rings, spread "
                f"{100 * estimate.spread:.1f} %; a clear reading needs 6 spots on 2 rings "
                "within 1 %)"
            )
        elif estimate.ambiguity > AMBIGUOUS:
            doubt = (
                "another pixel size explains its Fourier transform's reflections "
                f"{100 * estimate.ambiguity:.0f} % as well"
            )
        elif estimate.window != "hann":
            # read through the flat window only: its side lobes can pass for spots (the
            # twin's nanoparticles gave a "clear" graphene), so the atoms must agree
            doubt = (
                f"its Fourier transform shows the lattice {self.lattice.name} only through a "
                "flat window (too weakly for a Hann window), unconfirmed by the atoms' spacing"
            )
        if estimate is not None and doubt is None:
            if neighbours is not None:
                ratio = neighbours.pixel_size_nm / estimate.pixel_size_nm
                if abs(ratio - 1) > NEIGHBOURS_DISAGREE:
                    info["warning"] = (
                        f"pixel size {estimate.pixel_size_nm:.5g} nm/px from the FFT, but the "
                        f"atoms' spacing says {neighbours.pixel_size_nm:.5g} nm/px: one of "
                        "them reads the lattice wrong; give the calibration"
                    )
                    self._warn(info["warning"])
            return estimate.pixel_size_nm
        if neighbours is not None:
            assert doubt is not None
            if (
                estimate is not None
                and abs(estimate.pixel_size_nm / neighbours.pixel_size_nm - 1) <= NEIGHBOURS_CONFIRM
            ):
                info["confirmed_by"] = "neighbours"  # two independent readings agree
                return estimate.pixel_size_nm
            info["source"] = "neighbours"
            cells = self._cells_across(image.shape, neighbours.pixel_size_nm)
            info["warning"] = (
                f"the image's pixel size from the FFT was refused: {doubt}. Used "
                f"{neighbours.pixel_size_nm:.5g} nm/px from the spacing of its atoms "
                f"({neighbours.n_atoms} atoms, {neighbours.spacing_px:.1f} px apart, spread "
                f"{100 * neighbours.spread:.0f} %; good to a few %), the field spanning about "
                f"{cells} unit cells; give the calibration"
            )
            self._warn(info["warning"])
            return neighbours.pixel_size_nm
        raise ValueError(
            f"pixel_size_nm is unknown: {doubt}, and the image shows too few regular atoms "
            "to measure their spacing (both need a field of several unit cells each way): "
            "give the pixel size"
        )

    def _cells_across(self, shape: Any, pixel_size_nm: float) -> str:
        """``"R x C"``: how many unit cells (the longer cell vector) the field spans."""
        a = float(np.max(np.linalg.norm(np.asarray(self.lattice.cell, dtype=float), axis=1)))
        rows, cols = shape
        return f"{rows * pixel_size_nm / a:.1f} x {cols * pixel_size_nm / a:.1f}"

    def _fft_estimate(
        self, image: np.ndarray, reference: Optional[float] = None
    ) -> Optional[PixelSizeEstimate]:
        try:
            return estimate_pixel_size(image, self.lattice, reference=reference)
        except ValueError:
            return None

    def _cross_check(self, image: np.ndarray, px: float, given: Optional[float]) -> None:
        """Record where ``px`` came from and, for a given one, what the FFT says about it."""
        if self.pixel_size_info.get("source") in ("fft", "neighbours"):
            # estimated for this very image (asked for, or nothing given): a calibration the
            # image came with is recorded beside it, not compared with itself
            if given is not None:
                self.pixel_size_info["given_nm"] = float(given)
                self.pixel_size_info["fft_over_given"] = float(px / given)
            return
        estimate = self._fft_estimate(image, reference=px)
        self.pixel_size_info = compare_calibration(estimate, px, self.lattice)
        if "warning" in self.pixel_size_info:
            self._warn(self.pixel_size_info["warning"])
        own = self.pixel_size_nm
        if own is not None and abs(px / own - 1) > 0.01:
            # the image's calibration wins over the agent's own (which serves images without
            # one, and lets a new magnification re-optimise): given to override a wrong
            # calibration, the agent's would be passed over without a word
            self.pixel_size_info["agent_pixel_size_nm"] = own
            self.pixel_size_info["note"] = (
                f"the image came calibrated {px:.5g} nm/px, which is used; the agent's own "
                f"pixel size, {own:.5g} nm/px, serves only images without a calibration (to "
                "take the image's lattice instead of a wrong calibration: pixel_size_nm='fft')"
            )
            log.warning(self.pixel_size_info["note"])

    def _warn(self, message: str) -> None:
        log.warning(message)
        if self.warn_implausible:
            warnings.warn(message, ImplausibleAtomsWarning, stacklevel=4)

    def _spacing_px(self, pixel_size_nm: Optional[float]) -> Optional[float]:
        """The lattice's spacing in px from a calibration known before the image is read (the
        contrast is decided first: the atoms' spacing, a pixel size's fallback, is read on
        bright blobs); None when the pixel size is to come from the image itself."""
        if self.pixel_size_from_fft:
            return None
        px = pixel_size_nm if pixel_size_nm is not None else self.pixel_size_nm
        px = px if px is not None else self.image_pixel_size_nm
        return self.lattice.nn_distance_px(check_pixel_size(px)) if px is not None else None

    def _decide(
        self, image: Any, spacing_px: Optional[float], detector: Optional[str] = None
    ) -> ContrastDecision:
        """This image's contrast: the agent's decision kept, or made now (and recorded)."""
        decision = update_decision(
            self.contrast_decision, self.contrast, image, detector, spacing_px
        )
        if decision is not self.contrast_decision:
            self.contrast_decision = decision
            if decision.warning:
                self._warn(decision.warning)
        return decision

    def _oriented(self, image: np.ndarray, px: float) -> np.ndarray:
        """``image`` the way round the agent takes its images, without deciding for it: the
        agent's decision, or (none yet) one made for this image alone."""
        decision = self.contrast_decision or decide_contrast(
            self.contrast, image, None, self.lattice.nn_distance_px(px)
        )
        return orient(image, decision.contrast)

    def _check_atoms(self, prepared: np.ndarray, px: float) -> None:
        """Whatever the rewards say: do the atoms sit where the lattice puts them? When not,
        the pixel size the image suggests goes with the logged warning (a wrong calibration
        is the commonest cause), so the operator need not read the report to see it."""
        check = check_plausibility(self.atoms, prepared, self.lattice, px, quiet=True)
        if not check.ok:
            self._suggest_pixel_size(check, prepared, px)
            self._warn(check.message())
        self.plausibility = check

    def _suggest_pixel_size(self, check: Plausibility, image: np.ndarray, px: float) -> None:
        """The pixel size the image itself suggests, when a given one was used: its lattice
        reflections where they contradicted the calibration, else its atoms' spacing (on a
        field too small for clear reflections) when that differs by more than
        :data:`NEIGHBOURS_DISAGREE`. Run only on a failed check: a plausible image costs
        nothing more."""
        info = self.pixel_size_info
        if info.get("source") != "given":
            return  # read from this very image already: nothing else to suggest
        fft = info.get("fft") or {}
        if info.get("warning") and fft.get("pixel_size_nm"):
            check.suggest_pixel_size(fft["pixel_size_nm"], "its lattice reflections")
            return
        neighbours = estimate_from_neighbours(image, self.lattice)
        if neighbours is not None and abs(neighbours.pixel_size_nm / px - 1) > NEIGHBOURS_DISAGREE:
            check.suggest_pixel_size(neighbours.pixel_size_nm, "its atoms' spacing")
