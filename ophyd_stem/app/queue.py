"""A client of a running re-manager: submit plans, follow them to their end, and the operator's
hand on a plan that runs there.

The re-manager (bluesky-queueserver) runs the RunEngine with this project's profile, started
by ``ophyd-stem serve`` or by hand (docs/facility.md). Everything here talks to it through
``bluesky-queueserver-api`` over its ZeroMQ control address (``tcp://host:60615`` by default).

Example::

    >>> queue = QueueClient("tcp://127.0.0.1:60615")                       # doctest: +SKIP
    >>> result = queue.run("survey", "scan_engine", num=1)                   # doctest: +SKIP
    >>> result.run_uids, result.exit_status                                  # doctest: +SKIP
    (['5c1f...'], 'completed')
    >>> control = RemoteControl(queue, who="jane")                           # doctest: +SKIP
    >>> control.status()["pending"]; control.veto(0); control.resume()       # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["QueueClient", "QueueError", "QueueResult", "RemoteControl"]

#: the re-manager's default control address (bluesky-queueserver's own default port)
DEFAULT_ADDRESS = "tcp://127.0.0.1:60615"


class QueueError(RuntimeError):
    """The re-manager refused a request or could not be reached."""


@dataclass
class QueueResult:
    """How a queued plan ended.

    Attributes:
        name: the plan's name.
        item_uid: the queue item's uid.
        exit_status: ``completed``, ``failed``, ``stopped``, ``aborted``, ``halted``...
        run_uids: the runs it opened (in the catalog).
        message: the re-manager's message (the error of a failed plan).
        seconds: wall time from submission to the end, s.
        started_after: seconds from submission until the plan's first run opened (None when
            it opened none).
    """

    name: str
    item_uid: str
    exit_status: str
    run_uids: list[str] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0
    started_after: float | None = None
    #: a failed plan goes back to the front of the queue (the queueserver's way, so the
    #: operator can fix and retry it) under this new uid; None otherwise
    requeued_uid: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_status == "completed"


def _check(response: dict[str, Any], what: str) -> dict[str, Any]:
    if not response.get("success", True):
        raise QueueError(f"{what}: {response.get('msg', response)}")
    return response


class QueueClient:
    """Talks to one re-manager.

    Args:
        address: its ZeroMQ control address, e.g. ``tcp://microscope-gpu:60615``.
        user: recorded with every item as who submitted it.
        public_key: the re-manager's public key when its control channel is encrypted
            (``QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER`` on the server side); default
            ``$QSERVER_ZMQ_PUBLIC_KEY``, as the ``qserver`` command reads it.
        timeout: seconds to wait for each answer.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        user: str | None = None,
        public_key: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        import os

        from bluesky_queueserver_api.zmq import REManagerAPI

        self.address = address
        self.api = REManagerAPI(
            zmq_control_addr=address,
            zmq_public_key=public_key or os.environ.get("QSERVER_ZMQ_PUBLIC_KEY") or None,
            timeout_recv=timeout,
            request_fail_exceptions=False,  # refusals come back as answers: QueueError here
        )
        if user:
            self.api.user = user

    def close(self) -> None:
        self.api.close()
        # bluesky-queueserver(-api) 0.0.25/0.0.13 close their sockets but never the ZeroMQ
        # contexts behind them (the control channel and the two info-channel monitors): three
        # file descriptors and a ResourceWarning per client. End them here.
        api = self.api
        contexts = [getattr(getattr(api, "_client", None), "_ctx", None)]
        for monitor in ("_console_monitor", "_system_info_monitor"):
            receiver = getattr(getattr(api, monitor, None), "_rco", None)
            socket = getattr(receiver, "_socket", None)
            contexts.append(getattr(socket, "context", None))
        for context in contexts:
            if context is not None and not context.closed:
                context.destroy(linger=0)

    def __enter__(self) -> QueueClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- state -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The re-manager's status (``manager_state``, ``re_state``, ``items_in_queue``...).

        Raises:
            QueueError: nobody answers at the address.
        """
        try:
            return self.api.status(reload=True)
        except Exception as exc:  # the API raises its own timeout classes
            raise QueueError(f"no re-manager answers at {self.address}: {exc}") from None

    def wait_until_ready(self, timeout: float = 300.0, open_environment: bool = True) -> None:
        """Wait for the re-manager to answer and (open and) have its RunEngine environment,
        i.e. the profile loaded in its worker.

        Raises:
            QueueError: not ready within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = self.status()
                break
            except QueueError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        if not status.get("worker_environment_exists"):
            if not open_environment:
                raise QueueError("the re-manager has no RunEngine environment open")
            if status.get("manager_state") == "idle":
                _check(self.api.environment_open(), "opening the RunEngine environment")
        while True:
            status = self.status()
            if status.get("worker_environment_exists") and status.get("manager_state") == "idle":
                return
            if time.monotonic() > deadline:
                raise QueueError(
                    f"the re-manager's environment is not ready after {timeout:.0f} s "
                    f"(state {status.get('manager_state')!r}); its log says why"
                )
            time.sleep(0.3)

    # -- plans -------------------------------------------------------------------------------

    def submit(self, name: str, *args: Any, start: bool = True, **kwargs: Any) -> str:
        """Add a plan to the end of the queue (validated by the re-manager) and start the queue
        unless it runs already. Returns the item's uid.

        Raises:
            QueueError: the plan was refused (unknown plan, bad arguments: the message says).
        """
        from bluesky_queueserver_api import BPlan

        response = _check(self.api.item_add(BPlan(name, *args, **kwargs)), f"plan {name!r}")
        if start:
            self.start()
        return response["item"]["item_uid"]

    def start(self) -> None:
        """Start the queue when it is idle and holds items."""
        status = self.status()
        if status.get("manager_state") == "idle" and status.get("items_in_queue", 0):
            response = self.api.queue_start()
            if not response.get("success") and "idle" not in str(response.get("msg")):
                raise QueueError(f"starting the queue: {response.get('msg')}")

    def follow(
        self,
        item_uid: str,
        *,
        timeout: float | None = None,
        poll: float = 0.2,
        on_progress: Callable[[str], Any] | None = None,
        submitted: float | None = None,
        stopped_after: float = 5.0,
    ) -> QueueResult:
        """Wait for a queued item to end (in the history) and say how.

        Args:
            item_uid: from :meth:`submit`.
            timeout: seconds; None waits as long as it takes (a paused plan waits for its
                operator).
            poll: seconds between status checks.
            on_progress: called with a line whenever the re-manager's state changes.
            submitted: ``time.monotonic()`` of the submission (default: now).
            stopped_after: seconds the re-manager may stay idle, the item still waiting in
                its queue, before that counts as a stopped queue (a plan before it failed,
                or someone stopped the queue) rather than the moment between two plans.

        Raises:
            QueueError: not ended within ``timeout``; the queue stopped with the item still
                in it (the message says after which plan and why); the item is gone from
                both the queue and the history (someone removed it).
        """
        submitted = time.monotonic() if submitted is None else submitted
        deadline = None if timeout is None else submitted + timeout
        last_state, started_after, idle_since = None, None, None
        while True:
            status = self.status()
            state = (status.get("manager_state"), status.get("re_state"))
            running = status.get("running_item_uid") == item_uid
            if running and started_after is None and status.get("re_state") == "running":
                started_after = time.monotonic() - submitted
            if on_progress is not None and state != last_state and (running or state[0] == "idle"):
                on_progress(f"re-manager {state[0]}, RunEngine {state[1]}")
            last_state = state
            if not running:
                for item in reversed(self.api.history_get(reload=True).get("items", [])):
                    if item.get("item_uid") == item_uid:
                        result = item.get("result", {})
                        return QueueResult(
                            name=item.get("name", ""),
                            item_uid=item_uid,
                            exit_status=result.get("exit_status", "unknown"),
                            run_uids=list(result.get("run_uids", [])),
                            message=str(result.get("msg", "")),
                            seconds=time.monotonic() - submitted,
                            started_after=started_after,
                            requeued_uid=self._requeued(item),
                        )
            # the queueserver stops its queue after a plan that failed: the items behind it
            # wait until someone starts it again, which a caller must hear about, not wait on
            if not running and state[0] == "idle":
                idle_since = time.monotonic() if idle_since is None else idle_since
                if time.monotonic() - idle_since >= stopped_after:
                    raise QueueError(self._why_not_running(item_uid))
            else:
                idle_since = None
            if deadline is not None and time.monotonic() > deadline:
                raise QueueError(f"plan {item_uid} has not ended after {timeout:.0f} s")
            time.sleep(poll)

    def _why_not_running(self, item_uid: str) -> str:
        """Why a followed item neither runs nor has ended, for the error a caller sees."""
        queued = self.api.queue_get(reload=True).get("items", [])
        where = [i for i, item in enumerate(queued) if item.get("item_uid") == item_uid]
        if not where:
            return (
                f"plan {item_uid} is neither in the re-manager's queue nor in its history "
                "(removed from the queue?)"
            )
        name = queued[where[0]].get("name", "?")
        text = (
            f"plan {name} ({item_uid[:8]}) waits in the queue at position {where[0] + 1} of "
            f"{len(queued)}, and the queue is not running"
        )
        history = self.api.history_get(reload=True).get("items", [])
        last = history[-1] if history else None
        ended = last.get("result", {}).get("exit_status") if last else None
        if last is not None and ended != "completed":
            message = str(last.get("result", {}).get("msg", "")).strip()
            text += f": it stopped after {last.get('name', '?')} ended {ended}"
            text += f" ({message})" if message else ""
        return text + " (start it again with `qserver queue start` or QueueClient.start())"

    def _requeued(self, item: dict[str, Any]) -> str | None:
        """The uid of the copy of a failed ``item`` put back at the front of the queue."""
        if item.get("result", {}).get("exit_status") == "completed":
            return None
        queued = self.api.queue_get(reload=True).get("items", [])
        same = ("name", "args", "kwargs")
        if queued and all(queued[0].get(k) == item.get(k) for k in same):
            return queued[0].get("item_uid")
        return None

    def discard(self, result: QueueResult) -> None:
        """Take a failed plan's copy off the front of the queue (it would run again first at
        the next start)."""
        if result.requeued_uid:
            self.api.item_remove(uid=result.requeued_uid)
            result.requeued_uid = None

    def run(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        keep_failed: bool = False,
        **kwargs: Any,
    ) -> QueueResult:
        """Submit a plan, start the queue and follow the plan to its end. A plan that failed
        is taken off the queue again unless ``keep_failed``."""
        submitted = time.monotonic()
        uid = self.submit(name, *args, **kwargs)
        result = self.follow(uid, timeout=timeout, submitted=submitted)
        if not keep_failed:
            self.discard(result)
        return result

    # -- functions in the worker's namespace ---------------------------------------------------

    def call(self, name: str, *args: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
        """Call a function of the worker's namespace (allowed by the profile's permissions)
        in the background, so it works while a plan runs or waits, and return its result.

        Raises:
            QueueError: refused, or it raised (its message is included).
        """
        from bluesky_queueserver_api import BFunc

        response = _check(
            self.api.function_execute(BFunc(name, *args, **kwargs), run_in_background=True),
            f"function {name!r}",
        )
        task = response["task_uid"]
        self.api.wait_for_completed_task(task, timeout=timeout)
        result = self.api.task_result(task)["result"]
        if not result.get("success"):
            raise QueueError(f"{name}: {result.get('msg')}")
        return result.get("return_value")


class RemoteControl:
    """The operator's hand on a plan that runs in the re-manager, as ``control`` is in the
    console: the same acts (approve, veto, add, set_acquisition, set_scalarizer, pick_front,
    set_mode), recorded in the run the same way, plus the RunEngine's pause/resume/abort.

    The plan must have been queued with ``control="approve"`` or ``control="free"``.

    Args:
        queue: the re-manager.
        who: recorded as the operator of every act.
    """

    def __init__(self, queue: QueueClient, who: str | None = None) -> None:
        self.queue = queue
        self.who = who
        self._answered = 0

    def status(self, history: int = 10) -> dict[str, Any]:
        """``mode``, ``waiting``, ``pending`` points, the LoG* ``front``, recent ``history``;
        also ``re_state`` (``running``, ``paused``...)."""
        status = self.queue.call("control_status", history=history)
        status["re_state"] = self.queue.status().get("re_state")
        return status

    def wait_for_decision(self, timeout: float = 120.0, poll: float = 0.2) -> dict[str, Any]:
        """Wait until the plan pauses for the operator with a question not seen before
        (approve mode: points to approve; LoG*: a front to pick from) and return
        :meth:`status`.

        Raises:
            QueueError: it did not within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.status().get("re_state") == "paused":
                status = self.status()
                if status["waiting"] and status["asked"] > self._answered:
                    self._answered = status["asked"]
                    return status
            time.sleep(poll)
        raise QueueError(f"no plan asked the operator within {timeout:.0f} s")

    def approve(self) -> Any:
        return self.queue.call("control_approve", who=self.who)

    def veto(self, *indices: int) -> Any:
        return self.queue.call("control_veto", *indices, who=self.who)

    def add(self, x: float, y: float) -> Any:
        return self.queue.call("control_add", float(x), float(y), who=self.who)

    def set_acquisition(self, name: str | None = None, **parameters: float) -> Any:
        return self.queue.call("control_set_acquisition", name, who=self.who, **parameters)

    def set_scalarizer(self, spec: str) -> Any:
        return self.queue.call("control_set_scalarizer", spec, who=self.who)

    def pick_front(self, index: int | None = None, weight: float | None = None) -> Any:
        return self.queue.call("control_pick_front", index=index, weight=weight, who=self.who)

    def set_mode(self, mode: str) -> Any:
        return self.queue.call("control_set_mode", mode, who=self.who)

    def pause(self, immediate: bool = False) -> None:
        """Pause the plan: at the end of its step (like Ctrl-C once), or at once."""
        _check(self.queue.api.re_pause("immediate" if immediate else "deferred"), "pause")

    def resume(self) -> None:
        _check(self.queue.api.re_resume(), "resume")

    def abort(self) -> None:
        """End the paused run; what was measured stays in the catalog."""
        _check(self.queue.api.re_abort(), "abort")
