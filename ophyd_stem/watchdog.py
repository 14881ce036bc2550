"""Is the bridge answering? A watchdog a Bluesky suspender can watch.

A running plan must not fail because the microscope PC rebooted DigitalMicrograph or the
network hiccupped: it should pause and resume when the bridge is back. Bluesky's suspenders
watch an object with ophyd's ``subscribe(callback, run=True)`` / ``clear_sub(callback)``;
:class:`BridgeWatchdog` is such an object, whose value is ``True`` while the bridge answers
``status`` and ``False`` when it stops.

Example (a twin's bridge on a loopback port stands in for the microscope's):
    >>> from bluesky import RunEngine
    >>> from bluesky.suspenders import SuspendBoolLow
    >>> from dm_bridge.client import BridgeClient
    >>> from ophyd_stem.sim import SimBridge
    >>> from ophyd_stem.watchdog import BridgeWatchdog
    >>> bridge = SimBridge("twin", mode="thread")
    >>> watchdog = BridgeWatchdog(lambda: BridgeClient(bridge.address, timeout=1.0))
    >>> RE = RunEngine()
    >>> RE.install_suspender(SuspendBoolLow(watchdog, sleep=2.0,
    ...     tripped_message="the DM bridge stopped answering"))
    >>> watchdog.value                       # polled every second in a thread
    True
    >>> watchdog.stop(); bridge.close()
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["BridgeWatchdog"]

log = logging.getLogger(__name__)


class BridgeWatchdog:
    """Polls a bridge in a background thread and reports whether it answers.

    Args:
        make_client: returns a new *blocking* client (the watchdog owns it; one thread).
        period: seconds between polls while the bridge answers.
        timeout: seconds a poll may take before the bridge counts as gone.
        name: shown by the suspender when it trips.
    """

    def __init__(
        self,
        make_client: Callable[[], Any],
        period: float = 1.0,
        timeout: float = 2.0,
        name: str = "dm_bridge_alive",
    ) -> None:
        self.name = name
        self.period = float(period)
        self.timeout = float(timeout)
        self._make_client = make_client
        self._callbacks: list[Callable[..., None]] = []
        self._lock = threading.Lock()
        self._value = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: why the bridge last failed to answer
        self.last_error: str | None = None
        #: why a subscriber (a suspender) last failed when told the bridge's state
        self.last_subscriber_error: str | None = None

    # ----------------------------------------------------------- ophyd-style signal API

    def get(self) -> bool:
        return self._value

    @property
    def value(self) -> bool:
        return self._value

    def subscribe(self, callback: Callable[..., None], event_type: Any = None, run: bool = True):
        with self._lock:
            self._callbacks.append(callback)
        if run:
            callback(value=self._value, old_value=None, obj=self, timestamp=time.time())
        self.start()
        return callback

    def clear_sub(self, callback: Callable[..., None], event_type: Any = None) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    # ----------------------------------------------------------- polling

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + self.period + 1)

    def poll_once(self, client: Any) -> bool:
        """One ``status`` call; True when the bridge answered."""
        try:
            client.status(timeout=self.timeout)
        except Exception as exc:  # any failure means "not answering"
            self.last_error = str(exc)
            return False
        return True

    def _set(self, alive: bool) -> None:
        old, self._value = self._value, alive
        # While the bridge is down, say so at every poll, not only on the change: a suspender
        # called from this thread can fail to trip (bluesky gives the RunEngine's loop 0.1 s
        # to make its event and raises otherwise, which happens on a loaded machine), and
        # must be asked again. Suspenders ignore repeats.
        if old == alive and alive:
            return
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(value=alive, old_value=old, obj=self, timestamp=time.time())
            except Exception as exc:  # never let a subscriber stop the watchdog
                self.last_subscriber_error = f"{type(exc).__name__}: {exc}"
                log.warning("bridge watchdog: %s failed: %s (asked again next poll)", callback, exc)

    def _run(self) -> None:
        client = self._make_client()
        try:
            while not self._stop.is_set():
                self._set(self.poll_once(client))
                self._stop.wait(self.period if self._value else min(self.period, 0.5))
        finally:
            with contextlib.suppress(Exception):
                client.close()
