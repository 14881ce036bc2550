"""Light clients that read whole runs quickly (``ophyd-stem show``): no bluesky-tiled-plugins,
no dask, no xarray, a few requests per stream.

bluesky-tiled-plugins' run clients take ~1.5 s to import (their document validator imports
tiled's server-side adapters), and reading a stream through them costs a request to list the
stream's parts for every key asked for, then one dask-wrapped request per column. Here:

- the catalog looks runs up as bluesky-tiled-plugins' does (a uid or its first characters,
  a scan id, ``-1`` for the latest) with tiled's plain queries;
- a run is a plain tiled container that warns :class:`~ophyd_stem.catalog.RunInProgress`
  when a stream of an unfinished run is opened and offers ``run.wait()``, like the run
  clients of :func:`~ophyd_stem.catalog.open_catalog`; it keeps its streams once opened;
- a stream lists its parts once, reads its event table (scalars, strings, times) in one
  Arrow request, and each array in one request without dask, as far as its shape when the
  stream's parts were listed, which the catalog holds in full even while the run grows;
  then every column is cut to the rows all of them have, so a stream read while it grows
  is a consistent snapshot;
- everything read is kept, so asking twice costs nothing.

A MongoDB-backed catalog's runs (bluesky-tiled-plugins' ``BlueskyRunV2Mongo``) are handed
to bluesky-tiled-plugins unchanged.
"""

from __future__ import annotations

import collections.abc
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ._clients import ClientDispatch, InProgressMixin

__all__ = ["snapshot_clients"]

#: arrays bigger than this are read in several requests of whole rows (tiled's own client
#: splits its requests at 100 MiB too)
_REQUEST_BYTES = 64 * 1024 * 1024
_ARROW = "application/vnd.apache.arrow.file"
#: requests in flight at once while a whole run is read (the server answers them in parallel)
_WORKERS = 4
_OCTETS = "application/octet-stream"


def _get(client: Any, url: str, accept: str, params: Optional[dict] = None) -> bytes:
    """One GET through the client's connection, retried as tiled retries its own."""
    from urllib.parse import parse_qs, urlparse

    from tiled.client.utils import handle_error, retry_context

    from ._runs import _is_loopback

    parts = urlparse(url)
    query = {**parse_qs(parts.query), **(params or {})}
    headers = {"Accept": accept}
    if _is_loopback(parts.hostname or ""):
        # the embedded server is on this machine: compressing (server) and decompressing
        # (here) costs CPU time that a loopback connection never pays back
        headers["Accept-Encoding"] = "identity"
    for attempt in retry_context():
        with attempt:
            response = handle_error(
                client.context.http_client.get(url, headers=headers, params=query)
            )
            return response.read()
    raise AssertionError("not reached")  # pragma: no cover


def _run_all(jobs: List[Callable[[], Any]]) -> None:
    """Run the jobs (requests, mostly waiting for the server) a few at a time; the first
    error is raised."""
    if len(jobs) <= 1:
        for job in jobs:
            job()
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(_WORKERS, len(jobs))) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def _array_class() -> Any:
    from tiled.client.base import BaseClient

    class SnapshotArray(BaseClient):
        """An array read in one request (or a few, for a big one) as far as its shape when
        described: numpy, no dask."""

        _cached: Optional[np.ndarray] = None

        @property
        def shape(self) -> Tuple[int, ...]:
            return tuple(self.structure().shape)

        @property
        def dtype(self) -> np.dtype:
            return self.structure().data_type.to_numpy_dtype()

        @property
        def ndim(self) -> int:
            return len(self.shape)

        def __len__(self) -> int:
            return self.shape[0] if self.shape else 0

        def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
            return self.read().__array__(*args, **kwargs)

        def read(self, slice: Any = None) -> np.ndarray:
            """The whole array (as described), or ``self.read()[slice]``."""
            if self._cached is None:
                self._cached = self._fetch()
            return self._cached if slice is None else self._cached[slice]

        def _rows(self, start: int, stop: int) -> np.ndarray:
            shape = (stop - start, *self.shape[1:])
            if 0 in shape:
                return np.empty(shape, dtype=self.dtype)
            selection = ",".join([f"{start}:{stop}"] + [f"0:{n}" for n in self.shape[1:]])
            content = _get(
                self,
                self.item["links"]["full"],
                _OCTETS,
                {"expected_shape": ",".join(map(str, shape)), "slice": selection},
            )
            return np.frombuffer(content, dtype=self.dtype).reshape(shape)

        def _fetch(self) -> np.ndarray:
            shape = self.shape
            if not shape:  # a scalar
                content = _get(self, self.item["links"]["full"], _OCTETS,
                               {"expected_shape": "scalar"})  # fmt: skip
                return np.frombuffer(content, dtype=self.dtype).reshape(())
            row_bytes = max(int(np.prod(shape[1:], dtype=np.int64)) * self.dtype.itemsize, 1)
            step = max(_REQUEST_BYTES // row_bytes, 1)
            if step >= shape[0]:
                return self._rows(0, shape[0])
            parts = [self._rows(i, min(i + step, shape[0])) for i in range(0, shape[0], step)]
            return np.concatenate(parts)

    return SnapshotArray


class _Column:
    """One column of a stream's event table, read with the whole table (one request)."""

    def __init__(self, stream: Any, key: str) -> None:
        self._stream = stream
        self._key = key

    def read(self, slice: Any = None) -> np.ndarray:
        values = self._stream._column(self._key)
        return values if slice is None else values[slice]

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self.read().__array__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<column {self._key!r} of the event table>"


def _numpy_chunk(array: Any) -> np.ndarray:
    """One Arrow array as numpy: numbers from their buffer (pyarrow's ``to_numpy`` imports
    pandas, a third of a second), booleans and strings from Python values, strings as a
    fixed-width str array (as tiled's array client gives them)."""
    import pyarrow as pa

    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return np.asarray(array.to_pylist(), dtype=str)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return np.asarray(array.to_pylist(), dtype=bytes)
    if pa.types.is_boolean(kind) and not array.null_count:
        return np.asarray(array.to_pylist(), dtype=bool)
    if (pa.types.is_integer(kind) or pa.types.is_floating(kind)) and not array.null_count:
        letter = (
            "f" if pa.types.is_floating(kind) else "i" if pa.types.is_signed_integer(kind) else "u"
        )
        dtype = np.dtype(f"<{letter}{kind.bit_width // 8}")
        return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array),
                             offset=array.offset * dtype.itemsize).copy()  # fmt: skip
    if pa.types.is_floating(kind):  # the server stores NaN as null
        nan = float("nan")
        dtype = np.dtype(f"<f{kind.bit_width // 8}")
        return np.asarray([nan if v is None else v for v in array.to_pylist()], dtype=dtype)
    return array.to_numpy(zero_copy_only=False)  # integers with nulls, dates...: pyarrow's


def _arrow_columns(content: bytes, names: List[str]) -> Dict[str, np.ndarray]:
    """The columns ``names`` of an Arrow IPC file, as numpy."""
    import pyarrow as pa

    reader = pa.ipc.open_file(pa.py_buffer(content))
    batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
    columns = {}
    for name in names:
        index = reader.schema.get_field_index(name)
        if index < 0:
            continue
        chunks = [_numpy_chunk(batch.column(index)) for batch in batches]
        if not chunks:
            columns[name] = np.empty(0)
        elif len(chunks) == 1:
            columns[name] = chunks[0]
        else:
            columns[name] = np.concatenate(chunks)
    return columns


def _stream_class() -> Any:
    from tiled.client.container import Container

    class SnapshotStream(Container):
        """A Bluesky event stream (a composite node): its parts listed once, its event
        table read in one request, each array in one, cut to the rows they all have."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._parts: Optional[Dict[str, dict]] = None
            self._columns: Optional[Dict[str, str]] = None  # column -> table part
            self._tables: Dict[str, Dict[str, np.ndarray]] = {}
            self._arrays: Dict[str, Any] = {}
            self._rows: Optional[int] = None

        def _contents(self) -> Dict[str, dict]:
            if self._parts is None:
                from tiled.client.utils import MSGPACK_MIME_TYPE, handle_error, retry_context

                parts: Dict[str, dict] = {}
                url: Optional[str] = self.item["links"]["search"]
                while url is not None:
                    for attempt in retry_context():
                        with attempt:
                            page = handle_error(
                                self.context.http_client.get(
                                    url,
                                    headers={"Accept": MSGPACK_MIME_TYPE},
                                    params={"select_metadata": False},
                                )
                            ).json()
                    parts.update({item["id"]: item for item in page["data"]})
                    url = page["links"]["next"]
                columns = {}
                for name, item in parts.items():
                    if item["attributes"]["structure_family"] == "table":
                        for column in item["attributes"]["structure"]["columns"]:
                            columns[column] = name
                self._parts, self._columns = parts, columns
            return self._parts

        def _keys(self) -> List[str]:
            """Data keys in the server's order, an event table's columns in its place."""
            keys: List[str] = []
            for name, item in self._contents().items():
                if item["attributes"]["structure_family"] == "table":
                    keys += [c for c, part in (self._columns or {}).items() if part == name]
                else:
                    keys.append(name)
            return keys

        def __iter__(self) -> Iterator[str]:
            return iter(self._keys())

        def __len__(self) -> int:
            return len(self._keys())

        def __contains__(self, key: object) -> bool:
            return key in self._keys()

        def keys(self) -> Any:
            return collections.abc.KeysView(self)  # type: ignore[arg-type]

        def __getitem__(self, key: Any, _ignore_inlined_contents: bool = False) -> Any:
            parts = self._contents()
            if key in (self._columns or {}):
                return _Column(self, key)
            if key in self._arrays:
                return self._arrays[key]
            if key in parts:
                from tiled.client.utils import client_for_item

                node = client_for_item(self.context, self.structure_clients, parts[key])
                self._arrays[key] = node
                return node
            raise KeyError(key)

        def _jobs(self) -> List[Callable[[], Any]]:
            """What reading everything the stream holds takes: one job per request."""
            jobs: List[Callable[[], Any]] = []
            for name, item in self._contents().items():
                family = item["attributes"]["structure_family"]
                if family == "table":
                    jobs.append(lambda name=name: self._table(name))
                elif family == "array":
                    jobs.append(self[name].read)
            return jobs

        def load(self) -> Any:
            """Read everything the stream holds now (its table and arrays, several
            requests at a time); later reads cost nothing. Returns the stream."""
            _run_all(self._jobs())
            return self

        def _table(self, name: str) -> Dict[str, np.ndarray]:
            if name not in self._tables:
                item = self._contents()[name]
                content = _get(self, item["links"]["full"], _ARROW)
                self._tables[name] = _arrow_columns(
                    content, list(item["attributes"]["structure"]["columns"])
                )
            return self._tables[name]

        def _row_count(self) -> int:
            """Rows every part of the stream has: a stream caught while it grows is cut to
            the events it holds in full."""
            if self._rows is None:
                counts = []
                for name, item in self._contents().items():
                    family = item["attributes"]["structure_family"]
                    if family == "table":
                        counts += [len(v) for v in self._table(name).values()]
                    elif family == "array":
                        shape = item["attributes"]["structure"]["shape"]
                        if shape:
                            counts.append(int(shape[0]))
                self._rows = min(counts, default=0)
            return self._rows

        def _column(self, key: str) -> np.ndarray:
            return self._table((self._columns or {})[key])[key][: self._row_count()]

    return SnapshotStream


def _run_class() -> Any:
    from tiled.client.container import Container

    class SnapshotRun(InProgressMixin, Container):
        """A Bluesky run as a plain container that says when it is still being written and
        keeps the streams it opened."""

        def __new__(cls, context: Any, *, item: dict, structure_clients: Any, **kwargs: Any):
            specs = item["attributes"].get("specs") or []
            version = next((s.get("version") or "" for s in specs if s["name"] == "BlueskyRun"), "")
            if not version.startswith("3."):  # a MongoDB-backed catalog: its own client
                from ._clients import run_clients

                full = run_clients()  # imports bluesky-tiled-plugins
                return full["BlueskyRun"](context, item=item, structure_clients=full, **kwargs)
            return super().__new__(cls)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._opened: Dict[str, Any] = {}

        def _stream_names(self) -> List[str]:
            """Sorted, as bluesky-tiled-plugins lists them; an older layout keeps them
            under ``streams``."""
            names = list(Container.__iter__(self))
            if names == ["streams"]:
                names = list(Container.__getitem__(self, "streams"))
            return sorted(names)

        def __iter__(self) -> Iterator[str]:
            return iter(self._stream_names())

        def _keys_slice(self, start: Any, stop: Any, direction: int, *args: Any, **kw: Any) -> Any:
            names = self._stream_names()
            return iter((names[::-1] if direction < 0 else names)[start:stop])

        def _items_slice(self, start: Any, stop: Any, direction: int, *args: Any, **kw: Any) -> Any:
            for key in self._keys_slice(start, stop, direction):
                yield key, self[key]

        def load(self) -> Any:
            """Open every stream and read everything it holds now, several requests at a
            time (the server answers them in parallel); later reads cost nothing. Returns
            the run."""
            if list(Container.__iter__(self)) != ["streams"]:  # one listing opens them all
                for key, node in Container._items_slice(self, 0, None, 1):
                    self._opened.setdefault(key, node)
            streams = [self._open_node(name) for name in self._stream_names()]
            streams = [s for s in streams if hasattr(s, "_jobs")]  # event streams
            _run_all([s._contents for s in streams])
            _run_all([job for s in streams for job in s._jobs()])
            return self

        def _open_node(self, key: Any) -> Any:
            if not isinstance(key, str):
                return Container.__getitem__(self, key)
            if key not in self._opened:
                try:
                    self._opened[key] = Container.__getitem__(self, key)
                except KeyError:
                    if "streams" not in Container.__iter__(self):
                        raise
                    self._opened[key] = Container.__getitem__(self, "streams")[key]
            return self._opened[key]

        def wait(self, timeout: Optional[float] = None, poll: float = 0.5) -> Any:
            super().wait(timeout, poll)
            self._opened.clear()  # streams opened before are snapshots of the unfinished run
            return self

    return SnapshotRun


def _catalog_class() -> Any:
    from tiled.client.container import Container

    class SnapshotCatalog(Container):
        """The container of runs: ``catalog[uid]`` (or its first 5+ characters),
        ``catalog[scan_id]`` (the latest with it), ``catalog[-1]`` (the latest run)."""

        def __getitem__(self, key: Any, _ignore_inlined_contents: bool = False) -> Any:
            from tiled.queries import Eq, Like

            if isinstance(key, str):
                if len(key) == 36:
                    try:
                        return super().__getitem__(key)
                    except KeyError:
                        pass
                if len(key) < 5:
                    raise ValueError(f"partial uid {key!r} is too short: give 5 characters or more")
                matches = self.search(Like("start.uid", f"{key}%")).values().head(2)
                if len(matches) > 1:
                    raise ValueError(f"partial uid {key} matches several runs: give more of it")
                if not matches:
                    raise KeyError(f"no run with a uid starting with {key}")
                return matches[0]
            if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
                if key > 0:
                    results = self.search(Eq("start.scan_id", int(key)))
                    if not results:
                        raise KeyError(f"no run with scan_id {key}")
                    return results.values().last()
                return self.values()[int(key)]
            return super().__getitem__(key)

    return SnapshotCatalog


def snapshot_clients() -> ClientDispatch:
    """The client classes of ``open_catalog(..., snapshot=True)``: tiled's own for
    everything but the catalog, its runs, their streams and arrays."""
    import pyarrow  # noqa: F401  (here, not first in a reading thread while others import)
    from tiled.client.container import DEFAULT_STRUCTURE_CLIENT_DISPATCH

    default = DEFAULT_STRUCTURE_CLIENT_DISPATCH["numpy"]
    # structure families (lower case) only: once a full catalog was opened in this process,
    # tiled's map also holds bluesky-tiled-plugins' clients for the Bluesky specs
    # (``BlueskyEventStream``...), registered from entry points
    factories: Dict[str, Callable[[], Any]] = {
        key: (lambda key=key: default[key]) for key in default if key == key.lower()
    }
    factories.update(
        array=_array_class,
        composite=_stream_class,
        BlueskyRun=_run_class,
        CatalogOfBlueskyRuns=_catalog_class,
    )
    return ClientDispatch(factories)
