"""The session's instrument: the microscope's devices and the suspender that pauses for it.

:func:`configure_devices` (``10-devices.py`` of ``profile_collection/``) connects the
microscope -- a real DM bridge when an address is configured, else the digital twin (or
another simulated instrument, a replay's files) -- and names its devices for the console
(:func:`console_devices`); :func:`configure_suspenders` (``15-suspenders.py``) pauses the
RunEngine while the bridge stops answering. Import them from :mod:`ophyd_stem.app.session`.
"""

from __future__ import annotations

from typing import Any

from .session_base import Session, _export

__all__ = ["configure_devices", "configure_suspenders", "console_devices"]


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
