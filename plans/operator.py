"""The operator's hand from anywhere: one shared :class:`OperatorControl` per session, and its
controls as plain functions that a remote client can call.

In the console the operator holds ``control`` and calls its methods while the RunEngine is
paused. A plan queued to the queueserver cannot carry that object (its arguments are JSON), so
it says ``control="approve"`` or ``control="free"`` and gets the session's shared control
(:func:`shared_control`, the console's ``control`` too). A remote operator acts on it through
the re-manager's function execution, with the functions below (all in the startup namespace,
allowed by the profile's ``user_group_permissions.yaml``)::

    from bluesky_queueserver_api import BFunc
    RM.function_execute(BFunc("control_veto", 0, who="jane"), run_in_background=True)
    RM.re_resume()

Each function queues exactly the act the console method queues, so the plan applies and
records it the same way (the run's ``interventions`` stream; ``who`` is the remote operator).
They return JSON values: what the operator should see next.

``RM.re_pause("deferred")`` is the remote Ctrl-C (the plan pauses at the end of its step),
``RM.re_resume()`` / ``RM.re_abort()`` the rest; ``ophyd_stem.app.queue.RemoteControl`` wraps
all of it.
"""

import threading
from typing import Any, Optional, Union

from .control import MODES, OperatorControl

__all__ = [
    "CONTROL_FUNCTIONS",
    "control_add",
    "control_approve",
    "control_pick_front",
    "control_set_acquisition",
    "control_set_mode",
    "control_set_scalarizer",
    "control_status",
    "control_veto",
    "resolve_control",
    "shared_control",
]

_lock = threading.Lock()
_shared: Optional[OperatorControl] = None


def shared_control(operator: Optional[str] = None) -> OperatorControl:
    """The session's shared :class:`OperatorControl` (created free-mode on first use).

    Args:
        operator: recorded as ``who`` for acts that do not name someone; sets it when given.
    """
    global _shared
    with _lock:
        if _shared is None:
            _shared = OperatorControl(mode="free", operator=operator)
        elif operator:
            _shared.operator = operator
        return _shared


def resolve_control(control: Union[str, OperatorControl, None]) -> Optional[OperatorControl]:
    """What a plan's ``control=`` means: None (the agent runs alone), an
    :class:`OperatorControl` (the console's), or a mode name, ``"free"`` or ``"approve"``: the
    shared control, put in that mode for this plan.

    Raises:
        ValueError: an unknown mode.
    """
    if control is None or isinstance(control, OperatorControl):
        return control
    if isinstance(control, str):
        if control not in MODES:
            raise ValueError(f"control must be one of {MODES} (or an OperatorControl)")
        shared = shared_control()
        # The mode the plan was queued with; what the operator changes later is recorded.
        shared._mode = control
        return shared
    raise ValueError(f"control must be None, 'free', 'approve' or an OperatorControl: {control!r}")


def control_status(history: int = 10) -> dict[str, Any]:
    """What the operator sees: ``mode``, ``waiting`` (a plan waits for approval), ``asked``
    (how many decisions plans have asked for so far), ``pending``
    (the points shown, numbered as ``control_veto`` counts them), ``front`` (a LoG* front
    waiting for a pick) and the last ``history`` interventions."""
    control = shared_control()
    return {
        "operator": control.operator,
        "mode": control.mode,
        "waiting": control.waiting,
        "asked": control.asked,
        "pending": control.pending,
        "front": control.front_shown,
        "history": list(control.history[-history:]) if history else [],
    }


def control_approve(who: Optional[str] = None) -> list[dict[str, Any]]:
    """Approve the pending points; resume to measure them. Returns them."""
    return shared_control().approve(who=who)


def control_veto(*indices: int, who: Optional[str] = None) -> list[dict[str, Any]]:
    """Refuse pending points by index (none given: all). Returns what is left."""
    return shared_control().veto(*indices, who=who)


def control_add(x: float, y: float, who: Optional[str] = None) -> list[dict[str, Any]]:
    """Measure ``(x, y)`` (survey pixels: x = column, y = row) too. Returns the pending."""
    return shared_control().add(x, y, who=who)


def control_set_acquisition(
    name: Optional[str] = None, who: Optional[str] = None, **parameters: float
) -> dict[str, Any]:
    """Change the acquisition function and/or its parameters (``xi=``, ``beta=``)."""
    shared_control().set_acquisition(name, who=who, **parameters)
    return control_status(history=0)


def control_set_scalarizer(scalarizer: str, who: Optional[str] = None) -> dict[str, Any]:
    """Change what the agent maximises, e.g. ``"band:5:15"``."""
    shared_control().set_scalarizer(scalarizer, who=who)
    return control_status(history=0)


def control_pick_front(
    index: Optional[int] = None,
    weight: Union[float, list[float], None] = None,
    who: Optional[str] = None,
) -> dict[str, Any]:
    """Pick a point of the LoG* Pareto front by index or by weight."""
    shared_control().pick_front(index=index, weight=weight, who=who)
    return control_status(history=0)


def control_set_mode(mode: str, who: Optional[str] = None) -> dict[str, Any]:
    """Switch between ``"free"`` and ``"approve"``."""
    shared_control().set_mode(mode, who=who)
    return control_status(history=0)


#: the names a remote client may call (the profile's permissions allow ``control_*``)
CONTROL_FUNCTIONS = {
    f.__name__: f
    for f in (
        control_status,
        control_approve,
        control_veto,
        control_add,
        control_set_acquisition,
        control_set_scalarizer,
        control_pick_front,
        control_set_mode,
    )
}
