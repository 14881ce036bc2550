"""Reading the catalog: open it (embedded or remote), list recent runs, fetch one run."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import numbers
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from . import _runs
from .settings import CatalogSettings
from .spool import claim, decode_document, spooled_runs

__all__ = ["RunSummary", "get_run", "open_catalog", "recent_runs"]

#: streams whose events are survey images (one per event, every signal of that scan in it):
#: the survey before spectra, the drift-tracking images of drift-corrected runs
IMAGE_STREAMS = frozenset({"survey", "drift_images"})
#: detectors (the microscope's device names, ``ophyd_stem.Microscope``) whose ``primary``
#: events are spectra, or images
SPECTRUM_DETECTORS = frozenset({"eels", "eels_points"})
IMAGE_DETECTORS = frozenset({"scan"})


def open_catalog(
    uri: Optional[str] = None,
    api_key: Optional[str] = None,
    settings: Optional[CatalogSettings] = None,
    *,
    listing: bool = False,
    snapshot: bool = False,
) -> Any:
    """The catalog of runs, as a tiled ``CatalogOfBlueskyRuns`` client.

    Args:
        uri: a Tiled server's container of runs, e.g. ``http://tiled.example.org:8000`` or
            ``https://host/api/v1/metadata/stem``; None: the embedded local catalog of
            ``settings.data_dir``, started if it is not running.
        api_key: the server's API key (default: ``$TILED_API_KEY``); ignored when ``uri`` is
            None (the embedded server's key is read from its data directory).
        settings: the embedded catalog's data directory (default: ``$OPHYD_STEM_DATA_DIR`` or
            the per-user data directory).
        listing: plain tiled containers instead of Bluesky run clients: metadata and
            searches only, but a second or more quicker to open (``ophyd-stem runs``),
            since neither bluesky-tiled-plugins nor dask is imported.
        snapshot: light clients for reading whole runs into numpy (``ophyd-stem show``):
            ``catalog[uid]``, ``catalog[scan_id]``, ``catalog[-1]`` as usual, runs that warn
            :class:`~ophyd_stem.catalog.RunInProgress` and ``wait()``, streams that read
            their event table in one request and each array in one (no dask, no xarray),
            cut to the rows every column has. No ``.v2``, ``.v1``, ``documents()`` or
            xarray ``read()`` of a whole stream; seconds quicker to open and to read.

    Returns:
        The container: ``catalog[-1]`` (latest run), ``catalog[scan_id]``, ``catalog[uid]``,
        ``catalog.search(Key("sample") == "Au")``. Its runs are bluesky-tiled-plugins'
        (``run["primary"].read()``, ``run.v2``, ``catalog.v1``, ``run.documents()``), and
        a run still being written says so (:class:`~ophyd_stem.catalog.RunInProgress`, a
        warning) and can be waited for (``run.wait()``); its arrays read back consistently
        while they grow.

    Raises:
        CatalogUnreachable: nothing answers at ``uri``.
        CatalogAuthError: the API key is missing or wrong.
        CatalogError: ``uri`` is malformed or is not a container of Bluesky runs.

    Example:
        >>> catalog = open_catalog()                          # doctest: +SKIP
        >>> run = catalog[-1]                                 # doctest: +SKIP
        >>> run["primary"]["eels-spectrum"].read().shape      # doctest: +SKIP
        (100, 2048)
    """
    if uri is None:
        from .server import EmbeddedServer

        server = EmbeddedServer.start(settings)
        uri, api_key = server.uri, server.api_key
    if listing:
        from tiled.client.container import Container

        structure_clients: Any = {"container": Container}
    elif snapshot:
        from ._snapshot import snapshot_clients

        structure_clients = snapshot_clients()
    else:
        from ._clients import run_clients

        structure_clients = run_clients()
    catalog = _runs.connect(uri, api_key, structure_clients=structure_clients)
    names = {spec.name for spec in getattr(catalog, "specs", ())}
    if "CatalogOfBlueskyRuns" not in names:
        raise _runs.CatalogError(
            f"{uri} is a Tiled container without the CatalogOfBlueskyRuns spec, so searches "
            "by sample or scan_id would find nothing: point the URI at the container of runs "
            "(see docs/catalog.md, 'Using a remote server')"
        )
    return catalog


@dataclass(frozen=True)
class RunSummary:
    """One line of ``ophyd-stem runs``.

    Attributes:
        uid: the run's start uid.
        scan_id: the RunEngine's scan counter.
        plan_name: e.g. ``"count"``, ``"grid_scan"``.
        sample: the ``sample`` metadata (None when not given).
        time: start time, seconds since the epoch.
        num_events: events in all streams, records computed from the measurements included
            (None while the run is in progress); :attr:`acquired` says what was acquired.
        exit_status: ``"success"``, ``"abort"``, ``"fail"``, or None while running.
        waiting: documents of the run in the local spool that the catalog lacks (None: none).
        writing: True while a live session is writing the run (it holds its spool).
        in_catalog: False for a run only the spool holds (the catalog never got it).
        events: events by stream (``{"survey": 1, "primary": 20, "zero_loss": 20}``); None
            while the run is in progress.
        detectors: the run's detectors, as its start document names them.
    """

    uid: str
    scan_id: Optional[int]
    plan_name: Optional[str]
    sample: Optional[str]
    time: float
    num_events: Optional[int]
    exit_status: Optional[str]
    waiting: Optional[int] = None
    writing: bool = False
    in_catalog: bool = True
    events: Optional[Dict[str, int]] = None
    detectors: Tuple[str, ...] = ()

    @property
    def spectra(self) -> Optional[int]:
        """Spectra the run acquired: its ``primary`` events when an EELS device is among its
        detectors (0 otherwise); None while in progress or when the detectors do not say."""
        if self.events is None:
            return None
        if SPECTRUM_DETECTORS.intersection(self.detectors):
            return self.events.get("primary", 0)
        return 0 if self._primary_images() or "primary" not in self.events else None

    @property
    def images(self) -> Optional[int]:
        """Scans (survey images, each with all its signals) the run acquired: the events of
        its image streams, and of ``primary`` when only the scan engine detected; None
        while in progress."""
        if self.events is None:
            return None
        n = sum(count for name, count in self.events.items() if name in IMAGE_STREAMS)
        return n + (self.events.get("primary", 0) if self._primary_images() else 0)

    def _primary_images(self) -> bool:
        return bool(self.detectors) and IMAGE_DETECTORS.issuperset(self.detectors)

    @property
    def acquired(self) -> str:
        """What the run acquired, in a microscopist's words: ``"20 spectra, 1 image"``.

        Records computed from the measurements (the zero-loss alignment of each spectrum,
        the agent's decisions, atom positions) are not counted: they are rows of other
        streams, not acquisitions. A ``primary`` stream of other detectors is counted as
        events (``"3 events"``). Empty while the run is in progress.

        Example:
            >>> run = RunSummary("9d2e", 4, "spectrum_image", "graphene", 0.0, 41, "success",
            ...                  events={"survey": 1, "primary": 20, "zero_loss": 20},
            ...                  detectors=("scan", "eels_points"))
            >>> run.acquired
            '20 spectra, 1 image'
        """
        if self.events is None:
            return ""
        spectra, images = self.spectra, self.images or 0
        parts = []
        if spectra is None:
            n = self.events.get("primary", 0)
            parts.append(f"{n} event" + ("" if n == 1 else "s"))
        elif spectra:
            parts.append(f"{spectra} spectr" + ("um" if spectra == 1 else "a"))
        if images:
            parts.append(f"{images} image" + ("" if images == 1 else "s"))
        return ", ".join(parts) or "nothing"

    @property
    def state(self) -> str:
        """One word or phrase for a listing: the exit status, or where the run is stuck.

        ``"success"``; ``"spooled (12 documents waiting)"`` (``ophyd-stem import-spool``
        writes them); ``"running (3 documents waiting)"`` while a session writes it;
        ``"incomplete"`` for a run whose session died before its stop document.
        """
        if self.writing:
            return "running" + (f" ({self.waiting} documents waiting)" if self.waiting else "")
        if self.waiting:
            return f"spooled ({self.waiting} documents waiting)"
        if self.exit_status:
            return self.exit_status
        return "incomplete"


def _summary(run: Any) -> RunSummary:
    start = run.metadata.get("start", {})
    stop = run.metadata.get("stop") or {}
    num_events = stop.get("num_events")
    sample = start.get("sample")
    if isinstance(sample, dict):  # a structured sample description: its name
        sample = sample.get("name", str(sample))
    return RunSummary(
        uid=start.get("uid", ""),
        scan_id=start.get("scan_id"),
        plan_name=start.get("plan_name"),
        sample=None if sample is None else str(sample),
        time=float(start.get("time", 0.0)),
        num_events=None if num_events is None else int(sum(num_events.values())),
        exit_status=stop.get("exit_status"),
        events=None if num_events is None else {str(k): int(v) for k, v in num_events.items()},
        detectors=_names(start.get("detectors")),
    )


def _names(value: Any) -> Tuple[str, ...]:
    """The start document's ``detectors`` as names (nothing, for anything but a list)."""
    return tuple(str(name) for name in value) if isinstance(value, (list, tuple)) else ()


def recent_runs(
    catalog: Any, n: int = 10, settings: Optional[CatalogSettings] = None
) -> List[RunSummary]:
    """The ``n`` most recently started runs, newest first.

    Args:
        catalog: from :func:`open_catalog`.
        n: how many.
        settings: a data directory whose spool to look at too: runs with documents the
            catalog lacks say so (``waiting``), and runs the catalog never got are listed.

    Example:
        >>> for run in recent_runs(open_catalog(), 5):            # doctest: +SKIP
        ...     print(run.scan_id, run.plan_name, run.sample, run.num_events, run.state)
    """
    if n <= 0:
        return []
    runs = {summary.uid: summary for summary in map(_summary, catalog.values().tail(n))}
    if settings is not None:
        for spooled in _spooled_summaries(settings):
            known = runs.get(spooled.uid)
            if known is None:
                runs[spooled.uid] = spooled
            else:
                runs[spooled.uid] = dataclasses.replace(
                    known, waiting=spooled.waiting, writing=spooled.writing
                )
    return sorted(runs.values(), key=lambda summary: summary.time, reverse=True)[:n]


def _spooled_summaries(settings: CatalogSettings) -> List[RunSummary]:
    """Runs in the spool, as summaries made from their start document."""
    summaries = []
    for spooled in spooled_runs(settings.spool_dir):
        waiting = spooled.documents - spooled.written
        if waiting <= 0:
            continue  # written, its files about to go
        with claim(spooled) as free:
            writing = not free
        start: dict = {}
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            with open(spooled.path, "rb") as file:
                name, doc = decode_document(file.readline())
            start = doc if name == "start" else {}
        sample = start.get("sample")
        if isinstance(sample, dict):
            sample = sample.get("name", json.dumps(sample))
        summaries.append(
            RunSummary(
                uid=spooled.run_uid,
                scan_id=start.get("scan_id"),
                plan_name=start.get("plan_name"),
                sample=None if sample is None else str(sample),
                time=float(start.get("time", 0.0)),
                num_events=None,
                exit_status=None,
                waiting=waiting,
                writing=writing,
                in_catalog=False,
            )
        )
    return summaries


def get_run(catalog: Any, uid_or_scan_id: Union[str, int]) -> Any:
    """One run by uid (at least 5 leading characters), scan_id, or -1 for the latest.

    A string of digits is read as a scan_id; with duplicates the latest run wins. When no run
    has that scan_id and the string is long enough to be a uid prefix, it is looked up as
    one: uids are hexadecimal, and about one in 40 begins with eight digits.

    Raises:
        KeyError: no such run (the message says what was looked for).
        ValueError: a partial uid that is too short or matches several runs.

    Example:
        >>> run = get_run(open_catalog(), "3f9a2c")               # doctest: +SKIP
    """
    key: Union[str, int] = uid_or_scan_id
    if isinstance(key, str) and key.strip().lstrip("-").isdigit():
        text = key.strip()
        try:
            return get_run(catalog, int(text))
        except KeyError:
            if text.startswith("-") or len(text) < 5:
                raise
            try:
                return catalog[text]
            except KeyError:
                message = f"no run with scan_id {text} or a uid starting with {text}"
                raise KeyError(message) from None
    if isinstance(key, numbers.Integral):
        key = int(key)
        if key == 0:
            raise KeyError("scan_id 0 does not exist: scan ids start at 1 (use -1 for the latest)")
        if key < 0 and -key > len(catalog):
            raise KeyError(f"the catalog holds {len(catalog)} run(s); there is no run {key}")
        try:
            return catalog[key]
        except (KeyError, IndexError):
            raise KeyError(f"no run with scan_id {key} in the catalog") from None
    try:
        return catalog[str(key).strip()]
    except KeyError:
        raise KeyError(f"no run with uid {key!r} in the catalog") from None
