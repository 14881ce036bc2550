"""Tiled clients for runs that may still be growing: partial data is never silent, never a 500.

A run is read while it is written (the console's ``catalog()[-1]``, a live view): its
arrays grow between the moment a client learns their shape and the moment it reads them.
Plain clients then read a different number of rows on each call without a word, and a read
of a whole array fails with ``500 Internal Server Error`` (the server finds more rows than
the client announced, and tiled retries the same request for 45 s). The clients
:func:`~ophyd_stem.catalog.open_catalog` hands out:

- warn with :class:`RunInProgress` when a stream of a run without its stop document is
  opened, saying how many points the plan announced, and offer ``run.wait()``;
- read an array as far as its shape when described (an explicit slice), which the server
  always has in full: a consistent snapshot instead of a 500;
- read a stream (``run["primary"].read()``) again when its columns were caught at different
  lengths (a batch lands as a few requests).

They are bluesky-tiled-plugins' own classes (``BlueskyRunV3``, ``BlueskyEventStreamV3``)
and tiled's ``ArrayClient``, subclassed; ``.v2``, ``.v1``, ``documents()`` work as before.
"""

from __future__ import annotations

import builtins
import collections.abc
import time
import warnings
from typing import Any, Callable, Dict, Iterator, Optional

__all__ = ["RunInProgress", "run_clients"]


class RunInProgress(UserWarning):
    """A stream of a run still being written was opened: its data is what the catalog has
    so far (``run.wait()`` waits for the rest)."""


class InProgressMixin:
    """For a run's client: opening a stream of a run without its stop document warns
    (:class:`RunInProgress`), and ``run.wait()`` waits for the stop document."""

    metadata: Any

    def _open_node(self, key: Any) -> Any:
        return super().__getitem__(key)  # type: ignore[misc]

    def __getitem__(self, key: Any) -> Any:
        try:
            node = self._open_node(key)
        except KeyError as error:
            if not isinstance(key, str):
                raise
            # bluesky-tiled-plugins raises a bare KeyError: in a run still being written
            # (the console's catalog()[-1] just after it began) that read as a broken run.
            raise KeyError(self._missing_stream(key)) from error
        if isinstance(key, str) and not self.metadata.get("stop"):
            start = self.metadata.get("start", {})
            expected = start.get("num_points")
            promise = f" (the plan announced {expected} points)" if expected else ""
            warnings.warn(
                RunInProgress(
                    f"run {start.get('uid', '?')[:8]} (scan {start.get('scan_id')}) has no "
                    f"stop document yet: it is still being written (or its session ended "
                    f"early), and {key!r} holds what the catalog has so far{promise}; "
                    "run.wait() waits for the rest"
                ),
                stacklevel=2,
            )
        return node

    def _missing_stream(self, key: str) -> str:
        """Why ``key`` is not in the run, in words: not there yet, or not recorded."""
        start = self.metadata.get("start", {})
        run = f"run {start.get('uid', '?')[:8]} (scan {start.get('scan_id')})"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RunInProgress)
                streams = ", ".join(sorted(self)) or "none"  # type: ignore[call-overload]
        except Exception:  # the listing is only a help: the error says the rest
            streams = "?"
        what = "entry" if "/" in key else "stream"
        if self.metadata.get("stop"):
            return f"{run} has no {what} {key!r}; its streams: {streams}"
        return (
            f"{run} has no {what} {key!r} yet: it is still being written (or its session "
            f"ended early); streams so far: {streams}; run.wait() waits for the rest"
        )

    def __contains__(self, key: Any) -> bool:
        with warnings.catch_warnings():  # asking whether a stream exists reads nothing
            warnings.simplefilter("ignore", RunInProgress)
            return super().__contains__(key)  # type: ignore[misc]

    def wait(self, timeout: Optional[float] = None, poll: float = 0.5) -> Any:
        """Wait until the run's stop document is in the catalog; returns the run.

        Raises:
            TimeoutError: not finished within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.refresh().metadata.get("stop"):  # type: ignore[attr-defined]
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {self.metadata['start']['uid'][:8]} is still being written "
                    f"after {timeout:g} s"
                )
            time.sleep(poll)
        return self


class ClientDispatch(collections.abc.Mapping):
    """Structure family or spec -> client class, each imported on first use.

    Like tiled's own map, but a copy is independent: bluesky-tiled-plugins' ``.v2`` copies
    the map and re-points ``BlueskyRun``, which with tiled's map changed the original too.
    """

    def __init__(self, factories: Dict[str, Callable[[], Any]]) -> None:
        self._factories = dict(factories)
        self._loaded: Dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._loaded:
            self._loaded[key] = self._factories[key]()
        return self._loaded[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    def set(self, key: str, factory: Callable[[], Any]) -> None:
        self._factories[key] = factory
        self._loaded.pop(key, None)

    def __copy__(self) -> ClientDispatch:
        copy = ClientDispatch(self._factories)
        copy._loaded = dict(self._loaded)
        return copy


def _array_client() -> Any:
    from tiled.client.array import ArrayClient

    class RunArrayClient(ArrayClient):
        """Reads as many rows as its shape said when it was described, which the catalog
        holds in full even while the array grows."""

        def read(self, slice: Any = None) -> Any:
            if slice is None and self.shape:
                slice = tuple(builtins.slice(0, n) for n in self.shape)
            return super().read(slice)

    return RunArrayClient


def _stream_client() -> Any:
    from bluesky_tiled_plugins.clients.bluesky_event_stream import BlueskyEventStreamV3

    class RunStream(BlueskyEventStreamV3):
        """A stream whose columns may be caught mid-batch at different lengths."""

        def __new__(cls, context: Any, *, item: dict, structure_clients: Any, **kwargs: Any):
            if not cls._is_sql(item):  # a MongoDB-backed catalog: its own client, unchanged
                from bluesky_tiled_plugins.clients.bluesky_event_stream import (
                    BlueskyEventStreamV2Mongo,
                )

                return BlueskyEventStreamV2Mongo(
                    context, item=item, structure_clients=structure_clients, **kwargs
                )
            return super().__new__(cls, context, item=item, structure_clients=structure_clients)

        def read(self, *args: Any, **kwargs: Any) -> Any:
            for attempt in range(10):
                try:
                    return super().read(*args, **kwargs)
                except ValueError as error:
                    # xarray's "conflicting sizes for dimension 'time'": a table and an
                    # array caught between the two requests of one batch
                    if "conflicting sizes" not in str(error) or attempt == 9:
                        raise
                    time.sleep(0.1 * (attempt + 1))
            raise AssertionError("not reached")  # pragma: no cover

    return RunStream


def _run_client() -> Any:
    from bluesky_tiled_plugins.clients.bluesky_run import BlueskyRunV3

    class Run(InProgressMixin, BlueskyRunV3):
        """A Bluesky run that says when it is still being written."""

        def __new__(cls, context: Any, *, item: dict, structure_clients: Any, **kwargs: Any):
            if not cls._is_sql(item):  # a MongoDB-backed catalog: its own client, unchanged
                from bluesky_tiled_plugins.clients.bluesky_run import BlueskyRunV2Mongo

                return BlueskyRunV2Mongo(
                    context, item=item, structure_clients=structure_clients, **kwargs
                )
            return super().__new__(
                cls, context, item=item, structure_clients=structure_clients, **kwargs
            )

    return Run


def run_clients() -> ClientDispatch:
    """The client classes of :func:`~ophyd_stem.catalog.open_catalog` (numpy arrays)."""
    from tiled.client.container import DEFAULT_STRUCTURE_CLIENT_DISPATCH, Container

    from ._runs import import_bluesky_tiled_plugins

    # Imported here, one thread at a time, before tiled loads its clients from entry points:
    # a CatalogWriter's thread may be importing it at this moment (see _runs._IMPORT_LOCK).
    import_bluesky_tiled_plugins()
    # Bluesky's spec clients come from entry points, registered into tiled's map here.
    Container.discover_clients_from_entrypoints()
    default = DEFAULT_STRUCTURE_CLIENT_DISPATCH["numpy"]
    factories: Dict[str, Callable[[], Any]] = {
        key: (lambda key=key: default[key]) for key in default
    }
    factories.update(array=_array_client, BlueskyRun=_run_client, BlueskyEventStream=_stream_client)
    return ClientDispatch(factories)
