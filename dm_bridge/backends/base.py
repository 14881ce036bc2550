"""The contract every instrument behind the bridge implements.

A *backend* is the instrument as the bridge server sees it: DigitalMicrograph on the
microscope PC, the digital twin, or a replay of recorded data. The server validates the wire
format; this module validates the *values* (limits, allowed settings) once, for every
backend (the checks themselves are :mod:`dm_bridge.backends.checks`), and then calls a small
set of ``_do_*`` methods that each backend implements.

Conventions (ARCHITECTURE.md, "Coordinates and units"):

* beam positions are in pixels of the current scan field, ``x`` = column, ``y`` = row,
  floats, ``(0, 0)`` the centre of the top-left pixel; the valid field is
  ``-0.5 <= x <= width - 0.5`` (likewise ``y``);
* energies in eV, times in seconds, lengths in nm unless a name says otherwise.

The server calls a backend from one thread only (inside DigitalMicrograph: the thread that
started the server), except :meth:`Backend.abort`, which may come from any thread.

Standard library and numpy only, Python 3.8 syntax: this module runs inside DigitalMicrograph.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import Aborted, BadRequest, OutOfRange, Unsupported
from ..types import (
    EELSParameters,
    ImageAcquisition,
    Limits,
    ScanParameters,
    SpectrumAcquisition,
    energy_axis,
)
from .checks import LimitChecks, _as_int

__all__ = [
    "Backend",
    "EELSParameters",
    "ImageAcquisition",
    "Limits",
    "ScanParameters",
    "SpectrumAcquisition",
    "energy_axis",
]


#: commands every backend answers (wire names, also the server's allow-list)
STANDARD_COMMANDS = (
    "hello",
    "get_scan_parameters",
    "set_scan_parameters",
    "acquire_image",
    "get_beam_position",
    "set_beam_position",
    "blank_beam",
    "unblank_beam",
    "get_eels_parameters",
    "set_eels_parameters",
    "acquire_spectrum",
    "acquire_spectra_at_points",
    "acquire_spectrum_image",
    "status",
    "abort",
)


class Backend(LimitChecks, ABC):
    """Base class of every instrument behind the bridge.

    Subclasses implement the ``_do_*`` methods (and :meth:`describe`); the public methods
    here validate arguments against :attr:`limits`, keep the current settings, account for
    instrument time and honour :meth:`abort`.

    Args:
        limits: what the instrument allows; defaults are generous but finite.
        time_scale: 0 returns at once (tests), 1 waits as long as the real instrument would
            (a live demo), 0.1 waits a tenth of it. Instrument time is always *reported* in
            full, whatever the scale. Backends driving real hardware ignore it.
    """

    #: short name on the wire ("twin", "replay", "dm", "minimal")
    kind = "abstract"

    def __init__(self, limits: Optional[Limits] = None, time_scale: float = 0.0) -> None:
        self.limits = limits or Limits()
        if time_scale < 0:
            raise ValueError("time_scale must be >= 0")
        self.time_scale = float(time_scale)
        self._scan = ScanParameters()
        self._eels = EELSParameters(channels=self.limits.sensor_channels)
        self._beam = (
            (self._scan.width - 1) / 2.0,
            (self._scan.height - 1) / 2.0,
        )
        self._blanked = False
        self._abort = threading.Event()
        self.instrument_time_total = 0.0
        self.last_error: Optional[str] = None

    # ---------------------------------------------------------------- construction from the CLI

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        """Add this backend's options to ``dm-bridge serve`` (an ``argparse`` parser).

        Subclasses call ``super().add_arguments(parser)`` and add their own; only the chosen
        backend's module is imported, so options of other backends cost nothing.
        """
        parser.add_argument(
            "--time-scale",
            type=float,
            default=0.0,
            help="0: answer at once; 1: take as long as the real instrument; 0.1: ten times "
            "faster (simulated backends only)",
        )
        parser.add_argument(
            "--max-exposure",
            type=float,
            default=Limits.max_exposure,
            help="refuse EELS exposures longer than this, in seconds",
        )

    @classmethod
    def options_from_arguments(cls, args: Any) -> Dict[str, Any]:
        """Keyword arguments for the constructor, from parsed ``dm-bridge serve`` options."""
        return {
            "time_scale": args.time_scale,
            "limits": Limits(max_exposure=args.max_exposure),
        }

    # ---------------------------------------------------------------- description

    @abstractmethod
    def describe(self) -> Dict[str, Any]:
        """Instrument description for ``hello``: name, high tension (kV), detectors,
        spectrometer, probe. JSON-able. The base adds ``limits``."""

    def capabilities(self) -> List[str]:
        """Commands this backend answers. Backends with extras (``get_truth``) extend it."""
        return list(STANDARD_COMMANDS)

    def hello(self) -> Dict[str, Any]:
        """Everything a client needs to know before its first real call."""
        description = dict(self.describe())
        description["limits"] = self.limits.to_dict()
        return {
            "backend": self.kind,
            "capabilities": self.capabilities(),
            "instrument": description,
            "timing": self.timing_overheads(),
        }

    def timing_overheads(self) -> Dict[str, float]:
        """What an acquisition costs on top of its dwell and exposure times, for clients
        to size their timeouts (``hello``'s ``timing``), in seconds: ``image_overhead``
        (per image), ``line_overhead`` (per scan line), ``spectrum_overhead`` (per
        spectrum: beam move, read-out), ``acquisition_overhead`` (per spectrum command:
        arming the camera), and ``time_scale`` (wall-clock seconds per instrument second;
        1 for real hardware). The defaults are generous guesses for a real microscope;
        backends that know better override them."""
        return {
            "image_overhead": 1.0,
            "line_overhead": 1e-3,
            "spectrum_overhead": 0.3,
            "acquisition_overhead": 3.0,
            "time_scale": 1.0,
        }

    def status(self) -> Dict[str, Any]:
        """Instrument-side status; the server adds idle/busy and its queue.

        Called from the thread that runs the backend only (it may talk to the instrument).
        """
        return {
            "beam_blanked": self._blanked,
            "instrument_time_total": self.instrument_time_total,
            "last_error": self.last_error,
        }

    def live_status(self) -> Dict[str, Any]:
        """The part of :meth:`status` that changes during a command, read from the
        backend's own attributes without calling the instrument: safe from any thread.
        The server adds it to the last :meth:`status` while a command runs."""
        return {"instrument_time_total": self.instrument_time_total}

    # ---------------------------------------------------------------- abort and time

    def abort(self) -> None:
        """Ask the running acquisition to stop as soon as it can (thread-safe)."""
        self._abort.set()

    def clear_abort(self) -> None:
        """Forget a previous abort; the server calls this before each instrument command."""
        if self._abort.is_set():
            self._abort.clear()

    def check_abort(self) -> None:
        """Raise :class:`Aborted` if an abort was requested. Call it inside long loops."""
        if self._abort.is_set():
            raise Aborted("acquisition aborted")

    def spend(self, seconds: float) -> float:
        """Account ``seconds`` of instrument time, waiting ``seconds * time_scale``.

        The wait ends early with :class:`Aborted` when an abort arrives.
        """
        seconds = max(0.0, float(seconds))
        self.instrument_time_total += seconds
        wait = seconds * self.time_scale
        if wait > 0:
            if self._abort.wait(wait):
                raise Aborted("acquisition aborted")
        else:
            self.check_abort()
        return seconds

    # ---------------------------------------------------------------- scan (DigiScan)

    @property
    def scan(self) -> ScanParameters:
        return self._scan

    def get_scan_parameters(self) -> Dict[str, Any]:
        """Current scan parameters, as the instrument reports them."""
        self._scan = self._do_read_scan_parameters(self._scan)
        return self._scan.to_dict()

    def set_scan_parameters(self, **changes: Any) -> Dict[str, Any]:
        """Change some scan parameters; the others keep their value.

        Raises:
            BadRequest: unknown parameter names or wrong types.
            OutOfRange: values outside :attr:`limits`.
        """
        new = self.validate_scan_parameters(changes)
        old = self._scan
        self._do_set_scan_parameters(new)
        self._scan = new
        if (new.width, new.height) != (old.width, old.height):
            # Keep the beam at the same relative place in the new field.
            bx, by = self._beam
            self._beam = (
                (bx + 0.5) * new.width / old.width - 0.5,
                (by + 0.5) * new.height / old.height - 0.5,
            )
        return self._scan.to_dict()

    def acquire_image(self) -> ImageAcquisition:
        """Scan the field once and return the image of every selected signal."""
        acq = self._do_acquire_image(self._scan)
        self.check_abort()  # aborted while the backend could not look: no partial data
        for name, img in acq.images.items():
            if img.shape != (self._scan.height, self._scan.width):
                raise AssertionError(
                    f"backend returned {name} image of shape {img.shape}, "
                    f"expected {(self._scan.height, self._scan.width)}"
                )
        acq.scan = self._scan
        return acq

    # ---------------------------------------------------------------- beam

    def get_beam_position(self) -> Tuple[float, float]:
        """Beam position ``(x, y)`` in pixels of the current scan field."""
        self._beam = self._do_read_beam_position(self._beam)
        return self._beam

    def set_beam_position(self, x: Any, y: Any) -> Tuple[float, float]:
        """Place the beam at ``(x, y)`` (pixels, sub-pixel allowed)."""
        x, y = self.check_position(x, y)
        self._do_set_beam_position(x, y)
        self._beam = (x, y)
        return self._beam

    def blank_beam(self) -> None:
        self._do_blank(True)
        self._blanked = True

    def unblank_beam(self) -> None:
        self._do_blank(False)
        self._blanked = False

    @property
    def beam_blanked(self) -> bool:
        return self._blanked

    # ---------------------------------------------------------------- EELS

    @property
    def eels(self) -> EELSParameters:
        return self._eels

    def get_eels_parameters(self) -> Dict[str, Any]:
        """Current EELS parameters as the instrument reports them (read back, not assumed)."""
        self._eels = self._do_read_eels_parameters(self._eels)
        return self._eels.to_dict()

    def set_eels_parameters(self, **changes: Any) -> Dict[str, Any]:
        """Change some EELS parameters; the others keep their value."""
        new = self.validate_eels_parameters(changes)
        self._do_set_eels_parameters(new)
        self._eels = new
        return self._eels.to_dict()

    def acquire_spectrum(self) -> SpectrumAcquisition:
        """One spectrum at the current beam position."""
        acq = self._do_acquire_spectrum(self._eels, self._beam)
        self.check_abort()
        acq.eels = self._eels
        if acq.positions is None:
            acq.positions = np.asarray([self._beam], dtype=np.float64)
        return acq

    def acquire_spectra_at_points(self, points: Any) -> SpectrumAcquisition:
        """One spectrum at each ``(x, y)`` of ``points``, in the given order.

        The beam is left at the last point. Aborting returns nothing (``Aborted``); the
        positions reached so far are in :attr:`instrument_time_total` only.
        """
        pts = self.check_points(points)
        acq = self._do_acquire_spectra_at_points(self._eels, pts)
        self._beam = (float(pts[-1, 0]), float(pts[-1, 1]))
        self.check_abort()
        acq.eels = self._eels
        acq.positions = pts
        return acq

    def acquire_spectrum_image(
        self,
        rows: Any,
        cols: Any,
        region: Optional[Sequence[Any]] = None,
    ) -> SpectrumAcquisition:
        """A ``rows x cols`` grid of spectra, rastered row by row.

        Args:
            rows, cols: grid shape.
            region: ``(x0, y0, x1, y1)`` pixel coordinates of the first and last grid
                positions; default: the whole scan field, ``(0, 0, width-1, height-1)``.
        """
        rows = _as_int("rows", rows)
        cols = _as_int("cols", cols)
        if rows < 1 or cols < 1:
            raise OutOfRange("rows and cols must be >= 1")
        if rows * cols > self.limits.max_spectrum_image_positions:
            raise OutOfRange(
                f"{rows}x{cols} = {rows * cols} positions; at most "
                f"{self.limits.max_spectrum_image_positions} per spectrum image"
            )
        if region is None:
            region = (0.0, 0.0, self._scan.width - 1.0, self._scan.height - 1.0)
        if not isinstance(region, (list, tuple)) or len(region) != 4:
            raise BadRequest("region must be [x0, y0, x1, y1]")
        x0, y0 = self.check_position(region[0], region[1])
        x1, y1 = self.check_position(region[2], region[3])
        xs = np.linspace(x0, x1, cols)
        ys = np.linspace(y0, y1, rows)
        gx, gy = np.meshgrid(xs, ys)
        pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
        acq = self._do_acquire_spectra_at_points(self._eels, pts)
        self._beam = (float(pts[-1, 0]), float(pts[-1, 1]))
        self.check_abort()
        acq.spectra = acq.spectra.reshape(rows, cols, -1)
        acq.positions = pts
        acq.eels = self._eels
        return acq

    # ---------------------------------------------------------------- for subclasses

    def _do_read_scan_parameters(self, assumed: ScanParameters) -> ScanParameters:
        """Read scan parameters back from the instrument; default: what was last set."""
        return assumed

    def _do_set_scan_parameters(self, params: ScanParameters) -> None:
        """Apply validated scan parameters. Default: nothing to do (the twin keeps state)."""

    @abstractmethod
    def _do_acquire_image(self, scan: ScanParameters) -> ImageAcquisition:
        """Acquire one image of each signal in ``scan.signals``."""

    def _do_read_beam_position(self, assumed: Tuple[float, float]) -> Tuple[float, float]:
        return assumed

    def _do_set_beam_position(self, x: float, y: float) -> None:
        """Move the beam; ``(x, y)`` is already validated, in pixels."""

    def _do_blank(self, blank: bool) -> None:
        """Blank (True) or unblank (False) the beam."""

    def _do_read_eels_parameters(self, assumed: EELSParameters) -> EELSParameters:
        return assumed

    def _do_set_eels_parameters(self, params: EELSParameters) -> None:
        """Apply validated EELS parameters."""

    @abstractmethod
    def _do_acquire_spectrum(
        self, eels: EELSParameters, position: Tuple[float, float]
    ) -> SpectrumAcquisition:
        """Acquire one spectrum with the beam at ``position``."""

    def _do_acquire_spectra_at_points(
        self, eels: EELSParameters, points: np.ndarray
    ) -> SpectrumAcquisition:
        """Default: move and acquire point by point, checking for abort between points.

        Backends that can do better (the twin vectorises, DigiScan can drive a list of
        positions) override this.
        """
        spectra = np.empty((len(points), eels.channels), dtype=np.float32)
        total = 0.0
        axis = energy_axis(eels)
        for i, (x, y) in enumerate(points):
            self.check_abort()
            self._do_set_beam_position(float(x), float(y))
            self._beam = (float(x), float(y))
            one = self._do_acquire_spectrum(eels, self._beam)
            spectra[i] = one.spectra
            total += one.instrument_time
            axis = one.energy_axis
        return SpectrumAcquisition(spectra=spectra, energy_axis=axis, instrument_time=total)

    # ---------------------------------------------------------------- extras

    def get_truth(self) -> Dict[str, Any]:
        """Ground truth of a simulated sample. Only the twin has it."""
        raise Unsupported(f"{self.kind} backend has no ground truth")

    def close(self) -> None:
        """Release the instrument (called when the server stops)."""


def now() -> float:
    """Wall-clock time stamp (seconds since the epoch) for replies."""
    return time.time()
