"""The shared types of recorded data: :class:`Recording`, :class:`GridAxis`, the error.

The bottom of the recording modules: the loader (:mod:`.recording`), the plain-array layout
(:mod:`.recording_arrays`), the interpretation of signals (:mod:`.recording_signals`) and the
export (:mod:`.recording_export`) all import from here, and this module imports none of them,
so each imports only downward.

Standard library and numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from ..errors import InstrumentError

__all__ = [
    "DEFAULT_SIGNAL",
    "NM_PER_UNIT",
    "GridAxis",
    "PathLike",
    "Recording",
    "RecordingError",
]

PathLike = Union[str, Path]

#: length units a file may use, in nm
NM_PER_UNIT = {
    "nm": 1.0,
    "µm": 1e3,  # micro sign
    "μm": 1e3,  # Greek mu
    "um": 1e3,
    "micron": 1e3,
    "mm": 1e6,
    "m": 1e9,
    "\u00c5": 0.1,  # A with ring
    "\u212b": 0.1,  # Angstrom sign (same glyph, another code point)
    "angstrom": 0.1,
    "pm": 1e-3,
}
#: name of a survey image whose detector the file does not tell (and of one synthesised
#: from the spectra): no detector's name, so that nobody takes its contrast from the name.
#: It was "HAADF": a real ABF image saved without metadata (columns dark) then had the atom
#: finders and DKL's seed points look for bright columns, i.e. between the atoms; with no
#: name they read the contrast from the image itself (agents.contrast). Name the detector
#: with ``signal=`` (``dm-bridge serve --signal ABF``) where the file does not.
DEFAULT_SIGNAL = "survey"


class RecordingError(InstrumentError, ValueError):
    """A recording cannot be read or does not make sense (unknown format, missing spectrum
    image, inconsistent shapes, no energy calibration). Also a ``ValueError``."""


@dataclass(frozen=True)
class GridAxis:
    """Spatial calibration of one direction of a pixel grid.

    Attributes:
        size: pixels along this direction.
        scale: nm per pixel (1.0 when uncalibrated).
        offset: position of the near edge of the first pixel, in nm.
        calibrated: False when the file gave no length calibration.
    """

    size: int
    scale: float = 1.0
    offset: float = 0.0
    calibrated: bool = False

    def centre(self, index: float) -> float:
        """Position in nm of fractional pixel ``index`` (0 = centre of the first pixel)."""
        return self.offset + (index + 0.5) * self.scale


@dataclass
class Recording:
    """Survey images and a spectrum image with their calibrations, in nm, eV and s.

    Attributes:
        survey: detector signal -> ``(height, width)`` float32 image; at least one.
        survey_x, survey_y: calibration of the survey's columns and rows.
        spectra: ``(rows, cols, channels)`` float32 spectrum image, or None (survey only).
        spectrum_x, spectrum_y: calibration of the spectrum image's columns and rows.
        energy_offset: energy loss of the first channel, in eV.
        dispersion: eV per channel.
        exposure: seconds per spectrum, None when the file does not say.
        dwell_time: seconds per survey pixel, None when the file does not say.
        high_tension_kv: accelerating voltage, None when unknown.
        microscope: microscope name, None when unknown.
        spectrometer: spectrometer name, None when unknown.
        sources: the files read.
        notes: how the recording was interpreted (assumed units, synthesised survey...).
    """

    survey: Dict[str, np.ndarray]
    survey_x: GridAxis
    survey_y: GridAxis
    spectra: Optional[np.ndarray] = None
    spectrum_x: Optional[GridAxis] = None
    spectrum_y: Optional[GridAxis] = None
    energy_offset: float = 0.0
    dispersion: float = 1.0
    exposure: Optional[float] = None
    dwell_time: Optional[float] = None
    high_tension_kv: Optional[float] = None
    microscope: Optional[str] = None
    spectrometer: Optional[str] = None
    sources: List[str] = field(default_factory=list)
    notes: Dict[str, Any] = field(default_factory=dict)

    @property
    def width(self) -> int:
        """Survey width in pixels (the replay's scan width)."""
        return self.survey_x.size

    @property
    def height(self) -> int:
        """Survey height in pixels (the replay's scan height)."""
        return self.survey_y.size

    @property
    def channels(self) -> int:
        """Channels per spectrum (0 without a spectrum image)."""
        return 0 if self.spectra is None else int(self.spectra.shape[-1])

    @property
    def energy_axis(self) -> np.ndarray:
        """Energy loss (eV) of each channel, as the bridge computes it."""
        return self.energy_offset + self.dispersion * np.arange(self.channels, dtype=np.float64)
