"""``ophyd-stem export``: a run's survey images and spectra as files HyperSpy opens.

A catalog run becomes, with rosettasciio's writers (HyperSpy itself is not needed):

- one ``Signal2D`` per survey signal (``HAADF``...), axes ``y``, ``x`` in nm (a stack of
  frames gets a ``frame`` navigation axis);
- one ``EELSSpectrum`` (``signal_type`` ``"EELS"``) of the spectra: a spectrum image with
  navigation axes ``y``, ``x`` in nm when the run measured a regular grid, else a list of
  points (navigation axis ``point``) whose beam positions, in nm and px, are in its
  ``original_metadata``; the energy-loss axis in eV;

in HyperSpy's format (``.hspy``) or NeXus (``.nxs``, every signal in one file). The beam
energy (kV), the exposure (s), the dwell time (s) and the convergence angle (mrad) go into
each signal's ``metadata.Acquisition_instrument.TEM``; the run's uid, scan id, plan, sample
and the catalog's address into ``original_metadata.ophyd_stem``.

**In register.** HyperSpy's axis ``offset`` is the *centre* of the first pixel. Survey pixel
``(row, column)`` is at ``(row, column) * pixel_size`` nm, the beam position ``(x, y)`` px
at ``(x, y) * pixel_size`` nm (the project's frame: ``(0, 0)`` the centre of the top-left
pixel), so a spectrum measured on survey pixel ``(i, j)`` has the same nm coordinates as
that pixel in HyperSpy.

Example:
    >>> from ophyd_stem.catalog import open_catalog, get_run
    >>> files = export_run(get_run(open_catalog(), -1), "exports")        # doctest: +SKIP
    >>> import hyperspy.api as hs; hs.load(files[-1])                      # doctest: +SKIP
    <EELSSpectrum, title: EELS spectrum image, scan 12, dimensions: (32, 32|2048)>
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMATS", "ExportError", "export_run", "read_ahead", "writer"]

#: format name -> file suffix
FORMATS = {"hspy": ".hspy", "nexus": ".nxs"}


class ExportError(ValueError):
    """The run lacks what the export needs (no images or spectra, no calibration)."""


def _configuration(run: Any, stream: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for obj in run[stream].metadata.get("configuration", {}).values():
        values.update(obj.get("data", {}))
    return values


def _image_keys(run: Any, stream: str) -> list[str]:
    """Data keys of the survey images in ``stream`` (2-D external arrays)."""
    keys = run[stream].metadata.get("data_keys", {})
    return [
        key
        for key, spec in keys.items()
        if spec.get("external") is not None and len(spec.get("shape") or ()) == 2
    ]


def _axis(name: str, size: int, scale: float, offset: float, units: str, navigate: bool):
    """An axis in HyperSpy's words: ``offset`` is the centre of the first pixel."""
    return {
        "_type": "UniformDataAxis",
        "name": name,
        "size": int(size),
        "scale": float(scale),
        "offset": float(offset),
        "units": units,
        "navigate": bool(navigate),
    }


def _signal(data: np.ndarray, axes: list, metadata: dict, original: dict) -> dict[str, Any]:
    return {
        "data": data,
        "axes": axes,
        "metadata": metadata,
        "original_metadata": original,
        "tmp_parameters": {},
        "attributes": {"_lazy": False},
        "learning_results": {},
        "models": {},
        "package_info": {},
    }


def _general(start: dict, title: str) -> dict[str, Any]:
    when = time.localtime(float(start.get("time", 0.0)))
    general = {
        "title": title,
        "date": time.strftime("%Y-%m-%d", when),
        "time": time.strftime("%H:%M:%S", when),
    }
    if start.get("operator"):
        general["authors"] = str(start["operator"])
    return general


def _tem(start: dict) -> dict[str, Any]:
    instrument = start.get("instrument") or {}
    tem: dict[str, Any] = {}
    if instrument.get("high_tension_kv") is not None:
        tem["beam_energy"] = float(instrument["high_tension_kv"])
    if instrument.get("name"):
        tem["microscope"] = str(instrument["name"])
    convergence = (instrument.get("probe") or {}).get("convergence_mrad")
    if convergence is not None:
        tem["convergence_angle"] = float(convergence)
    return tem


def _provenance(run: Any, start: dict) -> dict[str, Any]:
    return {
        "run_uid": start.get("uid"),
        "scan_id": start.get("scan_id"),
        "plan_name": start.get("plan_name"),
        "sample": str(start.get("sample")),
        "catalog": str(getattr(run, "uri", "")),
    }


def _common(start: dict) -> dict[str, Any]:
    sample = start.get("sample")
    return {"Sample": {"description": str(sample)}} if sample is not None else {}


def survey_signals(run: Any) -> list[dict[str, Any]]:
    """The run's survey images as rosettasciio signal dictionaries (``Signal2D``).

    Raises:
        ExportError: no calibrated survey image.
    """
    start = run.metadata["start"]
    streams = [s for s in ("survey", "primary") if s in run]
    for stream in streams:
        keys = _image_keys(run, stream)
        if keys:
            break
    else:
        return []
    config = _configuration(run, stream)
    pixel = config.get("scan-pixel_size")
    if not pixel:
        raise ExportError(f"stream {stream!r} records no pixel size (scan-pixel_size)")
    tem = _tem(start)
    if config.get("scan-dwell_time"):
        tem["dwell_time"] = float(config["scan-dwell_time"])
    signals = []
    for key in keys:
        frames = np.asarray(run[stream][key].read())
        frames = frames.reshape(-1, *frames.shape[-2:])
        name = key.split("-", 1)[-1].upper()
        height, width = frames.shape[-2:]
        axes = [
            _axis("y", height, pixel, 0.0, "nm", False),
            _axis("x", width, pixel, 0.0, "nm", False),
        ]
        data = frames[0] if len(frames) == 1 else frames
        if len(frames) > 1:
            axes.insert(0, _axis("frame", len(frames), 1.0, 0.0, "", True))
        metadata = {
            "General": _general(start, f"{name} survey, scan {start.get('scan_id')}"),
            "Signal": {"signal_type": "", "quantity": f"{name} intensity (counts)"},
            "Acquisition_instrument": {"TEM": dict(tem)},
            **_common(start),
        }
        original = {"ophyd_stem": {**_provenance(run, start), "stream": stream, "data_key": key}}
        signals.append(_signal(data, axes, metadata, original))
    return signals


def _energy_calibration(config: dict[str, Any], channels: int) -> tuple[float, float]:
    """``(offset, scale)`` in eV: the spectrometer's calibration, checked against the axis."""
    from ophyd_stem import energy_axis_from_configuration

    axis = energy_axis_from_configuration(config)
    if axis is None or len(axis) != channels:
        raise ExportError("the run records no energy calibration matching its spectra")
    if "eels-dispersion" in config:  # exact, rather than differences of rounded energies
        scale = float(config["eels-dispersion"]) * max(int(config.get("eels-binning", 1)), 1)
    else:
        scale = float(axis[-1] - axis[0]) / (channels - 1) if channels > 1 else 1.0
    if not np.allclose(axis, axis[0] + scale * np.arange(channels), rtol=0, atol=1e-6 * abs(scale)):
        raise ExportError("the energy axis is not uniform: HyperSpy needs offset and scale")
    return float(axis[0]), scale


def _grid(start: dict, positions: np.ndarray) -> tuple[int, int] | None:
    """``(rows, cols)`` when the positions are a raster, row by row, of the run's shape."""
    shape = start.get("shape")
    if not shape or len(shape) != 2:
        return None
    rows, cols = int(shape[0]), int(shape[1])
    if rows * cols != len(positions) or rows * cols == 0:
        return None
    grid = positions.reshape(rows, cols, 2)
    xs, ys = grid[0, :, 0], grid[:, 0, 1]
    regular = np.allclose(grid[..., 0], xs[None, :]) and np.allclose(grid[..., 1], ys[:, None])
    evenly = all(len(v) < 3 or np.allclose(np.diff(v), v[1] - v[0]) for v in (xs, ys))
    return (rows, cols) if regular and evenly else None


def spectra_signal(run: Any, pixel_size: float | None) -> dict[str, Any] | None:
    """The run's spectra as one rosettasciio signal dictionary (``EELSSpectrum``), or None
    when it has none.

    Args:
        run: a catalog run.
        pixel_size: the survey's nm per pixel, to put positions in nm (None: in px).
    """
    if "primary" not in run or "eels-spectrum" not in run["primary"]:
        return None
    start = run.metadata["start"]
    stream = run["primary"]
    spectra = np.asarray(stream["eels-spectrum"].read())
    x = np.asarray(stream["stem-beam-x"].read(), dtype=np.float64)
    y = np.asarray(stream["stem-beam-y"].read(), dtype=np.float64)
    config = _configuration(run, "primary")
    offset, scale = _energy_calibration(config, spectra.shape[-1])
    energy = _axis("Energy loss", spectra.shape[-1], scale, offset, "eV", False)
    nm, units = (float(pixel_size), "nm") if pixel_size else (1.0, "px")
    positions = np.column_stack([x, y])
    tem = _tem(start)
    if config.get("eels-exposure") is not None:
        tem["Detector"] = {"EELS": {"exposure": float(config["eels-exposure"])}}
    grid = _grid(start, positions)
    provenance = {
        **_provenance(run, start),
        "positions_px": {"x": x, "y": y},
        "positions_nm": {"x": x * nm, "y": y * nm} if units == "nm" else {},
    }
    if grid is not None:
        rows, cols = grid
        steps = [
            (v[1] - v[0]) if len(v) > 1 else 1.0
            for v in (positions[:cols, 0], positions[::cols, 1])
        ]
        data = spectra.reshape(rows, cols, -1)
        axes = [
            _axis("y", rows, steps[1] * nm, y[0] * nm, units, True),
            _axis("x", cols, steps[0] * nm, x[0] * nm, units, True),
            energy,
        ]
        title = f"EELS spectrum image, scan {start.get('scan_id')}"
    else:
        data = spectra
        axes = [_axis("point", len(spectra), 1.0, 0.0, "", True), energy]
        title = f"EELS at {len(spectra)} points, scan {start.get('scan_id')}"
    metadata = {
        "General": _general(start, title),
        "Signal": {"signal_type": "EELS", "quantity": "Intensity (counts)"},
        "Acquisition_instrument": {"TEM": tem},
        **_common(start),
    }
    return _signal(data, axes, metadata, {"ophyd_stem": provenance})


#: the streams an export reads (survey images, then spectra and beam positions)
STREAMS = ("survey", "primary")


def read_ahead(run: Any) -> None:
    """Read everything the export will need from the catalog now, several requests at a
    time, for a run opened with ``open_catalog(..., snapshot=True)`` (runs of the other
    clients are read as the export goes): ``ophyd-stem export`` runs it in a thread while
    it imports the writer (:func:`writer`)."""
    for name in STREAMS:
        if name in run and hasattr(run[name], "load"):
            run[name].load()


def writer(fmt: str) -> Any:
    """rosettasciio's ``file_writer`` for ``fmt`` (``"hspy"`` or ``"nexus"``), or None
    when rosettasciio is not installed (optional: decision 0006)."""
    try:
        if fmt == "nexus":
            from rsciio.nexus import file_writer
        else:
            from rsciio.hspy import file_writer
    except ImportError:
        return None
    return file_writer


def export_run(run: Any, out_dir: str | Path, fmt: str = "hspy") -> list[Path]:
    """Write a run's survey images and spectra for HyperSpy, in register.

    Args:
        run: a catalog run (``ophyd_stem.catalog.get_run``).
        out_dir: folder for the files (created).
        fmt: ``"hspy"`` (one file per signal) or ``"nexus"`` (one ``.nxs`` file).

    Returns:
        The files written.

    Raises:
        ExportError: the run has neither survey images nor spectra, or lacks calibration.
        ValueError: an unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    start = run.metadata["start"]
    surveys = survey_signals(run)
    pixel = surveys[0]["axes"][-1]["scale"] if surveys else None
    spectra = spectra_signal(run, pixel)
    signals = surveys + ([spectra] if spectra is not None else [])
    if not signals:
        raise ExportError(f"run {start['uid'][:8]} has no survey image and no spectra")
    write = writer(fmt)
    if write is None:
        raise ExportError("export writes with rosettasciio: pip install 'ophyd-stem[replay]'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"scan{start.get('scan_id')}-{start['uid'][:8]}"
    if fmt == "nexus":
        path = out / f"{stem}{FORMATS['nexus']}"
        write(str(path), signals, use_default=True)
        return [path]
    written = []
    for signal in signals:
        key = signal["original_metadata"]["ophyd_stem"].get("data_key", "eels-spectrum")
        name = "eels" if key == "eels-spectrum" else key.split("-", 1)[-1]
        path = out / f"{stem}-{name}{FORMATS['hspy']}"
        write(str(path), signal, show_progressbar=False)
        written.append(path)
    return written
