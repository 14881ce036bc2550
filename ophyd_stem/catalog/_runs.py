"""Catalog-side operations shared by the live writer and ``import_spool``.

Connecting with a clear error, deleting the partial copy of a run before it is written again,
writing a run's documents with ``TiledWriter``, and checking that the catalog holds every
event of a finished run.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
import time
import urllib.parse
from typing import Any, Callable, Iterable, Optional, Tuple

import httpx

__all__ = [
    "CatalogAuthError",
    "CatalogError",
    "CatalogMismatch",
    "CatalogUnreachable",
    "batching_writer_factory",
    "connect",
    "default_writer_factory",
    "delete_run",
    "import_bluesky_tiled_plugins",
    "is_transient",
    "per_document_writer_factory",
    "verify_run",
]

#: a callable taking ``(name, doc)``, as a RunEngine subscription does
DocumentCallback = Callable[[str, dict], Any]


class CatalogError(RuntimeError):
    """A catalog problem that needs the user's attention (bad URI, key, or server reply)."""


class CatalogUnreachable(CatalogError, ConnectionError):
    """Nothing answers at the catalog's address (wrong URI, or the server is down)."""


class CatalogAuthError(CatalogError):
    """The catalog refused the API key (missing, wrong, or without the needed scopes)."""


class CatalogMismatch(CatalogError):
    """After writing, the catalog does not hold every event of a run."""


#: held while bluesky-tiled-plugins is imported: its package imports its clients and its
#: writer, and they import each other, so the writer thread importing it while the session's
#: thread opens a catalog (tiled loads the run clients from entry points) could deadlock;
#: Python then raises ``_DeadlockError`` in one of them (seen: a test's catalog fixture)
_IMPORT_LOCK = threading.Lock()
logger = logging.getLogger(__name__)


def import_bluesky_tiled_plugins(attempts: int = 3) -> None:
    """Import bluesky-tiled-plugins (the whole package), one thread at a time; at once when
    it is imported already.

    An import cut short by another thread's imports (Python's ``_DeadlockError`` between
    two threads importing modules each other needs, e.g. pandas) leaves the package half
    imported, and its clients then fail in every later import with "cannot import name
    ... from partially initialized module" (seen once: a console's catalog writer refused
    every run). So a failed import is forgotten and tried again.

    Raises:
        ImportError: it failed ``attempts`` times (the last failure).
    """
    with _IMPORT_LOCK:
        for attempt in range(1, attempts + 1):
            try:
                import bluesky_tiled_plugins  # noqa: F401
                from bluesky_tiled_plugins import TiledWriter  # noqa: F401  (complete?)
                from bluesky_tiled_plugins.clients.catalog_of_bluesky_runs import (  # noqa: F401
                    CatalogOfBlueskyRuns,
                )

                return
            except (ImportError, RuntimeError) as error:  # (_DeadlockError is a RuntimeError)
                if isinstance(error, RuntimeError) and "deadlock" not in str(error).lower():
                    raise
                for name in [m for m in sys.modules if m.split(".")[0] == "bluesky_tiled_plugins"]:
                    del sys.modules[name]
                if attempt == attempts:
                    raise ImportError(
                        f"bluesky-tiled-plugins could not be imported: {error}"
                    ) from error
                logger.warning("importing bluesky-tiled-plugins failed (%s); trying again", error)
                time.sleep(0.2 * attempt)  # (let the other thread's imports finish)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def probe(uri: str, timeout: float = 3.0) -> None:
    """Fail fast when nothing listens at ``uri`` (tiled itself would retry for ~45 s).

    Raises:
        CatalogError: the URI is not an http(s) URI.
        CatalogUnreachable: no TCP connection could be made.
    """
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise CatalogError(
            f"catalog URI {uri!r} is not an http(s) URI such as 'http://localhost:8000'"
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as error:
        raise CatalogUnreachable(
            f"no catalog server answers at {uri} ({error.__class__.__name__}: {error}); "
            "check the URI, and that the Tiled server is running"
        ) from None


def connect(
    uri: str, api_key: Optional[str] = None, timeout: float = 3.0, structure_clients: Any = "numpy"
) -> Any:
    """A tiled client of the catalog container at ``uri``, with errors a user can act on.

    Args:
        uri: e.g. ``http://127.0.0.1:8000`` or ``https://tiled.example.org/api/v1/metadata/stem``.
        api_key: the server's API key (or ``$TILED_API_KEY``, which tiled reads itself).
        timeout: seconds for the reachability probe.
        structure_clients: as for ``tiled.client.from_context`` (default: numpy arrays and
            the Bluesky run clients of bluesky-tiled-plugins).

    Raises:
        CatalogUnreachable: nothing listens there.
        CatalogAuthError: the server wants a (different) API key.
        CatalogError: anything else the server refused.
    """
    from tiled.client.utils import ClientError

    probe(uri, timeout)
    try:
        return _open(uri, api_key, structure_clients)
    except ClientError as error:
        status = error.response.status_code
        if status in (401, 403):
            raise CatalogAuthError(
                f"the catalog at {uri} refused the API key (HTTP {status}): "
                "check --api-key / $TILED_API_KEY"
            ) from None
        raise CatalogError(f"the catalog at {uri} answered HTTP {status}: {error}") from None
    except RuntimeError as error:
        if "API key" in str(error) or "authentication" in str(error).lower():
            raise CatalogAuthError(
                f"the catalog at {uri} requires an API key: pass api_key= or set $TILED_API_KEY"
            ) from None
        raise
    except httpx.TransportError as error:
        raise CatalogUnreachable(f"the catalog at {uri} did not answer: {error}") from None


def _open(uri: str, api_key: Optional[str], structure_clients: Any = "numpy") -> Any:
    """``tiled.client.from_uri`` in two steps, so a refusal does not leave sockets open."""
    from tiled.client import from_context
    from tiled.client.context import Context

    host = urllib.parse.urlsplit(uri).hostname or ""
    # An HTTP proxy from the environment must not intercept a loopback server.
    context, path_parts = Context.from_any_uri(
        uri, api_key=api_key, trust_env=not _is_loopback(host)
    )
    try:
        return from_context(
            context, structure_clients=structure_clients, node_path_parts=path_parts
        )
    except BaseException:
        context.close()
        raise


def _closed_client(error: BaseException) -> bool:
    # httpx's "Cannot send a request, as the client has been closed": the writer dropped its
    # connection (to reconnect) while a request was on its way; a new connection cures it
    return isinstance(error, RuntimeError) and "client has been closed" in str(error)


def describe(error: BaseException) -> str:
    """An error of the catalog in a microscopist's words (no HTTP client internals)."""
    if isinstance(error, CatalogError):
        return str(error)
    if _closed_client(error):
        return "the connection to the catalog was closed while a document was on its way"
    if isinstance(error, httpx.HTTPStatusError):
        return f"the catalog answered HTTP {error.response.status_code}"
    if isinstance(error, (httpx.TransportError, ConnectionError)):
        return f"the catalog stopped answering ({error.__class__.__name__})"
    if isinstance(error, TimeoutError):
        return "the catalog did not answer in time"
    return f"{error.__class__.__name__}: {error}"


def is_transient(error: BaseException) -> bool:
    """True for errors that waiting cures: the server is away, overloaded or restarting."""
    if isinstance(error, (CatalogUnreachable, httpx.TransportError, ConnectionError, TimeoutError)):
        return True
    if _closed_client(error):
        return True
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status >= 500 or status == 429
    return False


def batching_writer_factory(client: Any) -> DocumentCallback:
    """The writer ``CatalogWriter`` uses: TiledWriter's, with events and frames held back
    until ``flush()`` (:class:`~ophyd_stem.catalog._batching.BatchingRunWriter`)."""
    from ._batching import BatchingRunWriter

    return BatchingRunWriter(client)


#: what CatalogWriter and import_spool use unless told otherwise
default_writer_factory = batching_writer_factory


def per_document_writer_factory(client: Any) -> DocumentCallback:
    """``TiledWriter(client, batch_size=1)``: every event and frame a request of its own (an
    event page of N events is N requests). The writer before batching, kept as the baseline
    of ``benchmarks/catalog_writer.py``."""
    import_bluesky_tiled_plugins()
    from bluesky_tiled_plugins import TiledWriter

    from ._batching import TABLE_ARRAY_SIZE

    return TiledWriter(client, batch_size=1, max_array_size=TABLE_ARRAY_SIZE)


def find_run(client: Any, run_uid: str) -> Any:
    """The run with this start uid, or None."""
    try:
        return client[run_uid]
    except KeyError:
        return None


def delete_run(client: Any, run_uid: str) -> bool:
    """Delete the (partial) copy of a run from the catalog so it can be written again.

    Only the catalog's records and its own internal data (event tables, inline arrays) go;
    tiled never deletes externally managed files, so the HDF5 images stay in ``assets/``.

    Returns:
        True if there was a copy to delete.
    """
    run = find_run(client, run_uid)
    if run is None:
        return False
    run.delete(recursive=True, external_only=False)
    return True


def write_documents(
    client: Any,
    documents: Iterable[Tuple[str, dict]],
    factory: Optional[Callable[[Any], DocumentCallback]] = None,
    batch_size: int = 10_000,
) -> int:
    """Write a run's documents with a fresh writer; returns how many were written.

    With a batching writer (the default), events and frames go ``batch_size`` at a time and
    whatever is held back at the end is written too: an unfinished run (no stop document)
    is written in full.
    """
    writer = (factory or batching_writer_factory)(client)
    flush = getattr(writer, "flush", None)
    count = 0
    for name, doc in documents:
        writer(name, doc)
        count += 1
        if flush is not None and getattr(writer, "pending", 0) >= batch_size:
            flush()
    if flush is not None:
        flush()
    return count


def verify_run(client: Any, run_uid: str, stop_doc: dict) -> None:
    """Check that the catalog holds every event the stop document counts.

    Per stream: the event table has exactly the sequence numbers 1..N (nothing lost, nothing
    doubled by a retried append), every inline array has N rows, and no external array has
    fewer than N.

    Raises:
        CatalogMismatch: with what is missing or doubled.
    """
    run = find_run(client, run_uid)
    if run is None:
        raise CatalogMismatch(f"run {run_uid} is not in the catalog")
    if "stop" not in run.metadata:
        raise CatalogMismatch(f"run {run_uid} has no stop document in the catalog")
    for stream_name, expected in (stop_doc.get("num_events") or {}).items():
        if not expected:
            continue
        try:
            stream = run[stream_name].base
        except KeyError:
            raise CatalogMismatch(f"run {run_uid}: stream {stream_name!r} is missing") from None
        keys = list(stream)
        if "internal" not in keys:
            raise CatalogMismatch(f"run {run_uid}: stream {stream_name!r} has no event table")
        seq_nums = sorted(int(s) for s in stream["internal"].read(["seq_num"])["seq_num"])
        if seq_nums != list(range(1, expected + 1)):
            raise CatalogMismatch(
                f"run {run_uid}: stream {stream_name!r} holds {len(seq_nums)} event rows, "
                f"expected seq_num 1..{expected}"
            )
        data_keys = stream.metadata.get("data_keys", {})
        for key in keys:
            node = stream[key]
            shape = getattr(node, "shape", None)
            if key == "internal" or not shape:
                continue
            external = bool(data_keys.get(key, {}).get("external"))
            if shape[0] < expected or (not external and shape[0] != expected):
                raise CatalogMismatch(
                    f"run {run_uid}: {stream_name}/{key} has {shape[0]} rows, expected {expected}"
                )
