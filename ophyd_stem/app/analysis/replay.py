"""Replay a run: its documents into callbacks, its data as an instrument to measure again.

Three ways to look back at a finished run (``ophyd-stem replay UID`` does all of them):

:func:`replay`
    the run's documents, in their original order, into any callbacks: the live figure
    (:class:`~ophyd_stem.app.views.LiveView`), a text table (:class:`RunTable`), another
    catalog's writer. What a callback drew live, it draws again.
``forensics`` and ``counterfactual`` (:mod:`ophyd_stem.app.analysis.forensics`, ``.counterfactual``)
    the agent re-run on the recorded measurements (same decisions?) or swapped for another.
:func:`as_experiment`
    the run's survey image and spectra as a recording for the replay backend
    (``dm_bridge.backends.replay``), so a new plan can be run "on" the old experiment with
    :func:`replay_microscope`. An adaptive run measured only some pixels: everywhere else
    the recording serves the *nearest measured spectrum* (and says so in its metadata).

Example (console):
    >>> replay("3f2a9c", [LiveView(out_dir="figs"), RunTable()])          # doctest: +SKIP
    >>> rec = as_experiment("3f2a9c", "recordings")                       # doctest: +SKIP
    >>> old = replay_microscope(rec.path)                                  # doctest: +SKIP
    >>> RE(adaptive_eels(old.scan, old.eels_points, make_agent, scalarizer))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from bluesky.callbacks.core import CallbackBase

from agents.runs import RunData, unpack_run

__all__ = [
    "ExperimentRecording",
    "RunTable",
    "as_experiment",
    "open_run",
    "replay",
    "replay_microscope",
]

#: values (pixels x channels) above which the filled spectrum image is made on a coarser grid
MAX_FILLED_VALUES = 64 * 2**20


def open_run(run: Any, catalog: Any = None) -> Any:
    """A tiled run from itself, a uid (or its first characters), a scan id or -1.

    Args:
        run: a tiled run, or what ``ophyd-stem show`` takes.
        catalog: the catalog to look in (default: the embedded local one, or
            ``$OPHYD_STEM_CATALOG``).

    Raises:
        KeyError: no such run.
    """
    if not isinstance(run, (str, int)):
        return run
    from ophyd_stem.catalog import get_run

    if catalog is None:
        from ophyd_stem.catalog import CatalogSettings, open_catalog

        from ..config import load_config

        config = load_config()
        if config.catalog:
            catalog = open_catalog(config.catalog, config.api_key)
        else:
            data_dir = Path(config.data_dir) if config.data_dir else None
            catalog = open_catalog(settings=CatalogSettings(data_dir=data_dir))
    return get_run(catalog, run)


def replay(run: Any, callbacks: Iterable[Callable[[str, dict], Any]], catalog: Any = None) -> int:
    """Send a run's documents, in order, to each callback (as the RunEngine did).

    Args:
        run: a tiled run, a uid/scan id (see :func:`open_run`), or a list of documents.
        callbacks: ``callback(name, doc)`` callables: views, tables, a writer.
        catalog: where to look a uid up.

    Returns:
        The number of documents replayed.

    Example:
        >>> replay(-1, [RunTable()])                              # doctest: +SKIP
    """
    callbacks = list(callbacks)
    documents = run if isinstance(run, list) else open_run(run, catalog).documents()
    count = 0
    for name, doc in documents:
        for callback in callbacks:
            callback(name, doc)
        count += 1
    return count


class RunTable(CallbackBase):
    """A text table of a run's decisions, interventions and LoG* choices, as they come.

    Args:
        file: where to write (default stdout).
    """

    def __init__(self, file: TextIO | None = None) -> None:
        super().__init__()
        self.file = file
        self._streams: dict[str, str] = {}
        self.rows = 0

    def _print(self, text: str) -> None:
        print(text, file=self.file or sys.stdout)

    def start(self, doc: dict) -> None:
        self._streams = {}
        self._print(
            f"run {doc['uid'][:8]}  scan {doc.get('scan_id')}  {doc.get('plan_name')} "
            f"{json.dumps(doc.get('plan_args', {}))}"
        )
        self._print(f"{'stream':13} {'step':>4}  {'x':>7} {'y':>7}  {'value':>11}  detail")

    def descriptor(self, doc: dict) -> None:
        self._streams[doc["uid"]] = doc["name"]

    def event_page(self, doc: dict) -> None:
        keys = list(doc["data"])
        for i in range(len(doc["seq_num"])):
            self.event(
                {"descriptor": doc["descriptor"], "data": {k: doc["data"][k][i] for k in keys}}
            )

    def event(self, doc: dict) -> None:
        stream = self._streams.get(doc["descriptor"])
        data = {k.split("-", 1)[-1]: v for k, v in doc["data"].items()}
        if stream == "decisions":
            detail = data.get("source", "")
            if np.isfinite(data.get("acquisition", np.nan)):
                detail += f", acquisition {data['acquisition']:.4g}"
            line = (
                f"{data.get('step', ''):>4}  {data['x']:7.1f} {data['y']:7.1f}  "
                f"{data.get('value', np.nan):11.5g}  {detail}"
            )
        elif stream == "interventions":
            line = (
                f"{data.get('step', ''):>4}  {'':7} {'':7}  {'':11}  "
                f"{data.get('kind')} by {data.get('who')}: {str(data.get('after'))[:60]}"
            )
        elif stream == "logstar":
            line = (
                f"{data.get('image', ''):>4}  {'':7} {'':7}  {data.get('n_atoms', ''):>11}  "
                f"atoms, front point #{data.get('chosen')}"
            )
            if data.get("plausible") is False:  # recorded since runs say it
                line += f"; NOT plausible: {data.get('reason')}"
        else:
            return
        self.rows += 1
        self._print(f"{stream:13} {line}")

    def stop(self, doc: dict) -> None:
        counts = ", ".join(f"{k}: {v}" for k, v in (doc.get("num_events") or {}).items())
        self._print(f"end: {doc.get('exit_status')}  ({counts})")


# ---------------------------------------------------------------------- as an experiment


@dataclass
class ExperimentRecording:
    """A run turned into a recording for the replay backend.

    Attributes:
        path: the ``.npz`` recording (layout of ``dm_bridge.backends.recording``).
        metadata_path: the JSON beside it: where it came from and how it was filled.
        metadata: the same, as a dict.
    """

    path: Path
    metadata_path: Path
    metadata: dict[str, Any] = field(default_factory=dict)


def _grid_spectra(data: RunData) -> tuple[np.ndarray, dict[str, Any]] | None:
    """A grid run's spectra as (rows, cols, C) with their calibration, or None."""
    shape = data.start.get("shape")
    n = len(data.positions)
    if not shape or len(shape) != 2 or shape[0] * shape[1] != n or n < 4:
        return None
    rows, cols = (int(v) for v in shape)
    grid = data.positions.reshape(rows, cols, 2)
    dx = (grid[0, -1, 0] - grid[0, 0, 0]) / max(cols - 1, 1)
    dy = (grid[-1, 0, 1] - grid[0, 0, 1]) / max(rows - 1, 1)
    if dx <= 0 or dy <= 0:
        return None
    ps = data.pixel_size or 1.0
    x0, y0 = grid[0, 0]
    return data.spectra.reshape(rows, cols, -1), {
        "spectrum_pixel_size": np.array([dx * ps, dy * ps]),
        "spectrum_origin": np.array([(x0 + 0.5) * ps, (y0 + 0.5) * ps]),
    }


def _grid_step(positions: np.ndarray) -> tuple[int, int, int]:
    """``(step, x0, y0)``: the coarsest pixel grid through every measured position (DKL's
    candidates lie on every other pixel), so those stay grid nodes served exactly."""
    pixels = np.rint(positions).astype(int)
    if len(pixels) < 2 or not np.allclose(positions, pixels):
        return 1, 0, 0
    step = int(np.gcd.reduce(np.abs(np.diff(pixels, axis=0)).ravel()))
    step = min(max(step, 1), 8)
    x0, y0 = (int(v) for v in pixels.min(axis=0) % step)
    return step, x0, y0


def _nearest_fill(data: RunData) -> tuple[np.ndarray, dict[str, Any], int]:
    """The measured spectra spread over the survey grid: each node gets the spectrum
    measured nearest to it (a coarser grid when the result would be too large)."""
    from scipy.spatial import cKDTree

    h, w = data.survey_image.shape
    channels = data.spectra.shape[-1]
    step, x0, y0 = _grid_step(data.positions)
    while (h // step) * (w // step) * channels > MAX_FILLED_VALUES:
        step, x0, y0 = step * 2, 0, 0
    ys = np.arange(y0, h, step, dtype=float)
    xs = np.arange(x0, w, step, dtype=float)
    gx, gy = np.meshgrid(xs, ys)
    index = cKDTree(data.positions).query(np.column_stack([gx.ravel(), gy.ravel()]))[1]
    spectra = np.asarray(data.spectra, dtype=np.float32)[index].reshape(len(ys), len(xs), -1)
    ps = data.pixel_size or 1.0
    calibration = {
        "spectrum_pixel_size": np.array([step * ps, step * ps]),
        "spectrum_origin": np.array([(xs[0] + 0.5) * ps, (ys[0] + 0.5) * ps]),
    }
    return spectra, calibration, step


def as_experiment(
    run: Any, out_dir: str | Path = ".", catalog: Any = None, compress: bool = False
) -> ExperimentRecording:
    """Write a run's survey image and spectra as a recording the replay backend serves.

    A grid run (``spectrum_image``) becomes its spectrum image. Any other run with spectra
    (adaptive, edge-guided, LoG* EELS) measured only some positions: the recording serves the
    spectrum measured nearest to the beam everywhere, exactly the recorded one at a measured
    position; the recording's ``microscope`` text and the JSON beside it say so.

    Args:
        run: a tiled run, a uid/scan id, a list of documents or a ``RunData``.
        out_dir: folder for ``run-<uid8>.npz`` and ``run-<uid8>.json``.
        catalog: where to look a uid up.
        compress: compress the ``.npz`` (several times smaller for a filled spectrum image,
            but seconds slower to write).

    Returns:
        The :class:`ExperimentRecording`.

    Raises:
        ValueError: a run without a survey image or without spectra.

    Example:
        >>> rec = as_experiment(-1, "recordings")                 # doctest: +SKIP
        >>> microscope = replay_microscope(rec.path)              # doctest: +SKIP
    """
    from dm_bridge.backends.recording_arrays import LAYOUT_KEYS, write_array_file

    if isinstance(run, RunData):
        data = run
    else:
        data = unpack_run(run if isinstance(run, list) else open_run(run, catalog))
    if data.survey_image is None:
        raise ValueError(f"run {data.uid[:8]} has no survey image to serve")
    if data.spectra is None or not len(data.spectra) or data.energy_axis is None:
        raise ValueError(f"run {data.uid[:8]} has no spectra to serve")
    grid = _grid_spectra(data)
    if grid is not None:
        spectra, calibration = grid
        fill, step = "none: the recorded spectrum image", 1
    else:
        spectra, calibration, step = _nearest_fill(data)
        fill = "nearest measured spectrum"
    primary = data.streams["primary"].configuration
    survey = data.streams["survey"].configuration
    ps = data.pixel_size or 1.0
    note = (
        f"replay of run {data.uid[:8]} ({data.plan_name}, {len(data.positions)} spectra); "
        f"between measured positions: {fill}"
    )
    entries = {
        "survey": np.asarray(data.survey_image, dtype=np.float32),
        "signals": np.array([data.survey_signal]),
        "spectra": spectra,
        "energy_axis": np.asarray(data.energy_axis, dtype=np.float64),
        "pixel_size": ps,
        "survey_origin": np.array([0.5 * ps, 0.5 * ps]),
        "exposure": primary.get("eels-exposure"),
        "dwell_time": survey.get("scan-dwell_time"),
        "microscope": note,
        "positions": np.asarray(data.positions, dtype=np.float64),
        **calibration,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"run-{data.uid[:8]}.npz"
    if compress:
        write_array_file(path, entries)
    else:  # the same layout, stored: a filled spectrum image compresses slowly
        with open(path, "wb") as f:
            np.savez(
                f,
                **{
                    k: np.asarray(v)
                    for k, v in entries.items()
                    if v is not None and k in LAYOUT_KEYS
                },
            )
    metadata = {
        "source_run": data.uid,
        "plan_name": data.plan_name,
        "sample": data.start.get("sample"),
        "instrument": (data.start.get("instrument") or {}).get("name"),
        "survey_signal": data.survey_signal,
        "survey_shape": list(data.survey_image.shape),
        "pixel_size_nm": data.pixel_size,
        "measured_positions": len(data.positions),
        "spectrum_grid": list(spectra.shape[:2]),
        "spectrum_grid_step_px": step,
        "between_measured_positions": fill,
        "note": note,
    }
    metadata_path = path.with_suffix(".json")
    metadata_path.write_text(json.dumps(metadata, indent=1))
    return ExperimentRecording(path, metadata_path, metadata)


def replay_microscope(
    recording: str | Path,
    mode: str = "local",
    assets_dir: str | Path | None = None,
    survey: str | Path | None = None,
) -> Any:
    """A connected :class:`~ophyd_stem.Microscope` that serves a recording (from
    :func:`as_experiment`, or any file the replay backend reads). Call it after creating
    the RunEngine, as :func:`~ophyd_stem.sim.twin_microscope`.

    Args:
        recording: the file (a spectrum image, with or without its survey image).
        mode: ``"local"`` (in-process), ``"thread"`` or ``"subprocess"`` (a real bridge).
        assets_dir: where the new run's survey images go.
        survey: the survey image's own file, when it is not in ``recording``; its field
            may have any shape (the scan field is the survey's).

    Example:
        >>> m = replay_microscope("si.npz", survey="survey.npz")     # doctest: +SKIP
        >>> f = get_scalarizer("despike:edge:420:450:455:475")       # doctest: +SKIP
        >>> RE(adaptive_eels(m.scan, m.eels_points, make_agent, f))   # doctest: +SKIP
    """
    from ophyd_stem.sim import twin_microscope

    options = {"file": str(recording)}
    if survey is not None:
        options["survey"] = str(survey)
    return twin_microscope(mode=mode, assets_dir=assets_dir, backend="replay", **options)
