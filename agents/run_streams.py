"""A Bluesky run's streams as columns: from its documents or from a tiled client.

The reading half of :mod:`agents.runs`: :func:`streams_from_documents` (a RunEngine's
documents, or ``run.documents()``; survey images written to HDF5 read from the files their
``stream_resource`` names) and :func:`streams_from_tiled` (a tiled client of a run, read
stream by stream through the server) give the start and stop documents and one
:class:`StreamData` per stream. :mod:`agents.runs` interprets them (survey image, spectra,
decisions...). No import of tiled (the client is used through its mapping interface); h5py
only for external images in documents.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import numpy as np

__all__ = ["StreamData", "decode_json", "streams_from_documents", "streams_from_tiled"]


def decode_json(value: Any) -> Any:
    """A JSON string recorded by ``ophyd_stem.Record``/``Table`` back as Python objects;
    anything that is not JSON text is returned unchanged."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@dataclass
class StreamData:
    """One stream of a run: a column per data key, one row per event (in ``seq_num`` order).

    Attributes:
        name: the stream name (``"primary"``, ``"decisions"``...).
        columns: data key -> array of rows (``(N, ...)``; strings as a numpy str array).
        time: event times, seconds since the epoch.
        configuration: every configuration value of the stream's devices, by data key.
        data_keys: the descriptor's data keys (shape, dtype, units, source).
    """

    name: str
    columns: Dict[str, np.ndarray] = field(default_factory=dict)
    time: np.ndarray = field(default_factory=lambda: np.empty(0))
    configuration: Dict[str, Any] = field(default_factory=dict)
    data_keys: Dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.time)

    def get(self, key: str, default: Any = None) -> Any:
        """A column by its full data key (``"decision-x"``), or ``default``."""
        return self.columns.get(key, default)

    def field(self, name: str, default: Any = None) -> Any:
        """A column by the part after the device prefix (``"x"`` for ``"decision-x"``)."""
        for key, value in self.columns.items():
            if key.split("-", 1)[-1] == name:
                return value
        return default


# ---------------------------------------------------------------------- documents


def _h5_path(uri: str) -> str:
    for prefix in ("file://localhost", "file://"):
        if uri.startswith(prefix):
            return uri[len(prefix) :]
    return uri


def _read_external(resource: Mapping[str, Any], start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of an HDF5 dataset a ``stream_resource`` names."""
    import h5py  # only for external images; agents otherwise need no HDF5

    params = resource.get("parameters") or {}
    uri = resource.get("uri") or resource.get("root", "") + resource.get("resource_path", "")
    path, dataset = _h5_path(uri), params.get("dataset", "/entry/data")
    try:  # in the writing process (a live view) the writer's own locking flags must match
        with h5py.File(path, "r", swmr=bool(params.get("swmr"))) as f:
            return np.asarray(f[dataset][start:stop])
    except OSError:  # another process may hold the file's lock
        with h5py.File(path, "r", swmr=bool(params.get("swmr")), locking=False) as f:
            return np.asarray(f[dataset][start:stop])


def streams_from_documents(
    documents: Iterable[Tuple[str, Mapping[str, Any]]], fill_external: Any = True
) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, StreamData]]:
    """``(start, stop, streams)`` from a run's documents (events and event pages alike).

    Args:
        documents: ``(name, doc)`` pairs of one run.
        fill_external: how to get data written to files (survey images): True reads the
            HDF5 file a ``stream_resource`` names, False leaves them out, a callable
            ``(stream_resource, stream_datum) -> rows`` gets them some other way.

    Raises:
        ValueError: the documents hold no start document, or an image file is unreadable.
    """
    start: Dict[str, Any] = {}
    stop: Dict[str, Any] = {}
    descriptors: Dict[str, Mapping[str, Any]] = {}
    rows: Dict[str, List[Tuple[int, float, Dict[str, Any]]]] = {}
    resources: Dict[str, Mapping[str, Any]] = {}
    external: Dict[str, Dict[int, Dict[str, Any]]] = {}
    for name, doc in documents:
        if name == "start":
            start = dict(doc)
        elif name == "stop":
            stop = dict(doc)
        elif name == "descriptor":
            descriptors[doc["uid"]] = doc
            rows.setdefault(doc["name"], [])
        elif name == "event":
            stream = descriptors[doc["descriptor"]]["name"]
            rows[stream].append((int(doc["seq_num"]), float(doc["time"]), dict(doc["data"])))
        elif name == "event_page":
            stream = descriptors[doc["descriptor"]]["name"]
            keys = list(doc["data"])
            for i, seq in enumerate(doc["seq_num"]):
                data = {k: doc["data"][k][i] for k in keys}
                rows[stream].append((int(seq), float(doc["time"][i]), data))
        elif name == "stream_resource":
            resources[doc["uid"]] = doc
        elif name == "stream_datum" and fill_external is not False:
            resource = resources[doc["stream_resource"]]
            stream = descriptors[doc["descriptor"]]["name"]
            if callable(fill_external):
                frames = fill_external(resource, doc)
            else:
                try:
                    frames = _read_external(
                        resource, doc["indices"]["start"], doc["indices"]["stop"]
                    )
                except (OSError, KeyError) as exc:
                    raise ValueError(
                        f"cannot read {resource['data_key']} from {resource.get('uri')}: {exc}"
                    ) from exc
            if frames is None:
                continue
            first = int(doc["seq_nums"]["start"])
            for i, frame in enumerate(frames):
                external.setdefault(stream, {}).setdefault(first + i, {})[resource["data_key"]] = (
                    frame
                )
    if not start:
        raise ValueError("the documents hold no start document: not a Bluesky run")
    by_name: Dict[str, List[Mapping[str, Any]]] = {}
    for desc in descriptors.values():
        by_name.setdefault(desc["name"], []).append(desc)
    streams = {}
    for stream, entries in rows.items():
        # A rewind after a pause re-emits events with the same seq_num: the last one counts.
        latest: Dict[int, Tuple[float, Dict[str, Any]]] = {}
        for seq, t, data in entries:
            latest[seq] = (t, data)
        for seq, data in external.get(stream, {}).items():
            if seq in latest:
                latest[seq][1].update(data)
        ordered = [latest[s] for s in sorted(latest)]
        descs = by_name[stream]
        streams[stream] = _stream_data(stream, ordered, descs)
    return start, stop, streams


def _stream_data(
    name: str, ordered: List[Tuple[float, Dict[str, Any]]], descs: List[Mapping[str, Any]]
) -> StreamData:
    data_keys: Dict[str, Any] = {}
    configuration: Dict[str, Any] = {}
    for desc in descs:
        data_keys.update(desc.get("data_keys") or {})
        for obj in (desc.get("configuration") or {}).values():
            configuration.update(obj.get("data") or {})
    columns: Dict[str, np.ndarray] = {}
    for key in data_keys:
        values = [data[key] for _, data in ordered if key in data]
        if len(values) == len(ordered):
            columns[key] = _column(values)
    return StreamData(
        name=name,
        columns=columns,
        time=np.asarray([t for t, _ in ordered], dtype=np.float64),
        configuration=configuration,
        data_keys=data_keys,
    )


def _column(values: List[Any]) -> np.ndarray:
    if values and all(isinstance(v, str) for v in values):
        return np.asarray(values, dtype=str)
    try:
        return np.asarray(values)
    except ValueError:  # ragged rows: keep them apart
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out


# ---------------------------------------------------------------------- tiled


def streams_from_tiled(run: Any) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, StreamData]]:
    metadata = run.metadata
    start = dict(metadata.get("start") or {})
    stop = dict(metadata.get("stop") or {})
    streams = {}
    for name in list(run):
        node = run[name]
        meta = node.metadata
        keys = [k for k in node if not k.startswith("ts_") and k not in ("seq_num", "time")]
        configuration: Dict[str, Any] = {}
        for obj in (meta.get("configuration") or {}).values():
            configuration.update(obj.get("data") or {})
        columns = {k: np.asarray(node[k].read()) for k in keys}
        for key, column in columns.items():
            if column.dtype.kind == "S":
                columns[key] = column.astype(str)
        times = np.asarray(node["time"].read(), dtype=np.float64) if "time" in node else None
        if times is None:
            n = min((len(c) for c in columns.values()), default=0)
            times = np.zeros(n)
        streams[name] = StreamData(
            name=name,
            columns=columns,
            time=times,
            configuration=configuration,
            data_keys=dict(meta.get("data_keys") or {}),
        )
    return start, stop, streams
