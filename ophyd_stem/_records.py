"""Devices that record what a plan computed, so decisions land in the run beside the data.

An adaptive plan measures, then decides: the edge map it derived from the survey, the
points it chose, the agent's acquisition values and beliefs, the atoms LoG* found, the
Pareto front and the operator's pick. Bluesky records only what devices produce, so these
two small devices make computed values readable:

:class:`Record`
    one event per call (``plans.stubs.record``): a step's decision, a map, a report. Fields
    are typed on first use; the values must keep their shape within a run.
:class:`Table`
    one event page per call (``plans.stubs.record_table``): a table of rows of any length,
    one event per row (atoms, candidate points, the Pareto front).

Both run in the RunEngine's own thread; nothing here touches hardware.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np
from bluesky.protocols import EventPageCollectable, Flyable, Reading, Triggerable
from event_model import DataKey, PartialEventPage
from ophyd_async.core import AsyncStatus, Device

__all__ = ["FIELD_UNITS", "Record", "Table", "as_field_value"]


def as_field_value(value: Any) -> Any:
    """A value Bluesky and Tiled can store: numbers, strings, arrays; dicts and lists of
    mixed content become JSON strings."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (bool, int, float, str, np.number, np.bool_)):
        return value.item() if isinstance(value, (np.number, np.bool_)) else value
    if isinstance(value, (list, tuple)):
        arr = np.asarray(value)
        if arr.dtype.kind in "biuf":
            return arr
    return json.dumps(value, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.number, np.bool_)):
        return obj.item()
    return str(obj)


#: units of the fields plans commonly record, unless a plan says otherwise; ``""`` means
#: dimensionless (counts of things, indices, fractions, probabilities, scores)
FIELD_UNITS: dict[str, str] = {
    **dict.fromkeys(
        ("x", "y", "sigma", "dx", "dy", "intended_x", "intended_y", "correction_x",
         "correction_y", "drift_x", "drift_y", "edge_distance"),
        "px",
    ),
    **dict.fromkeys(("vx", "vy"), "px/s"),
    **dict.fromkeys(("time", "requested", "planned_time"), "s"),
    **dict.fromkeys(
        ("step", "image", "order", "point", "n_points", "n_atoms", "chosen", "cluster",
         "fraction_of_pixels", "edge_strength", "probability", "uncertainty", "peak", "used",
         "optimised", "precision", "recall", "f1", "QC", "ER", "qc", "er", "edge_map",
         "quality_count", "error_rate", "spectra_done", "log_density"),
        "",
    ),
}  # fmt: skip


def _datakey(source: str, value: Any, units: str | None) -> DataKey:
    if isinstance(value, np.ndarray):
        key = DataKey(
            source=source, shape=list(value.shape), dtype="array", dtype_numpy=value.dtype.str
        )
    elif isinstance(value, str):
        # Any length: JSON reports run to thousands of characters (ophyd-async's "|S40"
        # is EPICS' 40-character string and would promise readers a truncated field).
        key = DataKey(source=source, shape=[], dtype="string", dtype_numpy="<U0")
    elif isinstance(value, bool):
        key = DataKey(source=source, shape=[], dtype="boolean", dtype_numpy="|b1")
    elif isinstance(value, int):
        key = DataKey(source=source, shape=[], dtype="integer", dtype_numpy="<i8")
    else:
        key = DataKey(source=source, shape=[], dtype="number", dtype_numpy="<f8")
    if units is not None:
        key["units"] = units
    return key


def _units_of(field: str, units: Mapping[str, str], value: Any) -> str | None:
    """A field's units: the plan's word, else the common one, else none for text."""
    if field in units:
        return units[field]
    if isinstance(value, str):
        return None  # text (JSON reports, names) has no units
    return FIELD_UNITS.get(field)


class Record(Device, Triggerable):
    """Values a plan computed, read as one event of a stream.

    Args:
        name: data keys are ``<name>-<field>``.
        units: units per field name, over :data:`FIELD_UNITS` (``""``: dimensionless).
        hints: the fields worth plotting against time (BestEffortCallback plots those, and
            nothing when there are none: maps and reports are not for a line plot).

    Example (inside a plan, ``plans.stubs.record(decisions, "decisions", x=..., ...)`` does
    the last two steps):
        >>> import bluesky.plan_stubs as bps
        >>> from bluesky import RunEngine
        >>> from ophyd_stem import Record
        >>> decisions = Record("decision", units={"value": "counts"}, hints=["value"])
        >>> def decide():
        ...     yield from bps.open_run()
        ...     decisions.load(x=12.0, y=40.5, value=3.1)
        ...     yield from bps.trigger_and_read([decisions], name="decisions")
        ...     yield from bps.close_run()
        >>> events = []
        >>> uids = RunEngine()(decide(), lambda name, doc: events.append(doc)
        ...                    if name == "event" else None)
        >>> events[0]["data"]
        {'decision-x': 12.0, 'decision-y': 40.5, 'decision-value': 3.1}
    """

    def __init__(
        self,
        name: str = "",
        units: Mapping[str, str] | None = None,
        hints: Sequence[str] = (),
    ) -> None:
        self._units = dict(units or {})
        self._hinted = list(hints)
        self._values: dict[str, Any] = {}
        self._keys: dict[str, DataKey] | None = None
        self._time = time.time()
        super().__init__(name=name)

    def load(self, **values: Any) -> None:
        """Set the values the next ``read`` returns (the set of fields is fixed by the first
        load of a run; :meth:`reset` clears it)."""
        values = {k: as_field_value(v) for k, v in values.items()}
        if self._keys is not None and set(values) != {
            k.removeprefix(f"{self.name}-") for k in self._keys
        }:
            raise ValueError(
                f"{self.name}: fields {sorted(values)} differ from this run's "
                f"{sorted(k.removeprefix(f'{self.name}-') for k in self._keys)}"
            )
        self._values = values
        self._time = time.time()
        if self._keys is None:
            self._keys = {
                f"{self.name}-{k}": _datakey(
                    f"computed://{self.name}/{k}", v, _units_of(k, self._units, v)
                )
                for k, v in values.items()
            }

    def reset(self) -> None:
        self._values, self._keys = {}, None

    @property
    def hints(self) -> dict[str, list[str]]:
        """The hinted data keys (``<name>-<field>``) of the fields given as ``hints`` that
        this run records."""
        keys = [f"{self.name}-{field}" for field in self._hinted]
        return {"fields": [key for key in keys if self._keys is None or key in self._keys]}

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        """Nothing to acquire: the values were computed by the plan."""

    async def describe(self) -> dict[str, DataKey]:
        if self._keys is None:
            raise RuntimeError(f"{self.name}: load() values before reading")
        return dict(self._keys)

    async def read(self) -> dict[str, Reading]:
        return {
            f"{self.name}-{k}": Reading(value=v, timestamp=self._time)
            for k, v in self._values.items()
        }


class Table(Device, Flyable, EventPageCollectable):
    """Rows a plan computed (atoms, candidate points, a Pareto front), one event per row,
    in the stream ``stream``.

    The stream is fixed per table, so Bluesky creates its descriptor once per run however
    many times rows are collected (``plans.stubs.record_table``).

    Args:
        name: data keys are ``<name>-<column>``.
        stream: the stream the rows go to (default: ``name``).
        units: units per column, over :data:`FIELD_UNITS` (``""``: dimensionless).
        hints: columns worth plotting against time (default none: rows of atoms or of a
            front are not a time series).
    """

    def __init__(
        self,
        name: str = "",
        stream: str | None = None,
        units: Mapping[str, str] | None = None,
        hints: Sequence[str] = (),
    ) -> None:
        self.stream = stream or name
        self._units = dict(units or {})
        self._hinted = list(hints)
        self._columns: dict[str, np.ndarray] = {}
        self._keys: dict[str, DataKey] | None = None
        super().__init__(name=name)

    def load(self, **columns: Any) -> None:
        """Set the rows of the next page: equal-length columns (1-D, or N x ... arrays)."""
        cols = {}
        for key, value in columns.items():
            arr = np.asarray(value)
            if arr.dtype.kind not in "biufU":
                arr = np.asarray([json.dumps(v, default=_json_default) for v in value])
            cols[key] = arr
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"{self.name}: columns have different lengths {sorted(lengths)}")
        self._columns = cols
        keys = {}
        for key, arr in cols.items():
            sample = arr[0] if len(arr) else np.zeros(arr.shape[1:], arr.dtype)
            value = as_field_value(sample if np.ndim(sample) else sample.item())
            if arr.dtype.kind == "U":
                value = str(sample)
            keys[f"{self.name}-{key}"] = _datakey(
                f"computed://{self.name}/{key}", value, _units_of(key, self._units, value)
            )
        if self._keys is not None and set(keys) != set(self._keys):
            raise ValueError(f"{self.name}: columns changed within a run")
        self._keys = keys

    def reset(self) -> None:
        self._columns, self._keys = {}, None

    @property
    def hints(self) -> dict[str, list[str]]:
        """The hinted data keys (``<name>-<column>``) of the columns given as ``hints`` that
        this run records."""
        keys = [f"{self.name}-{column}" for column in self._hinted]
        return {"fields": [key for key in keys if self._keys is None or key in self._keys]}

    @AsyncStatus.wrap
    async def kickoff(self) -> None:
        """The rows are already computed."""

    @AsyncStatus.wrap
    async def complete(self) -> None:
        """The rows are already computed."""

    async def describe_collect(self) -> dict[str, dict[str, DataKey]]:
        if self._keys is None:
            raise RuntimeError(f"{self.name}: load() rows before collecting")
        return {self.stream: dict(self._keys)}

    async def collect_pages(self) -> AsyncIterator[PartialEventPage]:
        columns, self._columns = self._columns, {}
        if not columns:
            return
        n = len(next(iter(columns.values())))
        if n == 0:
            return
        now = time.time()
        data = {}
        for key, arr in columns.items():
            values = list(arr) if arr.ndim > 1 else arr.tolist()
            data[f"{self.name}-{key}"] = values
        yield PartialEventPage(data=data, timestamps={k: [now] * n for k in data}, time=[now] * n)
