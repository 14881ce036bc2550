"""TiledWriter for one run, holding events and image frames until the writer says "now".

``bluesky_tiled_plugins.TiledWriter`` batches by count only: with ``batch_size=1`` every event
is a request (an event page of 256 spectra becomes 256 requests, and on a busy machine a
2,000-spectrum run reached the catalog 25x later than the RunEngine finished it); with a
large ``batch_size`` nothing is written until the stop document. :class:`BatchingRunWriter`
lets :class:`~ophyd_stem.catalog.CatalogWriter` decide when to write, by count *and* by
time: documents that create nodes (start, descriptors, stop) are written at once, events and
frames are gathered and written by :meth:`BatchingRunWriter.flush`, one request per stream
and per file however many rows (an event page stays one page).

It is TiledWriter's own per-run writer (``_RunWriter``, behind its ``RunNormalizer``) given a
batch size it never reaches, plus a flush of its two caches (and distinct names for the axes
of a square array, :func:`_distinct_dims`). That reaches into
bluesky-tiled-plugins' private attributes, which is why the version is pinned and why
``tests/catalog/test_batching.py`` checks that a flush puts rows in the catalog before the
stop document.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BatchingRunWriter", "pending_rows"]

#: a batch size TiledWriter never reaches by itself: flush() decides
_NEVER = 2**62


def pending_rows(name: str, doc: dict) -> int:
    """Events or frames a document adds to a batch (0 for documents written at once)."""
    if name == "event":
        return 1
    if name == "event_page":
        return len(doc.get("seq_num", ()))
    if name == "stream_datum":
        indices = doc.get("indices") or {}
        return max(int(indices.get("stop", 0)) - int(indices.get("start", 0)), 1)
    if name in ("datum", "datum_page"):
        return 0  # old-style references: written with the events that point to them
    return 0


def _distinct_dims(internal_dims: Any) -> Any:
    """TiledWriter's dimension names of an array recorded in events, each axis its own.

    It names an axis after its size, so a square map (an agent's 64 x 64 prediction) got
    ``("time", "dim_int_1", "dim_int_1")``, which xarray (databroker 2's ``read()``) warns
    about and most of its operations then fail on. A repeated name gets a suffix instead
    (``dim_int_1``, ``dim_int_1_2``): axes of one size still align across the stream's
    arrays, and no array has one name twice.
    """

    def dims(desc_name: str, shape: Any) -> tuple:
        seen: dict = {}
        names = []
        for name in internal_dims(desc_name, shape):
            seen[name] = seen.get(name, 0) + 1
            names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
        return tuple(names)

    return dims


#: arrays of more values than this go to the run's array storage (zarr) instead of its
#: event table: none do there, since a catalog on SQLite has no column type for an array
#: (TiledWriter's default, 16, lost every run recording a small array per event: the
#: agent's maps over a 10-position line scan, say)
TABLE_ARRAY_SIZE = 0


class BatchingRunWriter:
    """Writes one Bluesky run to a Tiled catalog; events and frames wait for :meth:`flush`.

    Args:
        client: the catalog container (a tiled client), as for ``TiledWriter``.

    Attributes:
        pending: events and frames received but not yet written (0 after a flush and after
            the stop document, which writes everything).

    Example:
        >>> writer = BatchingRunWriter(catalog)               # doctest: +SKIP
        >>> for name, doc in documents:                       # doctest: +SKIP
        ...     writer(name, doc)
        ...     if writer.pending >= 500:
        ...         writer.flush()
    """

    def __init__(self, client: Any) -> None:
        from ._runs import import_bluesky_tiled_plugins

        import_bluesky_tiled_plugins()
        from bluesky_tiled_plugins.writing.tiled_writer import RunNormalizer, _RunWriter

        self._run_writer = _RunWriter(
            client.include_data_sources(), batch_size=_NEVER, max_array_size=TABLE_ARRAY_SIZE
        )
        self._run_writer._internal_dims = _distinct_dims(self._run_writer._internal_dims)
        self._normalizer = RunNormalizer()
        self._normalizer.subscribe(self._run_writer)
        self.pending = 0

    def __call__(self, name: str, doc: dict) -> None:
        self._normalizer(name, doc)
        if name == "stop":
            self.pending = 0  # TiledWriter's stop writes whatever it still held
        else:
            self.pending += pending_rows(name, doc)

    def flush(self) -> int:
        """Write the events and frames held back; returns how many there were."""
        held, writer = self.pending, self._run_writer
        if not held:
            return 0
        for stream, rows in writer._internal_data_cache.items():
            if rows:
                writer._write_internal_data(rows, desc_node=writer._desc_nodes[stream])
                rows.clear()
        # One data-source update per file: the StreamDatums of a resource were concatenated.
        for resource in list(writer._external_data_cache):
            writer._write_external_data(writer._external_data_cache[resource])
            del writer._external_data_cache[resource]
        self.pending = 0
        return held
