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

:func:`configure_session` does all of it, for scripts, tests and the command. This module is
the place to import all of it from; the RunEngine, its callbacks and the catalog writer are
:mod:`.session_base`, the microscope's devices and suspender :mod:`.session_devices`, and the
names to run with (plans, agents, views) are here.

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
from pathlib import Path
from typing import Any

from .session_base import Session, _export, configure_base
from .session_devices import configure_devices, configure_suspenders, console_devices

__all__ = [
    "Session",
    "configure_agents",
    "configure_base",
    "configure_devices",
    "configure_plans",
    "configure_session",
    "configure_suspenders",
    "configure_views",
    "console_devices",
    "standard_plans",
]


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
