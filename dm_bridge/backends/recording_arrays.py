"""The plain-array recording layout (``.npz``, ``.h5``, ``.npy``): read and write.

The layout is documented in :mod:`dm_bridge.backends.recording`. Reading turns a file into
the same rosettasciio-style signal dicts (``data``, ``axes``, ``metadata``) that the
DigitalMicrograph and HyperSpy readers return, so every format goes through one
interpretation. h5py is imported only for ``.h5`` files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .recording_types import RecordingError

__all__ = ["LAYOUT_KEYS", "read_array_file", "write_array_file"]

#: entries of the layout; anything else in a file is ignored
LAYOUT_KEYS = (
    "survey",
    "signals",
    "spectra",
    "energy_axis",
    "energy_offset",
    "dispersion",
    "pixel_size",
    "survey_origin",
    "spectrum_pixel_size",
    "spectrum_origin",
    "exposure",
    "dwell_time",
    "high_tension_kv",
    "microscope",
    "positions",
)


def read_array_file(path: Path) -> List[Dict[str, Any]]:
    """Signals (rosettasciio-style dicts) of a ``.npz``, ``.h5`` or ``.npy`` recording.

    Raises:
        RecordingError: unreadable file, pickled objects, or neither ``survey`` nor
            ``spectra`` in it.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            key = "survey" if array.ndim == 2 else "spectra"
            entries: Dict[str, Any] = {key: array}
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                entries = {k: z[k] for k in z.files if k in LAYOUT_KEYS}
        else:
            entries = _read_h5(path)
    except RecordingError:
        raise
    except Exception as exc:  # corrupt or foreign files: one clear error, not a traceback
        raise RecordingError(f"could not read {path}: {exc}") from exc
    if "survey" not in entries and "spectra" not in entries:
        raise RecordingError(
            f"{path} holds neither 'survey' nor 'spectra' (found {sorted(entries)}); "
            "see the layout in dm_bridge.backends.recording"
        )
    return signals_from_layout(entries, str(path))


def _read_h5(path: Path) -> Dict[str, Any]:
    import h5py

    entries: Dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        for key in LAYOUT_KEYS:
            if key in f and isinstance(f[key], h5py.Dataset):
                entries[key] = f[key][()]
            elif key in f.attrs:
                entries[key] = f.attrs[key]
    return entries


def _scalar(entries: Mapping[str, Any], key: str) -> Optional[float]:
    if key not in entries:
        return None
    value = np.asarray(entries[key])
    if value.size != 1 or not np.issubdtype(value.dtype, np.number):
        raise RecordingError(f"{key!r} must be a single number, got {entries[key]!r}")
    return float(value.reshape(()))


def _pair(entries: Mapping[str, Any], key: str) -> Optional[Tuple[float, float]]:
    """``(x, y)`` from a scalar (both the same) or a 2-vector."""
    if key not in entries:
        return None
    value = np.asarray(entries[key], dtype=np.float64).ravel()
    if value.size == 1:
        return float(value[0]), float(value[0])
    if value.size == 2:
        return float(value[0]), float(value[1])
    raise RecordingError(f"{key!r} must be a number or (x, y), got shape {value.shape}")


def _text(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else ""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", "replace")
    return str(value)


def _grid_axis(name: str, size: int, scale: Optional[float], origin: Optional[float], nav: bool):
    if scale is None:
        return {
            "name": name,
            "size": size,
            "scale": 1.0,
            "offset": 0.0,
            "units": "",
            "navigate": nav,
        }
    # origin is the centre of the first pixel; the axis offset is its near edge
    edge = (origin if origin is not None else 0.5 * scale) - 0.5 * scale
    return {
        "name": name,
        "size": size,
        "scale": scale,
        "offset": edge,
        "units": "nm",
        "navigate": nav,
    }


def signals_from_layout(entries: Mapping[str, Any], source: str) -> List[Dict[str, Any]]:
    """Signal dicts from the layout's entries (see :mod:`dm_bridge.backends.recording`)."""
    tem: Dict[str, Any] = {}
    kv = _scalar(entries, "high_tension_kv")
    if kv is not None:
        tem["beam_energy"] = kv
    if "microscope" in entries:
        tem["microscope"] = _text(entries["microscope"])
    sigs: List[Dict[str, Any]] = []

    if "survey" in entries:
        survey = np.asarray(entries["survey"])
        if survey.ndim == 2:
            survey = survey[None]
        if survey.ndim != 3:
            raise RecordingError(f"'survey' must be (h, w) or (S, h, w), got {survey.shape}")
        names: Sequence[str] = [""] * survey.shape[0]
        if "signals" in entries:
            names = [_text(n) for n in np.atleast_1d(np.asarray(entries["signals"]))]
            if len(names) != survey.shape[0]:
                raise RecordingError(
                    f"{len(names)} names in 'signals' for {survey.shape[0]} survey images"
                )
        pixel = _scalar(entries, "pixel_size")
        origin = _pair(entries, "survey_origin") or (None, None)
        image_tem = dict(tem)
        dwell = _scalar(entries, "dwell_time")
        if dwell is not None:
            image_tem["dwell_time"] = dwell
        h, w = survey.shape[1:]
        for name, image in zip(names, survey):
            sigs.append(
                {
                    "data": image,
                    "axes": [
                        _grid_axis("y", h, pixel, origin[1], False),
                        _grid_axis("x", w, pixel, origin[0], False),
                    ],
                    "metadata": {
                        "General": {"title": name},
                        "Acquisition_instrument": {"TEM": image_tem},
                    },
                    "original_metadata": {},
                    "title": name,
                }
            )

    if "spectra" in entries:
        spectra = np.asarray(entries["spectra"])
        if spectra.ndim not in (1, 2, 3) or spectra.shape[-1] < 1:
            raise RecordingError(
                f"'spectra' must be (rows, cols, C), (N, C) or (C,), got {spectra.shape}"
            )
        channels = spectra.shape[-1]
        energy = {"name": "Energy loss", "size": channels, "units": "eV", "navigate": False}
        if "energy_axis" in entries:
            axis = np.asarray(entries["energy_axis"], dtype=np.float64).ravel()
            if axis.size != channels:
                raise RecordingError(
                    f"'energy_axis' has {axis.size} values for {channels} channels"
                )
            energy.update(axis=axis, scale=None)
        else:
            offset = _scalar(entries, "energy_offset")
            dispersion = _scalar(entries, "dispersion")
            if offset is None or dispersion is None:
                energy["units"] = ""  # uncalibrated: load_recording asks for a calibration
            energy.update(offset=offset or 0.0, scale=dispersion or 1.0)
        step = _pair(entries, "spectrum_pixel_size") or (None, None)
        origin = _pair(entries, "spectrum_origin") or (None, None)
        if spectra.ndim == 3:
            nav = [
                _grid_axis("y", spectra.shape[0], step[1], origin[1], True),
                _grid_axis("x", spectra.shape[1], step[0], origin[0], True),
            ]
        elif spectra.ndim == 2:  # (N, C): a horizontal line scan
            nav = [_grid_axis("x", spectra.shape[0], step[0], origin[0], True)]
        else:
            nav = []
        spectrum_tem = dict(tem)
        exposure = _scalar(entries, "exposure")
        if exposure is not None:
            spectrum_tem["Detector"] = {"EELS": {"exposure": exposure}}
        sigs.append(
            {
                "data": spectra,
                "axes": [*nav, energy],
                "metadata": {
                    "General": {"title": "spectra"},
                    "Signal": {"signal_type": "EELS"},
                    "Acquisition_instrument": {"TEM": spectrum_tem},
                },
                "original_metadata": {},
                "title": "spectra",
            }
        )
    for s in sigs:
        s["metadata"]["General"]["original_filename"] = source
    return sigs


def write_array_file(path: Path, entries: Mapping[str, Any]) -> None:
    """Write layout entries to ``path`` (``.npz`` or ``.h5``); None values are skipped."""
    clean = {k: v for k, v in entries.items() if v is not None and k in LAYOUT_KEYS}
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = {k: np.asarray(v) for k, v in clean.items()}
        with open(path, "wb") as f:  # a file object: numpy would otherwise append ".npz"
            np.savez_compressed(f, **arrays)
    elif suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "w") as f:
            for key, value in clean.items():
                if key in ("signals", "microscope"):
                    f.create_dataset(key, data=np.asarray(value, dtype=h5py.string_dtype()))
                elif np.ndim(value) >= 2:
                    f.create_dataset(key, data=np.asarray(value), compression="gzip")
                else:
                    f.create_dataset(key, data=np.asarray(value))
    else:
        raise RecordingError(f"cannot write the array layout to {path.suffix!r}; use .npz or .h5")
