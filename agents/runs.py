"""Runs from the catalog as plain arrays, so agents can be re-run on what was measured.

A Bluesky run holds an experiment's data *and* its decisions: the survey image, the beam
positions and spectra (``primary``), each step's decision with the agent's report
(``decisions``), the agent's maps (``agent_maps``), the edge map and points (``edge_map``,
``edge_points``), the atoms and the LoG* front (``atoms``, ``logstar_front``, ``logstar``)
and the operator's interventions (``interventions``). :func:`unpack_run` turns either form
of a run into one :class:`RunData` of numpy arrays and decoded JSON:

* a tiled client of a run (``catalog[uid]``), read stream by stream through the server;
* a list of ``(name, doc)`` documents (a RunEngine's, or ``run.documents()``); survey
  images written to HDF5 are read from the files their ``stream_resource`` names.

This and :mod:`agents.run_streams` (which reads the streams, from documents or a tiled
client) are the modules of ``agents`` that may know about the catalog; neither imports tiled
itself (the client is used through its mapping interface); h5py only for external images in
documents. The energy axis is read from the recorded calibration by
:func:`ophyd_stem._calibration.energy_axis_from_configuration` (numpy only), the one reader
of it.

Example:
    >>> from ophyd_stem.catalog import open_catalog
    >>> data = unpack_run(open_catalog()[-1])                     # doctest: +SKIP
    >>> data.survey_image.shape, data.positions.shape             # doctest: +SKIP
    ((128, 128), (30, 2))
    >>> data.decisions["source"][:3]                              # doctest: +SKIP
    ['seed', 'seed', 'seed']
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

# the recorded calibration's one reader, numpy only (docs/decisions/0015-one-calibration-reader.md)
from ophyd_stem._calibration import energy_axis_from_configuration

from .run_streams import (
    StreamData,
    _read_external,  # noqa: F401  (the live view reads survey frames with it)
    decode_json,
    streams_from_documents,
    streams_from_tiled,
)

__all__ = ["RunData", "StreamData", "decode_json", "streams_from_documents", "unpack_run"]


@dataclass
class RunData:
    """What a run holds, unpacked: data and decisions as arrays, ready for an agent.

    Positions follow the project's convention: ``(x, y)`` = (column, row) pixels of the survey
    image's scan field. Attributes are empty (or None) when the run has no such stream.

    Attributes:
        uid: the run's start uid.
        start, stop: the start and stop documents (``stop`` is ``{}`` for a run still open).
        plan_name, plan_args: from the start document.
        streams: every stream, as :class:`StreamData`.
        survey_image: the first survey image of the plan's signal (2-D), or None.
        survey_images: every survey image of that signal, in order.
        survey_signal: the detector signal of the survey image (``"HAADF"``).
        pixel_size: nm per survey pixel: the one the plan was told (logstar's
            ``pixel_size_nm``, a correction of a wrong calibration), else the scan's; None
            when not recorded.
        positions: ``(N, 2)`` beam positions of the spectra (``primary``).
        spectra: ``(N, C)`` the spectra, as stored (float32 from the spectrometer).
        energy_axis: ``(C,)`` eV.
        decisions: ``decisions`` stream by field name (``step``, ``x``, ``y``, ``value``,
            ``acquisition``, ``predicted_mean``, ``predicted_std``, ``source``, ``time``),
            and ``reports``: each decision's agent report, decoded.
        maps: the agent's maps, one dict per record (``step``, ``mean``, ``std``,
            ``acquisition``, ``x``, ``y``).
        edge_map: the edge map of an edge-guided run.
        edge_points: ``(M, 2)`` the points it chose, in beam order.
        edge_report: the edge agent's report (its parameters).
        atoms: LoG* atoms by column (``image``, ``x``, ``y``, ``sigma``, ``cluster``).
        front: LoG* Pareto front, one dict per point (``image``, ``point``, ``chosen``,
            ``parameters``, and one entry per reward).
        logstar: LoG* reports, one dict per image (``image``, ``n_atoms``, ``optimised``,
            ``chosen``, ``report``).
        dcnn: DCNN reports, one dict per image (``image``, ``report``).
        interventions: the operator's interventions, one dict per record, in order.
        zero_loss: the zero-loss alignment by column (``x``, ``y``, ``zlp``, ``shift``,
            ``trusted``, ``walk``; eV), one row per spectrum in ``primary``'s order; empty
            when the run did not align (:mod:`plans.zero_loss`).
    """

    uid: str
    start: Dict[str, Any]
    stop: Dict[str, Any]
    streams: Dict[str, StreamData]
    survey_image: Optional[np.ndarray] = None
    survey_images: List[np.ndarray] = field(default_factory=list)
    survey_signal: str = "HAADF"
    pixel_size: Optional[float] = None
    positions: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    spectra: Optional[np.ndarray] = None
    energy_axis: Optional[np.ndarray] = None
    decisions: Dict[str, Any] = field(default_factory=dict)
    maps: List[Dict[str, Any]] = field(default_factory=list)
    edge_map: Optional[np.ndarray] = None
    edge_points: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    edge_report: Dict[str, Any] = field(default_factory=dict)
    atoms: Dict[str, np.ndarray] = field(default_factory=dict)
    front: List[Dict[str, Any]] = field(default_factory=list)
    logstar: List[Dict[str, Any]] = field(default_factory=list)
    dcnn: List[Dict[str, Any]] = field(default_factory=list)
    interventions: List[Dict[str, Any]] = field(default_factory=list)
    zero_loss: Dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def plan_name(self) -> Optional[str]:
        return self.start.get("plan_name")

    @property
    def plan_args(self) -> Dict[str, Any]:
        return dict(self.start.get("plan_args") or {})

    @property
    def exit_status(self) -> Optional[str]:
        return self.stop.get("exit_status")

    @property
    def values(self) -> np.ndarray:
        """The scalar of each decision (empty without decisions)."""
        return np.asarray(self.decisions.get("value", np.empty(0)), dtype=np.float64)

    @property
    def aligned_spectra(self) -> Optional[np.ndarray]:
        """The spectra as the plan's agent saw them: moved by the recorded zero-loss shifts
        (the same computation as during the run), or as measured when the run did not align.
        """
        shifts = self.zero_loss.get("shift")
        if self.spectra is None or shifts is None or self.energy_axis is None:
            return self.spectra
        if len(shifts) != len(self.spectra):
            raise ValueError(
                f"{len(self.spectra)} spectra but {len(shifts)} zero-loss shifts recorded"
            )
        from .zlp import shift_spectra

        return shift_spectra(self.spectra, self.energy_axis, shifts)

    def decisions_at(self, step: int) -> List[int]:
        """Row indices of the decisions of one step."""
        steps = np.asarray(self.decisions.get("step", np.empty(0)))
        return [int(i) for i in np.flatnonzero(steps == step)]


# ---------------------------------------------------------------------- interpretation


def unpack_run(run: Any, fill_external: Any = True) -> RunData:
    """A run as plain arrays: survey image, positions, spectra, decisions, maps, atoms...

    Args:
        run: a tiled client of a Bluesky run (``catalog[uid]``), or its documents as an
            iterable of ``(name, doc)`` pairs.
        fill_external: for documents, how survey images written to files are read (see
            :func:`streams_from_documents`).

    Returns:
        The :class:`RunData`.

    Raises:
        ValueError: not a Bluesky run (no start document).

    Example:
        >>> data = unpack_run(RE_documents)                       # doctest: +SKIP
        >>> data.decisions["x"], data.decisions["value"]          # doctest: +SKIP
    """
    if hasattr(run, "metadata") and hasattr(run, "__getitem__") and not isinstance(run, list):
        start, stop, streams = streams_from_tiled(run)
        if not start:
            raise ValueError("this node has no start document: not a Bluesky run")
    else:
        start, stop, streams = streams_from_documents(run, fill_external)
    data = RunData(uid=start.get("uid", ""), start=start, stop=stop, streams=streams)
    _survey(data)
    _primary(data)
    _decisions(data)
    _maps(data)
    _edges(data)
    _logstar(data)
    _dcnn(data)
    _interventions(data)
    _zero_loss(data)
    return data


def _survey(data: RunData) -> None:
    survey = data.streams.get("survey")
    if survey is None or not len(survey):  # a plain survey run reads into primary
        survey = data.streams.get("primary")
        if survey is None or not len(survey):
            return
    signal = str(data.plan_args.get("signal") or "HAADF")
    key = f"scan-{signal.lower()}"
    if key not in survey.columns:
        images = [k for k, c in survey.columns.items() if k.startswith("scan-") and c.ndim >= 3]
        if not images:
            return
        key = images[0]
        signal = key.split("-", 1)[1].upper()
    stack = np.asarray(survey.columns[key])
    frames = stack.reshape(-1, *stack.shape[-2:])
    per_event = len(frames) // max(len(survey), 1) if len(survey) else 1
    data.survey_images = [frames[i * per_event + per_event - 1] for i in range(len(survey))] or [
        frames[-1]
    ]
    data.survey_image = data.survey_images[0]
    data.survey_signal = signal
    pixel = survey.configuration.get("scan-pixel_size")
    # a plan told the true pixel size (the scan's calibration was wrong: logstar's
    # pixel_size_nm) analysed the images at it: so do replays, forensics and figures
    told = data.plan_args.get("pixel_size_nm")
    if isinstance(told, (int, float)) and not isinstance(told, bool) and told > 0:
        pixel = told
    data.pixel_size = None if pixel is None else float(pixel)


def _primary(data: RunData) -> None:
    primary = data.streams.get("primary")
    if primary is None:
        return
    x, y = primary.get("stem-beam-x"), primary.get("stem-beam-y")
    if x is not None and y is not None:
        data.positions = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    spectra = primary.get("eels-spectrum")
    if spectra is not None:
        data.spectra = np.asarray(spectra)
        if data.spectra.dtype.kind == "f" and data.spectra.dtype != np.float32:
            # the spectrometer's spectra are float32; JSON replay widens them
            declared = (primary.data_keys.get("eels-spectrum") or {}).get("dtype_numpy")
            if declared == "<f4":
                data.spectra = data.spectra.astype(np.float32)
    data.energy_axis = energy_axis_from_configuration(primary.configuration)


def _decisions(data: RunData) -> None:
    stream = data.streams.get("decisions")
    if stream is None:
        return
    out: Dict[str, Any] = {"time": stream.time}
    for key, column in stream.columns.items():
        name = key.split("-", 1)[-1]
        if name == "report":
            out["reports"] = [decode_json(str(v)) for v in column]
        elif column.dtype.kind in "US":
            out[name] = [str(v) for v in column]
        else:
            out[name] = np.asarray(column)
    data.decisions = out


def _maps(data: RunData) -> None:
    stream = data.streams.get("agent_maps")
    if stream is None:
        return
    for i in range(len(stream)):
        data.maps.append(
            {key.split("-", 1)[-1]: np.asarray(col[i]) for key, col in stream.columns.items()}
        )
    for record in data.maps:
        if "step" in record:
            record["step"] = int(record["step"])


def _edges(data: RunData) -> None:
    edge = data.streams.get("edge_map")
    if edge is not None and len(edge):
        column = edge.field("edge_map")
        if column is not None:
            data.edge_map = np.asarray(column[-1])
        report = edge.field("report")
        if report is not None:
            data.edge_report = decode_json(str(report[-1]))
    points = data.streams.get("edge_points")
    if points is not None and len(points):
        x, y = points.field("x"), points.field("y")
        order = points.field("order")
        xy = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
        data.edge_points = xy[np.argsort(order, kind="stable")] if order is not None else xy


def _logstar(data: RunData) -> None:
    atoms = data.streams.get("atoms")
    if atoms is not None:
        data.atoms = {key.split("-", 1)[-1]: np.asarray(col) for key, col in atoms.columns.items()}
    front = data.streams.get("logstar_front")
    if front is not None:
        names = [key.split("-", 1)[-1] for key in front.columns]
        for i in range(len(front)):
            row = {}
            for name, col in zip(names, front.columns.values()):
                value = col[i]
                row[name] = decode_json(str(value)) if name == "parameters" else value.item()
            data.front.append(row)
    data.logstar = _records(data.streams.get("logstar"))


def _records(stream: Optional[StreamData]) -> List[Dict[str, Any]]:
    """One dict per event of a record stream (``logstar``, ``dcnn``): fields by their short
    name, the agent's ``report`` decoded from JSON."""
    if stream is None:
        return []
    rows = []
    for i in range(len(stream)):
        row: Dict[str, Any] = {}
        for key, col in stream.columns.items():
            name = key.split("-", 1)[-1]
            value = col[i]
            row[name] = decode_json(str(value)) if name == "report" else value.item()
        rows.append(row)
    return rows


def _dcnn(data: RunData) -> None:
    data.dcnn = _records(data.streams.get("dcnn"))


def _interventions(data: RunData) -> None:
    stream = data.streams.get("interventions")
    if stream is None:
        return
    for i in range(len(stream)):
        row: Dict[str, Any] = {"time": float(stream.time[i])}
        for key, col in stream.columns.items():
            name = key.split("-", 1)[-1]
            value = col[i]
            if isinstance(value, np.generic):
                value = value.item()
            if name in ("before", "after", "detail") and isinstance(value, str):
                # always JSON (plans.control writes them so), strings and null too
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            row[name] = decode_json(value) if isinstance(value, str) else value
        data.interventions.append(row)


def _zero_loss(data: RunData) -> None:
    stream = data.streams.get("zero_loss")
    if stream is not None and len(stream):
        data.zero_loss = {k.split("-", 1)[-1]: np.asarray(c) for k, c in stream.columns.items()}
