"""Values that cross the bridge: scan and EELS settings, limits, acquisitions.

Shared by the backends (which produce them), the server and clients (which carry them) and
the Ophyd devices (which read them), so that code holding an acquisition never needs the
backend layer. ``dm_bridge.backends.base`` re-exports all of them.

Conventions (ARCHITECTURE.md, "Coordinates and units"): beam positions in pixels of the
current scan field (``x`` = column, ``y`` = row, ``(0, 0)`` the centre of the top-left pixel);
energies in eV, times in seconds, lengths in nm unless a name says otherwise.

Standard library and numpy only, Python 3.8 syntax: this module runs inside DigitalMicrograph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = [
    "EELSParameters",
    "ImageAcquisition",
    "Limits",
    "ScanParameters",
    "SpectrumAcquisition",
    "energy_axis",
]


@dataclass(frozen=True)
class ScanParameters:
    """DigiScan settings for a survey image.

    Attributes:
        width: pixels per scan line.
        height: scan lines.
        dwell_time: time the beam stays on each pixel, in seconds (DM's "pixel time").
        rotation: scan rotation in degrees, counter-clockwise.
        field_of_view: width of the scanned area in nm; pixels are square, so the pixel size
            is ``field_of_view / width``.
        signals: detector signals to record, e.g. ``("HAADF",)``.
    """

    width: int = 512
    height: int = 512
    dwell_time: float = 2e-6
    rotation: float = 0.0
    field_of_view: float = 16.0
    signals: Tuple[str, ...] = ("HAADF",)

    @property
    def pixel_size(self) -> float:
        """Pixel size in nm."""
        return self.field_of_view / self.width

    def to_dict(self) -> Dict[str, Any]:
        # (not dataclasses.asdict: it deep-copies, and this runs for every image)
        return {
            "width": self.width,
            "height": self.height,
            "dwell_time": self.dwell_time,
            "rotation": self.rotation,
            "field_of_view": self.field_of_view,
            "signals": list(self.signals),
        }


@dataclass(frozen=True)
class EELSParameters:
    """EELS camera and spectrometer settings.

    Attributes:
        exposure: exposure time of one spectrum in seconds.
        energy_offset: the spectrometer's energy-loss setting in eV (DM: ``IFSetEnergyLoss``,
            the drift tube). The calibrated axis of an acquisition is
            ``SpectrumAcquisition.energy_axis``; :func:`energy_axis` (``energy_offset`` at
            channel 0) equals it only where the instrument puts the set loss at channel 0,
            as the twin does.
        dispersion: eV per sensor column (the spectrometer's dispersion setting).
        binning: horizontal binning (1, 2, 4 or 8); each returned channel sums ``binning``
            sensor columns, so a channel spans ``dispersion * binning`` eV.
        channels: number of channels returned; at most ``sensor_channels // binning``.
    """

    exposure: float = 0.01
    energy_offset: float = -20.0
    dispersion: float = 0.25
    binning: int = 1
    channels: int = 2048

    @property
    def channel_width(self) -> float:
        """Energy width of one returned channel, in eV."""
        return self.dispersion * self.binning

    def to_dict(self) -> Dict[str, Any]:
        return {
            "exposure": self.exposure,
            "energy_offset": self.energy_offset,
            "dispersion": self.dispersion,
            "binning": self.binning,
            "channels": self.channels,
        }


def energy_axis(params: EELSParameters) -> np.ndarray:
    """Energy loss (eV) at the centre of each returned channel."""
    return params.energy_offset + params.channel_width * np.arange(
        params.channels, dtype=np.float64
    )


@dataclass(frozen=True)
class Limits:
    """What the instrument (or its operator) allows; reported by ``hello``.

    The bridge refuses anything outside these with an ``out_of_range`` error, before the
    instrument sees it. ``max_exposure`` is the operator's cap (the issue's "exposure above a
    configured cap"); the others protect the server from absurd requests.
    """

    image_size: Tuple[int, int] = (8, 4096)
    dwell_time: Tuple[float, float] = (1e-7, 0.1)
    field_of_view: Tuple[float, float] = (0.1, 1e5)
    rotation: Tuple[float, float] = (-360.0, 360.0)
    max_exposure: float = 10.0
    min_exposure: float = 1e-4
    energy_offset: Tuple[float, float] = (-200.0, 3000.0)
    dispersion: Tuple[float, float] = (0.005, 5.0)
    binnings: Tuple[int, ...] = (1, 2, 4, 8)
    sensor_channels: int = 2048
    max_points: int = 100_000
    max_spectrum_image_positions: int = 512 * 512
    signals: Tuple[str, ...] = ("HAADF", "BF", "ABF")

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class ImageAcquisition:
    """One survey image, possibly several signals recorded in the same scan.

    Attributes:
        images: signal name -> 2-D array (height, width), float32.
        pixel_size: nm per pixel (square pixels).
        origin: position of the centre of pixel (0, 0), in nm, ``(x, y)``.
        units: length unit of ``pixel_size`` and ``origin`` (``"nm"``).
        instrument_time: seconds the acquisition takes on the instrument.
        scan: the scan parameters in force.
        metadata: anything else worth keeping (drift applied, dose, DM tags).
    """

    images: Dict[str, np.ndarray]
    pixel_size: float
    origin: Tuple[float, float] = (0.0, 0.0)
    units: str = "nm"
    instrument_time: float = 0.0
    scan: Optional[ScanParameters] = None
    metadata: Dict[str, Any] = field(default_factory=dict)


@dataclass
class SpectrumAcquisition:
    """One spectrum, a stack at several positions, or a spectrum image.

    Attributes:
        spectra: ``(channels,)`` for one spectrum, ``(N, channels)`` for a stack,
            ``(rows, cols, channels)`` for a spectrum image; float32 counts.
        energy_axis: ``(channels,)`` float64, eV.
        positions: ``(N, 2)`` beam positions ``(x, y)`` in pixels where each spectrum was
            taken (the requested points for a stack, the grid for a spectrum image).
        instrument_time: seconds the acquisition takes on the instrument.
        eels: the EELS parameters in force.
        metadata: anything else worth keeping.
    """

    spectra: np.ndarray
    energy_axis: np.ndarray
    positions: Optional[np.ndarray] = None
    instrument_time: float = 0.0
    eels: Optional[EELSParameters] = None
    metadata: Dict[str, Any] = field(default_factory=dict)
