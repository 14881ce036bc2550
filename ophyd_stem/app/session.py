"""Everything a console session (or the ``ophyd-stem`` command) sets up, in one place.

The IPython startup files of ``profile_collection/`` stay one line each: they call the
functions here, in name order, NSLS-II style:

=====================  ===================================================================
``00-base.py``         :func:`configure_base`: RunEngine, BestEffortCallback (its table for
                       short runs), a progress bar for long ones,
                       the catalog writer, persistent run metadata (scan ids survive restarts)
``10-devices.py``      :func:`configure_devices`: the digital twin by default, a real bridge
                       when an address is configured (``$OPHYD_STEM_BRIDGE`` or the file)
``15-suspenders.py``   :func:`configure_suspenders`: pause when the bridge stops answering
``20-plans.py``        :func:`configure_plans`: every standard Bluesky plan and the project's
                       plans by name, ``bp``, ``bps``, ``plans``
``30-agents.py``       :func:`configure_agents`: agent classes, imported when first used;
                       ``device`` and ``compute`` as configured, for the agents one makes
(``35-views.py``)      :func:`configure_views`: the live figure of adaptive runs (when plots
                       are on), ``control`` (the operator's hand on them) and its
                       ``control_*`` functions for remote operators
=====================  ===================================================================

The same files are the startup of the queueserver's re-manager (``start-re-manager
--startup-dir profile_collection/profile_ophyd_stem/startup``, plain or IPython-kernel
worker; the permissions are ``startup/user_group_permissions.yaml``). Devices, plans and
functions have names that do not clash with ``bluesky.plans``, so
``from bluesky.plans import *`` is safe: the scan engine is ``scan_engine``; ``scan`` is
Bluesky's plan.

:func:`configure_session` does all of it, for scripts, tests and the command.

Example (a script). At a microscope, ``configure_session(plots=False)`` starts the
catalog's server and writes into your data directory; here, so that it runs anywhere in a
second, the session writes no catalog, the twin (no bridge configured) runs in this process
(``mode="local"``) and the data directory is a temporary folder:

    >>> import tempfile
    >>> from ophyd_stem.app.session import configure_session
    >>> data_dir = tempfile.TemporaryDirectory()
    >>> session = configure_session(plots=False, progress=False, write_catalog=False,
    ...                             mode="local", data_dir=data_dir.name)
    >>> session.bec.disable_heading()      # (its blank lines, uid and time: not shown here)
    >>> uids = session.RE(session.plans.survey(session.microscope.scan))
    New stream: 'primary'
    +-----------+------------+
    |   seq_num |       time |
    +-----------+------------+
    |         1 | ...        |
    +-----------+------------+
    generator survey [...] (scan num: 1)
    >>> len(uids), session.RE.md["scan_id"]
    (1, 1)
    >>> session.close()                    # True: everything was written
    True
    >>> data_dir.cleanup()

The script as it runs at the microscope (not run here: it starts the catalog's server and
writes into your data directory, ``~/.local/share/ophyd-stem`` unless configured):

    >>> session = configure_session(plots=False)                     # doctest: +SKIP
    >>> session.RE(session.plans.survey(session.microscope.scan))    # doctest: +SKIP
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

__all__ = [
    "Session",
    "configure_agents",
    "configure_base",
    "configure_devices",
    "configure_plans",
    "configure_session",
    "configure_suspenders",
    "configure_views",
]

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


def configure_devices(
    session: Session,
    user_ns: dict[str, Any] | None = None,
    *,
    mode: str = "thread",
    instrument: dict[str, Any] | None = None,
    **twin_options: Any,
) -> Any:
    """Connect the microscope: a real bridge when one is configured, else the digital twin
    (or the simulated instrument ``instrument`` names).

    Args:
        session: from :func:`configure_base`.
        user_ns: names added: ``microscope``, ``stem``, ``scan_engine``, ``eels``,
            ``eels_points``.
        mode: for the twin, ``"thread"`` (a real bridge on loopback in this process),
            ``"subprocess"`` or ``"local"`` (no sockets).
        instrument: instead of the twin, ``{"backend": "replay", "options": {"file": ...},
            "label": ...}``: another bridge backend, run the same way (``ophyd-stem run dkl
            --replay`` serves a recording so).
        twin_options: twin options (``seed=1``, ``time_scale=0.05``...).
    """
    from bluesky.run_engine import call_in_bluesky_event_loop

    from ophyd_stem import Microscope
    from ophyd_stem.sim import SimBridge

    config = session.config
    assets = session.settings.assets_dir
    if config.uses_twin and instrument is not None:
        options = dict(instrument.get("options") or {})
        if "time_scale" in twin_options:
            options.setdefault("time_scale", twin_options["time_scale"])
        session.bridge = SimBridge(instrument["backend"], mode=mode, **options)
        session.instrument_label = str(instrument.get("label") or instrument["backend"])
        session.RE.md["sample"] = session.instrument_label
        client = session.bridge.async_client()
    elif config.uses_twin:
        session.bridge = SimBridge("twin", mode=mode, sample=config.sample, **twin_options)
        client = session.bridge.async_client()
    else:
        from dm_bridge.aio import AsyncBridgeClient

        client = AsyncBridgeClient(
            config.bridge,
            server_public_key=config.server_key,
            client_secret_key=config.client_key,
        )
    microscope = Microscope(client, assets_dir=assets)
    call_in_bluesky_event_loop(microscope.connect())
    session.microscope = microscope
    session.RE.md.update(_instrument_md(microscope))
    _export(session, user_ns, microscope=microscope, **console_devices(microscope))
    return microscope


def console_devices(microscope: Any) -> dict[str, Any]:
    """The microscope's devices by their console (and queueserver) names.

    The scan engine is ``scan_engine`` there: ``scan`` is Bluesky's standard plan, and a name
    that is both a device and a plan is taken as the plan by the queueserver. Data keys keep
    the device's short name (``scan-haadf``, decision 0004).
    """
    return {
        "stem": microscope.stem,
        "scan_engine": microscope.scan,
        "eels": microscope.eels,
        "eels_points": microscope.eels_points,
    }


def _instrument_md(microscope: Any) -> dict[str, Any]:
    meta = microscope.metadata()
    instrument = dict(meta["instrument"])
    # Limits are long and live in every run's hello anyway; keep the start document short.
    instrument.pop("limits", None)
    return {"instrument": instrument, "bridge": meta["bridge"]}


def configure_suspenders(
    session: Session, period: float = 1.0, timeout: float = 2.0, resume_after: float = 2.0
) -> Any:
    """Pause the RunEngine when the bridge stops answering; resume when it is back."""
    from bluesky.suspenders import SuspendBoolLow

    from ophyd_stem.watchdog import BridgeWatchdog

    config = session.config
    if session.bridge is not None and session.bridge.mode == "local":
        return None  # an in-process twin cannot go away
    if session.bridge is not None:
        make_client = session.bridge.client
    else:
        from dm_bridge.client import BridgeClient

        def make_client() -> Any:
            return BridgeClient(
                config.bridge,
                server_public_key=config.server_key,
                client_secret_key=config.client_key,
            )

    watchdog = BridgeWatchdog(make_client, period=period, timeout=timeout)
    session.RE.install_suspender(
        SuspendBoolLow(
            watchdog,
            sleep=resume_after,
            tripped_message="the DM bridge stopped answering; the run resumes when it is back",
        )
    )
    session.watchdog = watchdog
    return watchdog


def standard_plans() -> dict[str, Any]:
    """Bluesky's standard plans by name: everything ``bluesky.plans`` defines (``count``,
    ``scan``, ``rel_scan``, ``grid_scan``, ``list_scan``...) and the moves ``mv``, ``mvr``.

    ``list_scan`` is Bluesky's behind a signature the queueserver can check
    (``plans._queue.QUEUEABLE_STANDARD_PLANS``)."""
    import bluesky.plan_stubs as bps
    import bluesky.plans as bp
    from bluesky.utils import is_plan

    from plans._queue import QUEUEABLE_STANDARD_PLANS

    found = {
        name: obj
        for name, obj in vars(bp).items()
        if not name.startswith("_")
        and is_plan(obj)
        and getattr(obj, "__module__", None) == bp.__name__
    }
    found.update(mv=bps.mv, mvr=bps.mvr, **QUEUEABLE_STANDARD_PLANS)
    return found


def configure_plans(session: Session, user_ns: dict[str, Any] | None = None) -> Any:
    """Make the plans available by name: Bluesky's standard plans (:func:`standard_plans`)
    and this project's (``plans.PLANS``), and the modules ``plans``, ``bp``, ``bps``.

    Plan stubs (``bps.*``, ``plans.stubs``) stay in their modules: pieces of plans, not
    offered for running (or queueing) alone.
    """
    import bluesky.plan_stubs as bps
    import bluesky.plans as bp

    import plans

    session.plans = plans
    _export(session, user_ns, plans=plans, bp=bp, bps=bps, **standard_plans(), **plans.PLANS)
    return plans


def configure_agents(session: Session, user_ns: dict[str, Any] | None = None) -> Any:
    """Make the agents available (``agents``); torch is imported only when one is used.

    Also exports the configured ``device`` (``"auto"`` unless ``--device``,
    ``$OPHYD_STEM_DEVICE`` or ``[compute] device`` says otherwise) and ``compute`` (the Dask
    cluster setting, ``None`` for in-process work), to pass on::

        agent = DKLAgent(image, device=device)
        wmap = optimize_windows(image, "graphene", 0.0079, compute=compute)
    """
    import agents

    config = session.config
    _export(session, user_ns, agents=agents, device=config.device or "auto", compute=config.compute)
    return agents


def configure_views(
    session: Session,
    user_ns: dict[str, Any] | None = None,
    plots: bool | None = None,
    out_dir: str | Path | None = None,
) -> Any:
    """The live figure of adaptive and LoG* runs, and the operator's hand on them.

    Subscribes a :class:`~ophyd_stem.app.views.LiveView` when plots are on (as the
    BestEffortCallback's) or PNGs are wanted (``out_dir``), and adds ``control``, the
    session's shared :class:`plans.OperatorControl` (free mode), to pass as
    ``adaptive_eels(..., control=control)``; a plan queued with ``control="approve"`` uses the
    same one. Names added: ``live_view`` (None without plots), ``control`` and the
    ``control_*`` functions remote operators call through the queueserver
    (:mod:`plans.operator`).
    """
    from plans import CONTROL_FUNCTIONS, shared_control

    if plots is None:
        plots = bool(getattr(session.bec, "_plots_enabled", False))
    view = None
    if plots or out_dir is not None:
        import matplotlib

        from .views import LiveView

        if plots and "qt" in matplotlib.get_backend().lower():
            from bluesky.callbacks.mpl_plotting import initialize_qt_teleporter

            with contextlib.suppress(RuntimeError):  # not the main thread: no teleporter
                initialize_qt_teleporter()
        view = LiveView(out_dir=out_dir, show=plots)
        session.RE.subscribe(view)
    control = shared_control(operator=session.config.operator)
    _export(session, user_ns, live_view=view, control=control, **CONTROL_FUNCTIONS)
    return view


def configure_session(
    user_ns: dict[str, Any] | None = None,
    *,
    mode: str = "thread",
    suspenders: bool = True,
    twin_options: dict[str, Any] | None = None,
    instrument: dict[str, Any] | None = None,
    **base: Any,
) -> Session:
    """All of the above: base, devices, suspenders, plans, agents.

    Args:
        user_ns: the namespace to fill (an IPython ``user_ns``); None for scripts.
        mode: how to run the twin when no bridge is configured.
        suspenders: install the bridge suspender.
        twin_options: passed to the twin.
        instrument: another simulated instrument instead of the twin (see
            :func:`configure_devices`).
        base: :func:`configure_base` arguments and session settings.
    """
    session = configure_base(user_ns, **base)
    try:
        configure_devices(
            session, user_ns, mode=mode, instrument=instrument, **(twin_options or {})
        )
        if suspenders:
            configure_suspenders(session)
        configure_plans(session, user_ns)
        configure_agents(session, user_ns)
        configure_views(session, user_ns)
    except BaseException:
        session.close(timeout=5)
        raise
    return session
