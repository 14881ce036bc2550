"""Adoption backend: the bridge in front of a lab's existing Pyro5 DigitalMicrograph server.

Many groups already run the public Pyro5 ``ArrayServer`` inside DigitalMicrograph (the first
paper's server). With ``dm-bridge serve --backend pyro --pyro-uri
PYRO:array.server@host:9091`` the bridge speaks to it from any PC, so those labs get
ophyd-stem's devices, plans and catalog without touching the microscope PC.

That server's conventions (every array travels as ``(list, shape, dtype)``):

=========================================  ============================================
``get_ds(size, pixelTime)``                one square DigiScan frame, ``size`` pixels a
                                           side, ``pixelTime`` µs per pixel
``get_beam_pos()``                         the beam's DigiScan position ``(x, y)``
``set_beam_pos(x, y)``                     park the beam at a DigiScan position
``activate_camera()``                      arm the EELS camera (once)
``acquire_camera(exposure)``               expose (s); the camera image stays there
``get_eels()``                             that image summed to a spectrum
``set_energy_Offset(offset)``              the spectrometer's energy loss, eV
=========================================  ============================================

What it cannot do is emulated here or reported ``unsupported``:

* *emulated*: the read-back of exposure, dispersion and energy offset (the values last set
  are reported; the dispersion is the one given with ``--pyro-dispersion``); fewer channels
  than the camera's width (the first ones are kept); spectra at many points (one
  ``set_beam_pos`` + ``acquire_camera`` + ``get_eels`` per point, with abort between
  points); the field of view (``--pyro-field-of-view``, the operator's statement: the server
  cannot read the magnification);
* *unsupported*: non-square images, scan rotation, other detectors than the server's one
  signal, binning other than 1, changing the dispersion, beam blanking, ground truth.

Beam positions: the server takes DigiScan coordinates; the bridge converts pixels with
``ds = offset + pixel * step`` per axis (``--pyro-beam-frame OX,OY,SX,SY``, default
``0,0,1,1``: the server's own default, under which DigiScan coordinates are pixels).

Pyro5 is needed (``pip install 'ophyd-stem[pyro]'``), on the PC running the bridge only. A
Pyro5 proxy belongs to one thread: it is made in the thread that serves the backend.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import replace
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import InstrumentError, Unsupported
from .base import (
    Backend,
    EELSParameters,
    ImageAcquisition,
    Limits,
    ScanParameters,
    SpectrumAcquisition,
    energy_axis,
)

__all__ = ["PyroArrayServerBackend", "array_from_pyro"]

#: what the ArrayServer cannot do, reported by ``hello`` (``instrument.adoption``)
EMULATED = [
    "read-back of exposure, dispersion and energy offset (the values last set)",
    "channels fewer than the camera's width (the first ones are kept)",
    "acquire_spectra_at_points and acquire_spectrum_image (one call pair per point)",
    "field of view (stated with --pyro-field-of-view)",
]
UNSUPPORTED = [
    "non-square images",
    "scan rotation",
    "more than one detector signal",
    "binning other than 1",
    "changing the dispersion",
    "beam blanking",
    "get_truth",
]


def array_from_pyro(value: Any, what: str) -> np.ndarray:
    """An array sent the ArrayServer's way, ``(list, shape, dtype)``, as numpy.

    Raises:
        InstrumentError: not that shape of answer, or not numbers.
    """
    try:
        data, shape, dtype = value
        dt = np.dtype(str(dtype))
        if dt.kind not in "uif":
            raise TypeError(f"dtype {dt} is not numeric")
        return np.asarray(data, dtype=dt).reshape([int(n) for n in shape])
    except (TypeError, ValueError) as exc:
        raise InstrumentError(
            f"the Pyro5 server's {what} is not (list, shape, dtype): {exc}"
        ) from None


class PyroArrayServerBackend(Backend):
    """The instrument behind a Pyro5 ``ArrayServer`` (a lab's existing DM server).

    Args:
        uri: the server's Pyro5 URI, e.g. ``"PYRO:array.server@10.0.0.79:9091"``.
        limits, time_scale: see :class:`~dm_bridge.backends.base.Backend` (time_scale is
            ignored: the microscope takes the time it takes).
        signal: name of the one detector the server scans (its DigiScan signal).
        beam_frame: ``(offset_x, offset_y, step_x, step_y)``: DigiScan position of pixel
            ``(x, y)`` is ``offset + pixel * step``.
        field_of_view: width of the scanned area in nm, as the operator states it.
        dispersion: eV per channel of the spectrometer setting in use.
        energy_offset: the energy loss set on the spectrometer now, eV (reported until the
            first ``set_eels_parameters``).
        call_timeout: seconds a Pyro5 call may take before it fails.
        proxy_factory: makes the Pyro5 proxy from the URI (tests); default ``Pyro5.api.Proxy``.

    Example::

        dm-bridge serve --backend pyro --pyro-uri PYRO:array.server@10.0.0.79:9091 \\
            --pyro-field-of-view 20 --pyro-dispersion 0.25
    """

    kind = "pyro"

    def __init__(
        self,
        uri: str,
        limits: Optional[Limits] = None,
        time_scale: float = 0.0,
        signal: str = "HAADF",
        beam_frame: Sequence[float] = (0.0, 0.0, 1.0, 1.0),
        field_of_view: float = 16.0,
        dispersion: float = 1.0,
        energy_offset: float = 0.0,
        call_timeout: float = 120.0,
        proxy_factory: Any = None,
    ) -> None:
        if not isinstance(uri, str) or not uri.startswith(("PYRO:", "PYRONAME:")):
            raise ValueError(f"a Pyro5 URI looks like PYRO:array.server@host:9091, got {uri!r}")
        frame = [float(v) for v in beam_frame]
        if len(frame) != 4 or not all(map(math.isfinite, frame)) or 0 in frame[2:]:
            raise ValueError("beam_frame is (offset_x, offset_y, step_x, step_y), steps != 0")
        limits = replace(limits or Limits(), signals=(signal,), binnings=(1,))
        super().__init__(limits=limits, time_scale=0.0)
        self.uri = uri
        self.beam_frame = tuple(frame)
        self.call_timeout = float(call_timeout)
        self._proxy_factory = proxy_factory
        self._proxy: Any = None
        self._camera_ready = False
        self._scan = replace(self._scan, signals=(signal,), field_of_view=float(field_of_view))
        self._eels = replace(
            self._eels, dispersion=float(dispersion), energy_offset=float(energy_offset)
        )
        self.validate_scan_parameters({"field_of_view": field_of_view})
        self.validate_eels_parameters({"dispersion": dispersion, "energy_offset": energy_offset})

    # ---------------------------------------------------------------- construction from the CLI

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        """Options of ``dm-bridge serve --backend pyro``."""
        super().add_arguments(parser)
        parser.add_argument("--pyro-uri", required=True, help="PYRO:array.server@host:9091")
        parser.add_argument("--pyro-signal", default="HAADF", help="the server's detector name")
        parser.add_argument(
            "--pyro-beam-frame",
            default="0,0,1,1",
            metavar="OX,OY,SX,SY",
            help="DigiScan position of pixel (x, y) = (OX + x*SX, OY + y*SY)",
        )
        parser.add_argument(
            "--pyro-field-of-view", type=float, default=16.0, help="scanned width, nm (stated)"
        )
        parser.add_argument(
            "--pyro-dispersion", type=float, default=1.0, help="eV per channel (stated)"
        )
        parser.add_argument(
            "--pyro-energy-offset", type=float, default=0.0, help="energy loss set now, eV"
        )
        parser.add_argument(
            "--pyro-timeout", type=float, default=120.0, help="seconds per Pyro5 call"
        )

    @classmethod
    def options_from_arguments(cls, args: Any) -> Dict[str, Any]:
        opts = super().options_from_arguments(args)
        opts.pop("time_scale", None)
        try:
            frame = [float(v) for v in str(args.pyro_beam_frame).split(",")]
        except ValueError:
            raise ValueError(
                f"--pyro-beam-frame wants OX,OY,SX,SY, got {args.pyro_beam_frame!r}"
            ) from None
        opts.update(
            uri=args.pyro_uri,
            signal=args.pyro_signal,
            beam_frame=frame,
            field_of_view=args.pyro_field_of_view,
            dispersion=args.pyro_dispersion,
            energy_offset=args.pyro_energy_offset,
            call_timeout=args.pyro_timeout,
        )
        return opts

    # ---------------------------------------------------------------- the Pyro5 server

    def _server(self) -> Any:
        if self._proxy is None:
            if self._proxy_factory is None:
                try:
                    import Pyro5.api
                except ImportError as exc:
                    raise InstrumentError(
                        f"the pyro backend needs Pyro5 (pip install 'ophyd-stem[pyro]'): {exc}"
                    ) from None
                self._proxy_factory = Pyro5.api.Proxy
            proxy = self._proxy_factory(self.uri)
            proxy._pyroTimeout = self.call_timeout
            self._proxy = proxy
        else:
            claim = getattr(self._proxy, "_pyroClaimOwnership", None)
            if claim is not None:
                claim()  # a Pyro5 proxy belongs to one thread: the serving thread
        return self._proxy

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._server(), name)(*args)
        except InstrumentError:
            raise
        except Exception as exc:  # Pyro5's communication errors and the server's own
            if _connection_lost(exc):
                # A new proxy (a new connection) for the next call. The server registers
                # its class, so a new connection (or a restarted DM) is a new instance of
                # it, whose camera nobody armed yet.
                self._proxy = None
                self._camera_ready = False
            raise InstrumentError(
                f"the Pyro5 DM server at {self.uri} failed in {name}: {type(exc).__name__}: {exc}"
            ) from exc

    # ---------------------------------------------------------------- description

    def describe(self) -> Dict[str, Any]:
        return {
            "name": f"Pyro5 DM ArrayServer at {self.uri}",
            "high_tension_kv": None,
            "detectors": list(self.limits.signals),
            "spectrometer": {
                "name": "ArrayServer camera",
                "sensor_channels": self.limits.sensor_channels,
            },
            "probe": {},
            "adoption": {"server": self.uri, "emulated": EMULATED, "unsupported": UNSUPPORTED},
        }

    def timing_overheads(self) -> Dict[str, float]:
        """Arrays travel as Python lists: seconds per image and per spectrum on top."""
        return {
            "image_overhead": 5.0,
            "line_overhead": 2e-3,
            "spectrum_overhead": 1.0,
            "acquisition_overhead": 3.0,
            "time_scale": 1.0,
        }

    # ---------------------------------------------------------------- scan

    def _do_set_scan_parameters(self, params: ScanParameters) -> None:
        if params.width != params.height:
            raise Unsupported(
                "the Pyro5 ArrayServer scans square images only (get_ds(size)): "
                f"asked for {params.width}x{params.height}"
            )
        if params.rotation != 0.0:
            raise Unsupported("the Pyro5 ArrayServer cannot rotate the scan")

    def _do_acquire_image(self, scan: ScanParameters) -> ImageAcquisition:
        image = array_from_pyro(
            self._call("get_ds", scan.width, scan.dwell_time * 1e6), "DigiScan image"
        )
        if image.shape != (scan.height, scan.width):
            raise InstrumentError(
                f"the Pyro5 server returned a {image.shape} image, asked for "
                f"{(scan.height, scan.width)}"
            )
        seconds = self.spend(scan.width * scan.height * scan.dwell_time)
        return ImageAcquisition(
            images={scan.signals[0]: image.astype(np.float32)},
            pixel_size=scan.pixel_size,
            instrument_time=seconds,
            metadata={
                "field_of_view_source": "stated (--pyro-field-of-view)",
                "server": self.uri,
            },
        )

    # ---------------------------------------------------------------- beam

    def _do_set_beam_position(self, x: float, y: float) -> None:
        ox, oy, sx, sy = self.beam_frame
        self._call("set_beam_pos", ox + x * sx, oy + y * sy)

    def _do_read_beam_position(self, assumed: Tuple[float, float]) -> Tuple[float, float]:
        try:
            ds_x, ds_y = self._call("get_beam_pos")
            ox, oy, sx, sy = self.beam_frame
            return (float(ds_x) - ox) / sx, (float(ds_y) - oy) / sy
        except (TypeError, ValueError) as exc:
            raise InstrumentError(f"get_beam_pos did not return (x, y): {exc}") from None

    def _do_blank(self, blank: bool) -> None:
        raise Unsupported("the Pyro5 ArrayServer has no beam blanker call")

    # ---------------------------------------------------------------- EELS

    def _do_set_eels_parameters(self, params: EELSParameters) -> None:
        old = self._eels
        if not math.isclose(params.dispersion, old.dispersion, rel_tol=1e-9):
            raise Unsupported(
                "the Pyro5 ArrayServer cannot change the dispersion: select it in "
                f"DigitalMicrograph and restart the bridge with --pyro-dispersion "
                f"(now {old.dispersion:g} eV/channel)"
            )
        if params.energy_offset != old.energy_offset:
            self._call("set_energy_Offset", params.energy_offset)

    def _do_acquire_spectrum(
        self, eels: EELSParameters, position: Tuple[float, float]
    ) -> SpectrumAcquisition:
        if not self._camera_ready:
            self._call("activate_camera")
            self._camera_ready = True
        self._call("acquire_camera", eels.exposure)
        spectrum = array_from_pyro(self._call("get_eels"), "spectrum").reshape(-1)
        if spectrum.size < eels.channels:
            raise InstrumentError(
                f"the camera gave {spectrum.size} channels, {eels.channels} were asked for"
            )
        seconds = self.spend(eels.exposure)
        return SpectrumAcquisition(
            spectra=spectrum[: eels.channels].astype(np.float32),
            energy_axis=energy_axis(eels),
            instrument_time=seconds,
            metadata={"energy_axis_source": "stated dispersion and energy offset set"},
        )

    def _do_acquire_spectra_at_points(
        self, eels: EELSParameters, points: np.ndarray
    ) -> SpectrumAcquisition:
        acq = super()._do_acquire_spectra_at_points(eels, points)
        acq.metadata["emulated"] = "one set_beam_pos, acquire_camera and get_eels per point"
        return acq

    def close(self) -> None:
        proxy, self._proxy = self._proxy, None
        release = getattr(proxy, "_pyroRelease", None)
        if release is not None:
            with contextlib.suppress(Exception):  # closing never fails
                release()


def _connection_lost(exc: BaseException) -> bool:
    return type(exc).__name__ in ("CommunicationError", "ConnectionClosedError", "TimeoutError")
