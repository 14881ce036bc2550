"""The base of every session: the RunEngine, its callbacks and where its runs are written.

:func:`configure_base` (``00-base.py`` of ``profile_collection/``) makes the RunEngine, the
BestEffortCallback (its table for short runs) and a progress bar for long ones, subscribes
the catalog writer (to the configured catalog, or to an embedded one whose server it starts)
and keeps the run metadata (scan ids, operator, sample) across restarts. It also holds
:class:`Session`, what a session made, which the other steps of
:mod:`ophyd_stem.app.session` fill in (devices, plans, agents, views); import both from
there.

In a queueserver process the catalog server this process started is stopped when the process
ends (:func:`_stop_when_this_process_ends`): such processes end without ``atexit``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SessionConfig, load_config

__all__ = ["Session", "configure_base"]

log = logging.getLogger(__name__)


@dataclass
class Session:
    """What a session made; also exposed by name in the console's namespace."""

    config: SessionConfig
    RE: Any
    settings: Any
    writer: Any = None
    bec: Any = None
    progress: Any = None
    microscope: Any = None
    bridge: Any = None
    #: what serves the session when it is not the twin nor a bridge (a replay's files)
    instrument_label: str | None = None
    watchdog: Any = None
    catalog_uri: str | None = None
    plans: Any = None
    namespace: dict[str, Any] = field(default_factory=dict)

    def catalog(self) -> Any:
        """The catalog of runs this session writes to (a tiled client)."""
        from ophyd_stem.catalog import open_catalog

        if self.config.catalog:
            return open_catalog(self.config.catalog, self.config.api_key)
        return open_catalog(settings=self.settings)

    def instrument_time(self) -> float:
        """Seconds of microscope time spent so far, as the bridge accounts it."""
        from bluesky.run_engine import call_in_bluesky_event_loop

        status = call_in_bluesky_event_loop(self.microscope.client.status())
        return float(status.get("instrument_time_total", 0.0))

    def close(self, timeout: float = 30.0) -> bool:
        """Flush the catalog writer and stop the simulated bridge; True if all was written."""
        written = True
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.writer is not None:
            written = self.writer.close(timeout=timeout)
        if self.bridge is not None:
            self.bridge.close()
        return written


class _MetadataMemory:
    """Keeps ``RE.md`` (scan id, operator, sample...) in a small JSON file of the data
    directory, rewritten atomically at the start of every run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)
            return {}

    def saver(self, RE: Any):
        def save(name: str, doc: dict[str, Any]) -> None:
            keep = {}
            for key, value in RE.md.items():
                try:
                    json.dumps(value)
                except TypeError:
                    continue
                keep[key] = value
            keep["scan_id"] = doc.get("scan_id", keep.get("scan_id"))
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(keep, indent=1))
            os.replace(tmp, self.path)

        return save


def _export(target: Session, user_ns: dict[str, Any] | None, **names: Any) -> None:
    target.namespace.update(names)
    if user_ns is not None:
        user_ns.update(names)


def _in_ipython() -> Any:
    with contextlib.suppress(ImportError):
        from IPython import get_ipython

        return get_ipython()
    return None


def configure_base(
    user_ns: dict[str, Any] | None = None,
    *,
    plots: bool | None = None,
    progress: bool = True,
    write_catalog: bool = True,
    **settings: Any,
) -> Session:
    """Create the RunEngine and the callbacks every session has.

    Args:
        user_ns: a namespace to fill (the console's); names added: ``RE``, ``bec``,
            ``session``.
        plots: BestEffortCallback plots; default on when matplotlib has a screen.
        progress: a progress bar per run (stderr).
        write_catalog: subscribe the catalog writer (embedded catalog unless a URI is set).
        settings: :class:`~ophyd_stem.app.config.SessionConfig` fields (``catalog=``,
            ``api_key=``, ``data_dir=``, ``operator=``, ``sample=``, ``bridge=``...).
    """
    from bluesky import RunEngine
    from bluesky.callbacks.best_effort import BestEffortCallback

    from ophyd_stem.catalog import CatalogSettings, CatalogWriter

    config = load_config(**{k: v for k, v in settings.items() if v is not None})
    catalog_settings = CatalogSettings(
        data_dir=Path(config.data_dir).expanduser() if config.data_dir else None
    ).ensure_dirs()
    RE = RunEngine()
    # Scan ids and the operator's metadata survive a restart of the console.
    memory = _MetadataMemory(catalog_settings.data_dir / "session-metadata.json")
    RE.md.update(memory.load())
    RE.subscribe(memory.saver(RE), "start")
    if config.operator:
        RE.md["operator"] = config.operator
    # the twin's sample, or one the operator named for a real microscope (or a twin bridge)
    named = config.uses_twin or "sample" in config.sources
    RE.md["sample"] = config.sample if named else RE.md.get("sample", "unknown")
    session = Session(config=config, RE=RE, settings=catalog_settings)

    ip = _in_ipython()
    if ip is not None:
        from bluesky.utils import register_transform

        with contextlib.suppress(Exception):
            register_transform("RE", prefix="<")
        with contextlib.suppress(Exception):
            from bluesky.run_engine import autoawait_in_bluesky_event_loop

            autoawait_in_bluesky_event_loop()

    bec = BestEffortCallback()
    if plots is None:
        import matplotlib

        plots = matplotlib.get_backend().lower() not in {"agg", "pdf", "svg", "ps", "template"}
    if not plots:
        bec.disable_plots()
    session.bec = bec
    if progress:
        from .progress import ConsoleOutput, RunProgress

        # One display per run: the table for a few rows, the bar for many (ConsoleOutput
        # goes first so it switches the table before the BestEffortCallback sees the run; the
        # bar closes before that callback prints its closing lines).
        session.progress = RunProgress()
        RE.subscribe(ConsoleOutput(bec, session.progress))
        RE.subscribe(session.progress)
        RE.subscribe(bec)
    else:
        RE.subscribe(bec)
    if write_catalog:
        if config.catalog:
            session.writer = CatalogWriter(
                config.catalog, config.api_key, settings=catalog_settings
            )
            session.catalog_uri = config.catalog
        else:
            from ophyd_stem.catalog import EmbeddedServer

            # The server this process started holds its process handle: stopping it then
            # needs no health check, which a loaded machine can fail (and leave it running).
            server = EmbeddedServer.start(catalog_settings)
            session.writer = CatalogWriter.to_embedded(catalog_settings)
            session.catalog_uri = server.uri
            if server.owned and _in_queueserver():
                _stop_when_this_process_ends(server, session.writer)
        RE.subscribe(session.writer)
    _export(session, user_ns, RE=RE, bec=bec, session=session)
    return session


def _in_queueserver() -> bool:
    """True in a queueserver process: the re-manager's worker, qserver-list-plans-devices."""
    try:
        from bluesky_queueserver import is_re_worker_active
    except ImportError:
        return False
    return bool(is_re_worker_active())


def _stop_when_this_process_ends(server: Any, writer: Any) -> None:
    """Close the writer, then stop the catalog server this process started, when the process
    ends.

    The re-manager's worker and ``qserver-list-plans-devices`` are multiprocessing children:
    they end without running ``atexit`` handlers, so the server's own stop-at-exit never runs
    and it would outlive them. multiprocessing's finalizers do run there (and at a normal
    interpreter exit too), higher ``exitpriority`` first, but *before* the writer's own
    exit flush (at thread shutdown): that flush, finding its server stopped, would start it
    again and leave it running. So the writer is closed first, here.
    """
    import multiprocessing.util

    multiprocessing.util.Finalize(None, writer._close_at_exit, exitpriority=11)
    multiprocessing.util.Finalize(None, _stop_servers_started_here, (server,), exitpriority=10)


def _stop_servers_started_here(server: Any) -> None:
    """``server``, and any other server of its data directory this process started (a
    health check timed out on a busy machine and a second one was spawned)."""
    from ophyd_stem.catalog import EmbeddedServer

    for started in {
        id(s): s for s in [server, *EmbeddedServer.started_here(server.settings)]
    }.values():
        started.stop()
