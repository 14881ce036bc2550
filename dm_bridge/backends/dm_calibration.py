"""What DigitalMicrograph's images say about themselves: tags, calibrations, DigiScan frame.

This module is the *only* place where a beam position in our pixel convention becomes a
DigiScan position and back (ARCHITECTURE.md, "Coordinates and units"). The conversion is
built from the DigiScan tags that DigiScan writes into every image it acquires, so it can
neither be forgotten nor run on stale numbers: :class:`DigiScanFrame` can only be made from
an acquired image's tags, and it refuses (``InstrumentError``) when they are missing instead
of falling back to an identity mapping -- the silent fault of the server this replaces.

Conventions
-----------
* Our pixel frame: ``x`` = column, ``y`` = row, floats, ``(0, 0)`` the centre of the top-left
  pixel, i.e. the place where the beam dwelt while pixel ``(0, 0)`` was recorded.
* DigiScan tags (``DigiScan:`` group of the image tags; names as DM writes them)::

      Horizontal DS Offset, Vertical DS Offset          DS position of the reference pixel
      Horizontal Image Center, Vertical Image Center    pixel coordinates of that reference
      Horizontal Spacing, Vertical Spacing              DS units per pixel (no rotation)
      Horizontal Pixel Step, Vertical Pixel Step        DS step along a row / a column
      Horizontal Perpendicular Pixel Step,              cross terms of the step when the
      Vertical Perpendicular Pixel Step                 scan is rotated
      Rotation                                          scan rotation, degrees
      Sample Time                                       pixel dwell time, microseconds

  The model is affine: ``ds = offset + M @ (p - center)`` with ``p = (x, y)`` and
  ``M = [[Horizontal Pixel Step, Vertical Perpendicular Pixel Step],
  [Horizontal Perpendicular Pixel Step, Vertical Pixel Step]]`` -- column 0 is the DS step of
  one pixel along a row, column 1 the DS step of one row. Without rotation it reduces to the
  spacings (``M = diag(Horizontal Spacing, Vertical Spacing)``), which is the model the
  public server of the paper used. **Unconfirmed on hardware:** which of the two
  perpendicular steps is the row/column cross term (it only matters when the scan is
  rotated); ``DigitalMicrographBackend.check_digiscan_frame`` compares this module with DM's
  own ``DSCalcDSCoordFromImage`` and is part of the commissioning checklist in
  ``docs/dm-install.md``.
* Image calibration (``Py_Image.GetDimensionCalibration(dim, 0)`` -> ``(origin, scale,
  units)``): calibrated value of pixel ``i`` is ``(i - origin) * scale``, the relation DM
  stores in its files (checked against the real ``EELS_STO.dm3``: origin -1400, scale
  0.25 eV, first channel 350 eV). DM may hand units back as ``bytes`` (``b'\\xb5m'`` for µm).

References (read, not copied): DigiScan tag names from DM files dumped by a HyperSpy-based
metadata reader and from the paper's public DM server (``get_ds_step_params``); the DM-script
DigiScan reference as reproduced in D. R. G. Mitchell's "Faux DigiScan Library"
(dmscripting.com, GMS 2.3); RosettaSciIO's DM reader (``DigiScan:Sample Time`` in µs,
calibration origin/scale).

Standard library and numpy only, Python 3.8 syntax: this module runs inside DigitalMicrograph.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InstrumentError

__all__ = [
    "DIGISCAN",
    "EELS_TAGS",
    "DigiScanFrame",
    "dimension_calibration",
    "energy_to_ev",
    "length_to_nm",
    "read_tag",
]

#: DigiScan tag paths inside an acquired image's tag group
DIGISCAN = {
    "offset_x": "DigiScan:Horizontal DS Offset",
    "offset_y": "DigiScan:Vertical DS Offset",
    "center_x": "DigiScan:Horizontal Image Center",
    "center_y": "DigiScan:Vertical Image Center",
    "spacing_x": "DigiScan:Horizontal Spacing",
    "spacing_y": "DigiScan:Vertical Spacing",
    "step_x": "DigiScan:Horizontal Pixel Step",
    "step_y": "DigiScan:Vertical Pixel Step",
    "perp_x": "DigiScan:Horizontal Perpendicular Pixel Step",
    "perp_y": "DigiScan:Vertical Perpendicular Pixel Step",
    "rotation": "DigiScan:Rotation",
    "sample_time_us": "DigiScan:Sample Time",
}

#: EELS read-back tag paths, newest GMS first (checked against a real GMS 3.x DM3 file;
#: the ``EELS:Acquisition:Spectrometer:`` spellings are those of older GMS versions)
EELS_TAGS = {
    "dispersion": (
        "EELS Spectrometer:Dispersion (eV/ch)",
        "EELS:Acquisition:Spectrometer:Dispersion (eV/ch)",
    ),
    "energy_loss": (
        "EELS Spectrometer:Energy loss (eV)",
        "EELS:Acquisition:Spectrometer:Energy loss (eV)",
    ),
    "exposure": (
        "Acquisition:Parameters:High Level:Exposure (s)",
        "Acquisition:Parameters:Detector:exposure (s)",
        "EELS:Acquisition:Exposure (s)",
    ),
    "binning": ("Acquisition:Parameters:Detector:hbin",),
    "spectrometer": (
        "EELS Spectrometer:Instrument name",
        "EELS:Acquisition:Spectrometer:Instrument name",
    ),
    "camera": ("Acquisition:Device:Name",),
    "convergence_mrad": ("EELS:Experimental Conditions:Convergence semi-angle (mrad)",),
    "collection_mrad": ("EELS:Experimental Conditions:Collection semi-angle (mrad)",),
    "voltage_v": ("Microscope Info:Voltage",),
    "probe_current_na": ("Microscope Info:Probe Current (nA)",),
    "microscope": ("Microscope Info:Microscope", "Session Info:Microscope"),
}

_LENGTH_TO_NM = {
    "pm": 1e-3,
    "Å": 0.1,
    "A": 0.1,
    "nm": 1.0,
    "µm": 1e3,
    "μm": 1e3,
    "um": 1e3,
    "mm": 1e6,
    "m": 1e9,
}
_ENERGY_TO_EV = {"eV": 1.0, "keV": 1e3, "meV": 1e-3}

Number = Union[float, np.ndarray]


def _text(value: Any) -> str:
    """DM returns some strings as ``bytes`` in Latin-1 (``b'\\xb5m'``): make them ``str``."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def read_tag(tags: Any, paths: Union[str, Sequence[str]], kind: str = "float") -> Any:
    """First of ``paths`` present in a ``Py_TagGroup``, or ``None``.

    Args:
        tags: a ``Py_TagGroup`` (``GetTagAsFloat(path) -> (found, value)`` and friends).
        paths: one tag path (``"EELS Spectrometer:Dispersion (eV/ch)"``) or several to try in
            order.
        kind: ``"float"``, ``"long"`` or ``"string"``.

    Example:
        >>> read_tag(img.GetTagGroup(), EELS_TAGS["dispersion"])  # doctest: +SKIP
        0.25
    """
    if tags is None:
        return None
    getter = {"float": "GetTagAsFloat", "long": "GetTagAsLong", "string": "GetTagAsString"}[kind]
    for path in [paths] if isinstance(paths, str) else paths:
        found, value = getattr(tags, getter)(path)
        if found:
            if kind == "string":
                return _text(value)
            value = float(value) if kind == "float" else int(value)
            if kind == "float" and not math.isfinite(value):
                continue
            return value
    return None


def length_to_nm(value: float, unit: Any) -> float:
    """Convert a length in DM's ``unit`` (``"nm"``, ``"µm"``, ``b'\\xb5m'``...) to nm."""
    name = _text(unit).strip()
    try:
        return float(value) * _LENGTH_TO_NM[name]
    except KeyError:
        raise InstrumentError(
            f"image calibration unit {name!r} is not a length; is this a DigiScan image?"
        ) from None


def energy_to_ev(value: Number, unit: Any) -> Optional[float]:
    """Factor from DM's energy ``unit`` to eV times ``value``; ``None`` if not an energy."""
    factor = _ENERGY_TO_EV.get(_text(unit).strip())
    return None if factor is None else value * factor


def dimension_calibration(image: Any, dim: int) -> Tuple[float, float, str]:
    """``(origin, scale, unit)`` of dimension ``dim`` (0 = x/columns, 1 = y/rows).

    The calibrated value of pixel ``i`` is ``(i - origin) * scale`` (see module docstring).
    """
    origin, scale, unit = image.GetDimensionCalibration(dim, 0)
    return float(origin), float(scale), _text(unit)


class DigiScanFrame:
    """Pixel <-> DigiScan conversion for one scan field, from an acquired image's tags.

    Args:
        width, height: size of the scan field in pixels.
        offset: DigiScan position ``(x, y)`` of the reference pixel.
        center: pixel coordinates ``(x, y)`` of the reference pixel.
        matrix: 2x2 DigiScan step per pixel; column 0 for ``+x`` (one column), column 1
            for ``+y`` (one row).
        rotation: scan rotation in degrees, as DigiScan reports it (informational).

    Example:
        >>> frame = DigiScanFrame(512, 512, (0.0, 0.0), (256.0, 256.0), ((64.0, 0), (0, 64.0)))
        >>> frame.to_digiscan(0.0, 0.0)
        (-16384.0, -16384.0)
        >>> frame.to_pixels(-16384.0, -16384.0)
        (0.0, 0.0)
    """

    def __init__(
        self,
        width: int,
        height: int,
        offset: Tuple[float, float],
        center: Tuple[float, float],
        matrix: Sequence[Sequence[float]],
        rotation: float = 0.0,
    ) -> None:
        self.width = int(width)
        self.height = int(height)
        self.offset = np.array(offset, dtype=np.float64)
        self.center = np.array(center, dtype=np.float64)
        self.matrix = np.array(matrix, dtype=np.float64)
        self.rotation = float(rotation)
        values = np.concatenate([self.offset, self.center, self.matrix.ravel()])
        if self.matrix.shape != (2, 2) or not np.all(np.isfinite(values)):
            raise InstrumentError(f"DigiScan calibration is not usable: {self.as_dict()}")
        det = float(np.linalg.det(self.matrix))
        scale = float(np.abs(self.matrix).max())
        if scale == 0.0 or abs(det) <= 1e-12 * scale * scale:
            raise InstrumentError(
                f"DigiScan pixel steps {self.matrix.tolist()} are degenerate; "
                "cannot place the beam in this field"
            )
        self.inverse = np.linalg.inv(self.matrix)

    @classmethod
    def from_tags(cls, tags: Any, width: int, height: int) -> DigiScanFrame:
        """Build the frame from the ``DigiScan:`` tags of an acquired image.

        Raises:
            InstrumentError: the tags needed are missing, or the scan is rotated and only the
                (rotation-free) spacings are present.
        """
        values: Dict[str, Optional[float]] = {
            key: read_tag(tags, path) for key, path in DIGISCAN.items()
        }
        needed = ["offset_x", "offset_y", "center_x", "center_y"]
        missing = [DIGISCAN[k] for k in needed if values[k] is None]
        rotation = values["rotation"] or 0.0
        if values["step_x"] is not None and values["step_y"] is not None:
            if values["perp_x"] is None or values["perp_y"] is None:
                if not _is_unrotated(rotation):
                    missing += [DIGISCAN["perp_x"], DIGISCAN["perp_y"]]
                values["perp_x"] = values["perp_x"] or 0.0
                values["perp_y"] = values["perp_y"] or 0.0
            matrix = ((values["step_x"], values["perp_y"]), (values["perp_x"], values["step_y"]))
        else:
            if values["spacing_x"] is None or values["spacing_y"] is None:
                missing += [DIGISCAN["step_x"], DIGISCAN["step_y"]]
            elif not _is_unrotated(rotation):
                missing += [DIGISCAN["perp_x"], DIGISCAN["perp_y"]]
            matrix = ((values["spacing_x"] or 0.0, 0.0), (0.0, values["spacing_y"] or 0.0))
        if missing:
            raise InstrumentError(
                "the acquired image lacks the DigiScan tags needed to place the beam "
                f"(missing: {', '.join(missing)}); beam placement refuses to guess"
            )
        return cls(
            width,
            height,
            (values["offset_x"], values["offset_y"]),
            (values["center_x"], values["center_y"]),
            matrix,
            rotation,
        )

    def to_digiscan(self, x: Number, y: Number) -> Tuple[Any, Any]:
        """DigiScan position of pixel position ``(x, y)`` (scalars or arrays)."""
        dx = np.asarray(x, dtype=np.float64) - self.center[0]
        dy = np.asarray(y, dtype=np.float64) - self.center[1]
        m = self.matrix
        ds_x = self.offset[0] + m[0, 0] * dx + m[0, 1] * dy
        ds_y = self.offset[1] + m[1, 0] * dx + m[1, 1] * dy
        return _scalar(ds_x), _scalar(ds_y)

    def to_pixels(self, ds_x: Number, ds_y: Number) -> Tuple[Any, Any]:
        """Pixel position ``(x, y)`` of DigiScan position ``(ds_x, ds_y)``."""
        dx = np.asarray(ds_x, dtype=np.float64) - self.offset[0]
        dy = np.asarray(ds_y, dtype=np.float64) - self.offset[1]
        inv = self.inverse
        x = self.center[0] + inv[0, 0] * dx + inv[0, 1] * dy
        y = self.center[1] + inv[1, 0] * dx + inv[1, 1] * dy
        return _scalar(x), _scalar(y)

    def as_dict(self) -> Dict[str, Any]:
        """JSON-able description (for metadata and diagnostics)."""
        return {
            "width": self.width,
            "height": self.height,
            "offset": [float(v) for v in self.offset],
            "center": [float(v) for v in self.center],
            "matrix": [[float(v) for v in row] for row in self.matrix],
            "rotation": self.rotation,
        }


def _is_unrotated(rotation: float) -> bool:
    return abs(math.remainder(float(rotation), 360.0)) < 1e-9


def _scalar(value: np.ndarray) -> Any:
    return float(value) if np.ndim(value) == 0 else value
