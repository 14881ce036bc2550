"""Recorded STEM-EELS data: what the replay backend serves, and how it is read from files.

A :class:`Recording` holds survey images (one per detector signal), a spectrum image and
their calibrations, normalised to the bridge's units (nm, eV, s) whatever file they came
from. :func:`load_recording` reads

* DigitalMicrograph ``.dm3``/``.dm4``, HyperSpy ``.hspy`` and Velox ``.emd`` through
  ``rosettasciio`` (imported only when such a file is opened);
* plain ``.npz``, ``.h5`` (h5py) and ``.npy`` files with the layout below.

Either one file holds everything, or a survey file and a spectrum-image file are given
separately. :func:`~dm_bridge.backends.recording_export.export_recording` writes any
backend's acquisitions back in a format read here, so recorded and simulated data take the
same path.

Layout of ``.npz`` and ``.h5`` files (every entry optional except that one of ``survey``
and ``spectra`` must be present; in ``.h5`` files the entries are datasets at the root, and
scalars may also be root attributes)::

    survey               (h, w) or (S, h, w)  survey image(s), any real dtype
    signals              (S,) str             detector names of the survey images
    spectra              (rows, cols, C), (N, C) for a horizontal line scan, or (C,)
    energy_axis          (C,) eV, uniform     or energy_offset (eV) + dispersion (eV/channel)
    pixel_size           nm per survey pixel
    survey_origin        (x, y) nm, centre of the first survey pixel
    spectrum_pixel_size  nm between spectrum-image positions (default: the spectrum image
                         spans the survey's field)
    spectrum_origin      (x, y) nm, centre of the first spectrum-image position
    exposure             s per spectrum
    dwell_time           s per survey pixel
    high_tension_kv      kV
    microscope           str

A ``.npy`` file holds one array: 2-D is a survey image, 3-D a spectrum image
``(rows, cols, C)``, 1-D a single spectrum; calibrations come from the keyword arguments of
:func:`load_recording`.

Calibration convention: an axis offset is taken as the position of the near *edge* of its
first pixel (DigitalMicrograph's meaning), so two grids over the same field map onto each
other whatever their sampling. Where a file follows HyperSpy's pixel-centre meaning instead,
the difference is half a pixel of each grid.

The types (:class:`Recording`, :class:`GridAxis`, :class:`RecordingError`) live in
:mod:`.recording_types`, below this loader and the modules it uses, and are re-exported here.

Standard library and numpy; h5py and rosettasciio are imported lazily.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import recording_signals as interpret
from .recording_arrays import read_array_file
from .recording_types import (
    DEFAULT_SIGNAL,
    NM_PER_UNIT,
    GridAxis,
    PathLike,
    Recording,
    RecordingError,
)

__all__ = [
    "DEFAULT_SIGNAL",
    "NM_PER_UNIT",
    "GridAxis",
    "PathLike",
    "Recording",
    "RecordingError",
    "load_recording",
    "read_signals",
]

_RSCIIO_FORMATS = {
    ".dm3": "rsciio.digitalmicrograph",
    ".dm4": "rsciio.digitalmicrograph",
    ".hspy": "rsciio.hspy",
    ".emd": "rsciio.emd",
}
_ARRAY_FORMATS = (".npz", ".npy", ".h5", ".hdf5")


# ------------------------------------------------------------------------------ loading


def load_recording(
    file: Optional[PathLike] = None,
    survey: Optional[PathLike] = None,
    *,
    signal: Optional[str] = None,
    spectrum: Optional[str] = None,
    pixel_size: Optional[float] = None,
    energy_offset: Optional[float] = None,
    dispersion: Optional[float] = None,
    exposure: Optional[float] = None,
    dwell_time: Optional[float] = None,
) -> Recording:
    """Read a recording from one file, or from a survey file plus a spectrum-image file.

    Args:
        file: the recording: a spectrum image, with or without survey images (or survey
            images only, when ``survey`` is not given).
        survey: a separate survey-image file; its images replace any in ``file``, and
            ``file`` must then hold a spectrum image.
        signal: detector name of the survey image when there is one (overrides the file);
            with several, serve only the one of that name.
        spectrum: title of the spectrum image to use when the file holds several.
        pixel_size: survey pixel size in nm, overriding the file's calibration.
        energy_offset, dispersion: energy calibration in eV and eV/channel, overriding the
            file's (needed for ``.npy`` spectra).
        exposure: seconds per spectrum, when the file does not say (or says wrong).
        dwell_time: seconds per survey pixel, likewise.

    Returns:
        The recording, normalised to nm, eV and s.

    Raises:
        FileNotFoundError: a file does not exist.
        RecordingError: unknown format, no spectrum image where one is required,
            inconsistent shapes, missing energy calibration.

    Example:
        >>> rec = load_recording("../shared/data/LSMO_STO_linescan.hspy")  # doctest: +SKIP
        >>> rec.spectra.shape, rec.energy_axis[[0, -1]]  # doctest: +SKIP
        ((1, 10, 512), array([395., 906.]))
    """
    if file is None and survey is None:
        raise RecordingError("give a recording file (and optionally a separate survey file)")
    notes: Dict[str, Any] = {}
    sources: List[str] = []
    images: List[Dict[str, Any]] = []
    spectra: List[Dict[str, Any]] = []
    for path, role in ((file, "recording"), (survey, "survey")):
        if path is None:
            continue
        path = Path(path)
        sources.append(str(path))
        sigs = read_signals(path)
        found_images = [s for s in sigs if interpret.signal_kind(s) == "image"]
        found_spectra = [s for s in sigs if interpret.signal_kind(s) == "spectrum"]
        if role == "survey":
            if not found_images:
                raise RecordingError(f"{path} holds no survey image (a 2-D image signal)")
            images = found_images  # a separate survey file replaces the recording's images
        else:
            images.extend(found_images)
            spectra.extend(found_spectra)
            if survey is not None and not found_spectra:
                raise RecordingError(
                    f"{path} holds no spectrum image; with a separate survey file, the "
                    "recording file must hold the spectra"
                )
            if not found_images and not found_spectra:
                raise RecordingError(f"{path} holds neither a survey image nor a spectrum image")

    si = interpret.pick_spectrum(spectra, spectrum) if spectra else None
    rec = Recording(survey={}, survey_x=GridAxis(1), survey_y=GridAxis(1), sources=sources)
    if si is not None:
        interpret.fill_spectra(rec, si, energy_offset, dispersion, notes)
    if images:
        interpret.fill_survey(rec, images, signal, notes)
    else:
        interpret.synthesise_survey(rec, signal, notes)
    if pixel_size is not None:
        interpret.override_pixel_size(rec, float(pixel_size), notes)
    interpret.fill_instrument(rec, ([si] if si is not None else []) + images, notes)
    if exposure is not None:
        rec.exposure = interpret.positive("exposure", exposure)
    if dwell_time is not None:
        rec.dwell_time = interpret.positive("dwell_time", dwell_time)
    rec.notes = notes
    return rec


def read_signals(path: PathLike) -> List[Dict[str, Any]]:
    """Read every signal of a file as rosettasciio-style dicts (data, axes, metadata,
    original_metadata), whatever the format.

    Raises:
        FileNotFoundError: no such file.
        RecordingError: unknown extension, or the reader failed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recording not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5") and _is_hyperspy_h5(path):
        suffix = ".hspy"
    if suffix in _RSCIIO_FORMATS:
        module_name = _RSCIIO_FORMATS[suffix]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # the "replay" extra brings rosettasciio
            raise RecordingError(
                f"reading {suffix} files needs rosettasciio "
                f"(pip install 'ophyd-stem[replay]'): {exc}"
            ) from exc
        try:
            sigs = module.file_reader(str(path))
        except Exception as exc:  # a reader failing on a bad file must not crash the caller
            raise RecordingError(f"{module_name} could not read {path}: {exc}") from exc
        for s in sigs:
            s.setdefault("title", str(s.get("metadata", {}).get("General", {}).get("title", "")))
        return list(sigs)
    if suffix in _ARRAY_FORMATS:
        return read_array_file(path)
    known = sorted(set(_RSCIIO_FORMATS) | set(_ARRAY_FORMATS))
    raise RecordingError(f"unknown recording format {path.suffix!r} ({path}); known: {known}")


def _is_hyperspy_h5(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs.get("file_format", "")) == "HyperSpy"
    except OSError:
        return False
