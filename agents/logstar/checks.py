"""What :class:`~agents.logstar.agent.LoGStarAgent` checks about each image, apart from it.

Where the pixel size comes from (given, the last image's, or the image's own lattice
reflections) and whether a given one agrees with them; whether the atoms found are
plausible for the lattice. Kept apart from the agent's cycle (optimise, choose, classify,
suggest) so each stays short.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, Optional

import numpy as np

from .calibration import PixelSizeEstimate, compare_calibration, estimate_pixel_size
from .lattice import Lattice, check_pixel_size
from .plausibility import ImplausibleAtomsWarning, Plausibility, check_plausibility, log

__all__ = ["AMBIGUOUS", "ImageChecks"]

#: a pixel size from the FFT is reported as ambiguous when another one more than 5 % away
#: explains the image's spots this well relative to it
AMBIGUOUS = 0.8


class ImageChecks:
    """Mixin: the pixel size of each image and the plausibility of its atoms.

    Expects ``lattice``, ``pixel_size_nm``, ``pixel_size_from_fft``, ``image_pixel_size_nm``,
    ``atoms`` and ``warn_implausible`` on the agent; sets ``pixel_size_info`` and
    ``plausibility``.
    """

    lattice: Lattice
    pixel_size_nm: Optional[float]
    pixel_size_from_fft: bool
    image_pixel_size_nm: Optional[float]
    atoms: np.ndarray
    warn_implausible: bool
    pixel_size_info: Dict[str, Any]
    plausibility: Optional[Plausibility]

    def _pixel_for(
        self, pixel_size_nm: Optional[float], image: Optional[np.ndarray] = None
    ) -> float:
        """The pixel size to use: given with the image, given to the agent, the last image's,
        or (``"fft"``, or none known) estimated from ``image``'s lattice reflections."""
        if image is not None and (
            self.pixel_size_from_fft
            or (
                pixel_size_nm is None
                and self.pixel_size_nm is None
                and self.image_pixel_size_nm is None
            )
        ):
            estimate = self._fft_estimate(image)
            if estimate is None:
                raise ValueError(
                    "pixel_size_nm is unknown and the image's Fourier transform does not show "
                    f"the lattice {self.lattice.name}: give the pixel size"
                )
            self.pixel_size_info = {"source": "fft", "fft": estimate.as_dict()}
            doubt = None
            if not estimate.clear:
                doubt = (
                    f"the image shows the lattice {self.lattice.name} only weakly "
                    f"({len(estimate.reflections)} spots)"
                )
            elif estimate.ambiguity > AMBIGUOUS:
                doubt = (
                    f"another pixel size explains the image's reflections "
                    f"{100 * estimate.ambiguity:.0f} % as well"
                )
            if doubt is not None:
                self.pixel_size_info["warning"] = (
                    f"pixel size {estimate.pixel_size_nm:.5g} nm/px from the FFT is doubtful: "
                    f"{doubt}; give the calibration"
                )
                self._warn(self.pixel_size_info["warning"])
            return estimate.pixel_size_nm
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

    def _fft_estimate(
        self, image: np.ndarray, reference: Optional[float] = None
    ) -> Optional[PixelSizeEstimate]:
        try:
            return estimate_pixel_size(image, self.lattice, reference=reference)
        except ValueError:
            return None

    def _cross_check(self, image: np.ndarray, px: float, given: Optional[float]) -> None:
        """Record where ``px`` came from and, for a given one, what the FFT says about it."""
        if self.pixel_size_info.get("source") == "fft":
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

    def _warn(self, message: str) -> None:
        log.warning(message)
        if self.warn_implausible:
            warnings.warn(message, ImplausibleAtomsWarning, stacklevel=4)

    def _check_atoms(self, prepared: np.ndarray, px: float) -> None:
        """Whatever the rewards say: do the atoms sit where the lattice puts them?"""
        self.plausibility = check_plausibility(
            self.atoms, prepared, self.lattice, px, warn=self.warn_implausible
        )
