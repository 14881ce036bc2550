"""Export any backend's survey image and spectrum image as a recording the replay reads.

:func:`export_recording` drives an instrument through the generic bridge API only
(``get_scan_parameters``, ``acquire_image``, ``acquire_spectrum_image``...), so it works
with every backend (the twin, the minimal one, DigitalMicrograph) and with a bridge client,
which has the same methods. A twin run exported this way and a real recording take the same
path through :class:`~dm_bridge.backends.replay.ReplayBackend`.

Formats, chosen by the file name:

* ``.hspy`` (default choice): HyperSpy's HDF5 format written with rosettasciio (HyperSpy
  itself is not needed); one file holds each survey signal and the spectrum image as
  separate signals, so ``hs.load`` opens them with their calibrations;
* ``.npz`` / ``.h5``: the plain-array layout of :mod:`dm_bridge.backends.recording`.

Ground truth is never exported: only what a microscope would return.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from .recording_arrays import write_array_file
from .recording_types import NM_PER_UNIT, PathLike, RecordingError

__all__ = ["export_recording"]

_FORMATS = (".hspy", ".npz", ".h5", ".hdf5")


def export_recording(
    source: Any,
    path: PathLike,
    rows: Optional[int] = None,
    cols: Optional[int] = None,
    signals: Union[str, Sequence[str], None] = None,
    region: Optional[Sequence[float]] = None,
) -> Path:
    """Acquire a survey image and a spectrum image from ``source`` and write a recording.

    Args:
        source: a :class:`~dm_bridge.backends.base.Backend` or a bridge client (anything
            with the bridge's methods).
        path: output file; ``.hspy``, ``.npz`` or ``.h5``. Written atomically: an existing
            file is replaced only once the new one is complete.
        rows, cols: spectrum-image grid; default: one spectrum per survey pixel (mind the
            size: 512 x 512 x 2048 channels is 2 GiB).
        signals: detector signals of the survey (default: the instrument's current ones);
            the previous selection is restored afterwards.
        region: ``(x0, y0, x1, y1)`` pixel coordinates of the first and last spectrum-image
            positions, as for ``acquire_spectrum_image``; default: the whole field.

    Returns:
        The path written.

    Raises:
        RecordingError: unknown output format, or acquisitions that cannot be described
            by calibrations (non-uniform energy axis, irregular grid).

    Example:
        >>> from dm_bridge.backends.minimal import MinimalBackend
        >>> from dm_bridge.backends.replay import ReplayBackend
        >>> source = MinimalBackend()
        >>> _ = source.set_scan_parameters(width=16, height=16)
        >>> path = export_recording(source, "run.hspy", rows=4, cols=4)  # doctest: +SKIP
        >>> ReplayBackend(path).get_scan_parameters()["width"]  # doctest: +SKIP
        16
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:  # before acquiring anything: a late failure would waste it
        raise RecordingError(f"cannot export to {path.suffix!r}; choose one of {list(_FORMATS)}")
    scan = dict(source.get_scan_parameters())
    restore = None
    if signals is not None:
        wanted = [signals] if isinstance(signals, str) else list(signals)
        if wanted != list(scan["signals"]):
            source.set_scan_parameters(signals=wanted)
            restore = list(scan["signals"])
    try:
        scan = dict(source.get_scan_parameters())
        image = source.acquire_image()
        rows = int(scan["height"]) if rows is None else rows
        cols = int(scan["width"]) if cols is None else cols
        si = source.acquire_spectrum_image(rows, cols, region)
    finally:
        if restore is not None:
            source.set_scan_parameters(signals=restore)
    eels = _as_dict(si.eels) if si.eels is not None else dict(source.get_eels_parameters())
    instrument = _instrument(source)

    nm = NM_PER_UNIT.get(str(image.units), 1.0)
    pixel = float(image.pixel_size) * nm
    origin = (float(image.origin[0]) * nm, float(image.origin[1]) * nm)
    spectra = np.asarray(si.spectra, dtype=np.float32).reshape(rows, cols, -1)
    step = _grid_steps(np.asarray(si.positions, dtype=np.float64), rows, cols, scan)
    first = np.asarray(si.positions, dtype=np.float64)[0]
    energy_offset, dispersion = _energy_calibration(np.asarray(si.energy_axis), eels)
    provenance = {
        "exported_by": "dm_bridge.backends.recording_export.export_recording",
        "backend": instrument.get("backend"),
        "instrument": instrument.get("name"),
        "scan": _plain(scan),
        "eels": _plain(eels),
        "image_instrument_time_s": float(image.instrument_time),
        "spectrum_image_instrument_time_s": float(si.instrument_time),
        "positions": np.asarray(si.positions, dtype=np.float64),
    }
    layout: Dict[str, Any] = {
        "survey": np.stack([np.asarray(image.images[s], dtype=np.float32) for s in image.images]),
        "signals": list(image.images),
        "spectra": spectra,
        "energy_offset": energy_offset,
        "dispersion": dispersion,
        "pixel_size": pixel,
        "survey_origin": origin,
        "spectrum_pixel_size": (step[0] * pixel, step[1] * pixel),
        "spectrum_origin": (origin[0] + first[0] * pixel, origin[1] + first[1] * pixel),
        "exposure": float(eels["exposure"]) if "exposure" in eels else None,
        "dwell_time": float(scan["dwell_time"]) if "dwell_time" in scan else None,
        "high_tension_kv": instrument.get("high_tension_kv"),
        "microscope": instrument.get("name"),
        "positions": provenance["positions"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        partial = Path(tmp) / ("partial" + suffix)
        if suffix == ".hspy":
            _write_hspy(partial, layout, provenance, Path(tmp))
        else:
            write_array_file(partial, layout)
        os.replace(partial, path)
    return path


def _as_dict(params: Any) -> Dict[str, Any]:
    if is_dataclass(params):
        return asdict(params)
    return dict(params)


def _plain(d: Dict[str, Any]) -> Dict[str, Any]:
    """A dict HDF5 attributes can hold (lists of names become arrays of strings)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if v is not None}


def _instrument(source: Any) -> Dict[str, Any]:
    hello = getattr(source, "hello", None)
    if hello is None:
        return {}
    info = hello()
    described = dict(info.get("instrument", {}))
    return {
        "backend": info.get("backend"),
        "name": described.get("microscope") or described.get("name"),
        "high_tension_kv": described.get("high_tension_kv"),
    }


def _grid_steps(positions: np.ndarray, rows: int, cols: int, scan: Dict[str, Any]):
    """Grid spacing ``(x, y)`` in survey pixels, checking the positions form a grid.

    A single column (row) is given the width (height) of the field, so that HyperSpy shows
    one pixel spanning it; the replay serves it everywhere along that direction.
    """
    grid = positions.reshape(rows, cols, 2)
    x0, y0 = grid[0, 0]
    sx = (grid[0, -1, 0] - x0) / (cols - 1) if cols > 1 else float(scan["width"])
    sy = (grid[-1, 0, 1] - y0) / (rows - 1) if rows > 1 else float(scan["height"])
    expected_x = x0 + sx * np.arange(cols)[None, :] if cols > 1 else np.full((1, 1), x0)
    expected_y = y0 + sy * np.arange(rows)[:, None] if rows > 1 else np.full((1, 1), y0)
    if not (
        np.allclose(grid[..., 0], expected_x, atol=1e-6)
        and np.allclose(grid[..., 1], expected_y, atol=1e-6)
    ):
        raise RecordingError("spectrum-image positions do not form a regular grid")
    if sx <= 0 or sy <= 0:
        raise RecordingError("spectrum-image region must run left to right and top to bottom")
    return float(sx), float(sy)


def _energy_calibration(axis: np.ndarray, eels: Dict[str, Any]):
    """``(offset, dispersion per channel)`` reproducing ``axis``; the instrument's own
    settings when they do (bit-exact round trips), else fitted to the axis."""
    axis = axis.astype(np.float64).ravel()
    n = axis.size
    if {"energy_offset", "dispersion"} <= set(eels):
        offset = float(eels["energy_offset"])
        width = float(eels["dispersion"]) * float(eels.get("binning", 1))
        if np.allclose(
            axis, offset + width * np.arange(n), rtol=0, atol=1e-9 * max(1.0, abs(width))
        ):
            return offset, width
    if n < 2:
        raise RecordingError("a one-channel spectrum needs the EELS parameters to be exported")
    width = float((axis[-1] - axis[0]) / (n - 1))
    if not np.allclose(np.diff(axis), width, rtol=1e-6, atol=0):
        raise RecordingError("the energy axis is not uniform; cannot describe it by calibration")
    return float(axis[0]), width


def _hspy_signal(data, axes, title, metadata, original_metadata):
    return {
        "data": data,
        "axes": axes,
        "metadata": {"General": {"title": title}, **metadata},
        "original_metadata": original_metadata,
        "tmp_parameters": {},
        "attributes": {"_lazy": False},
        "learning_results": {},
        "models": {},
        "package_info": {},
    }


def _axis(name: str, size: int, scale: float, origin: float, units: str, navigate: bool):
    # Offsets are stored as the near edge of the first pixel (see recording.py).
    return {
        "name": name,
        "size": int(size),
        "scale": float(scale),
        "offset": float(origin - 0.5 * scale),
        "units": units,
        "navigate": navigate,
    }


def _write_hspy(path: Path, layout: Dict[str, Any], provenance: Dict[str, Any], tmp: Path):
    """One HyperSpy file with every survey signal and the spectrum image.

    rosettasciio's writer holds one signal per call and its append mode is unusable here, so
    each signal is written to its own file and the groups are copied into one.
    """
    import h5py
    from rsciio.hspy import file_writer

    tem: Dict[str, Any] = {}
    if layout["high_tension_kv"] is not None:
        tem["beam_energy"] = float(layout["high_tension_kv"])
    if layout["microscope"]:
        tem["microscope"] = str(layout["microscope"])
    pixel = layout["pixel_size"]
    ox, oy = layout["survey_origin"]
    parts = []
    for name, image in zip(layout["signals"], layout["survey"]):
        h, w = image.shape
        image_tem = dict(tem, dwell_time=layout["dwell_time"]) if layout["dwell_time"] else tem
        signal = _hspy_signal(
            image,
            [_axis("y", h, pixel, oy, "nm", False), _axis("x", w, pixel, ox, "nm", False)],
            name,
            {"Signal": {"signal_type": ""}, "Acquisition_instrument": {"TEM": image_tem}},
            {"ophyd_stem": {k: v for k, v in provenance.items() if k != "positions"}},
        )
        parts.append(signal)
    spectra = layout["spectra"]
    rows, cols, channels = spectra.shape
    (sx, sy), (six, siy) = layout["spectrum_pixel_size"], layout["spectrum_origin"]
    spectrum_tem = dict(tem)
    if layout["exposure"] is not None:
        spectrum_tem["Detector"] = {"EELS": {"exposure": layout["exposure"]}}
    energy = {
        "name": "Energy loss",
        "size": int(channels),
        "scale": float(layout["dispersion"]),
        "offset": float(layout["energy_offset"]),
        "units": "eV",
        "navigate": False,
    }
    parts.append(
        _hspy_signal(
            spectra,
            [_axis("y", rows, sy, siy, "nm", True), _axis("x", cols, sx, six, "nm", True), energy],
            "EELS Spectrum Image",
            {"Signal": {"signal_type": "EELS"}, "Acquisition_instrument": {"TEM": spectrum_tem}},
            {"ophyd_stem": provenance},
        )
    )
    with h5py.File(path, "w") as out:
        experiments = out.require_group("Experiments")
        for i, signal in enumerate(parts):
            one = tmp / f"signal{i}.hspy"
            file_writer(str(one), signal, show_progressbar=False)
            with h5py.File(one, "r") as src:
                out.attrs.update(src.attrs)
                for key in src["Experiments"]:
                    # HDF5 lists groups by name: a numbered name keeps the signals' order
                    # (readers take the title from the metadata, not the group name).
                    src.copy(src["Experiments"][key], experiments, f"{i:02d} {key}")
