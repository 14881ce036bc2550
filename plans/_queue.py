"""What bluesky-queueserver reads from a plan beyond its type hints.

The queueserver builds a pydantic model of every plan from its signature and sends each
argument as JSON. Devices are typed with Bluesky protocols (``Readable``, ``Flyable``), which
the queueserver recognises: it turns a device *name* into the device. Parameters that take a
name *or* (in the console) a Python object -- an agent, a scalarizer, the operator's control --
are declared here as what the queue accepts, in the queueserver's own annotation format
(``bluesky_queueserver.parameter_annotation_decorator``). The annotation is stored where the
queueserver looks for it, ``func._custom_parameter_annotation_``, without importing the
queueserver: plans must import where it is not installed.
"""

import copy
from collections.abc import Sequence
from typing import Any, Callable, Dict, Optional, TypeVar, Union

import bluesky.plans as bp
from bluesky.protocols import Movable, Readable
from bluesky.utils import MsgGenerator

__all__ = [
    "AGENT",
    "CONTROL",
    "FLYER",
    "OPTIONAL_FLYER",
    "QUEUEABLE_STANDARD_PLANS",
    "READABLE",
    "SCALARIZER",
    "queue_parameters",
]

F = TypeVar("F", bound=Callable[..., Any])

#: a readable device by its name in the namespace (the scan engine); unknown names are
#: refused when the plan is submitted, not when it runs
READABLE: Dict[str, Any] = {
    "annotation": "ReadableDevice",
    "devices": {"ReadableDevice": ["__READABLE__:.*"]},
}
#: a flyable device by name (the multi-point EELS device)
FLYER: Dict[str, Any] = {
    "annotation": "FlyableDevice",
    "devices": {"FlyableDevice": ["__FLYABLE__:.*"]},
}
OPTIONAL_FLYER: Dict[str, Any] = {
    "annotation": "typing.Optional[FlyableDevice]",
    "devices": {"FlyableDevice": ["__FLYABLE__:.*"]},
}
#: an agent by registry name (agents.registry), e.g. "dkl"
AGENT: Dict[str, Any] = {
    "annotation": "str",
    "description": "agent by name (agents.registry: dkl, edge, logstar, ensemble, ...); "
    "its settings in agent_kwargs",
}
#: a scalarizer spec, e.g. "band:20:30" (agents.scalarizers)
SCALARIZER: Dict[str, Any] = {
    "annotation": "str",
    "description": "what a spectrum is worth, e.g. band:20:30 (eV), ratio:20:30:40:50, "
    "peak:12:18, jump:400:450:460:500",
}
#: the operator's hand: the session's shared OperatorControl in this mode, or none
CONTROL: Dict[str, Any] = {
    "annotation": "typing.Optional[ControlMode]",
    "enums": {"ControlMode": ["free", "approve"]},
    "description": "operator control: 'free' (intervene after a pause) or 'approve' (every "
    "point waits for approval); remote operators act on it with the control_* functions",
}


def queue_parameters(**parameters: Dict[str, Any]) -> Callable[[F], F]:
    """Attach queueserver parameter annotations (``{"annotation": ..., "enums": ...}`` per
    parameter) to a plan, without wrapping it."""

    def decorate(func: F) -> F:
        func._custom_parameter_annotation_ = {"parameters": copy.deepcopy(parameters)}  # type: ignore[attr-defined]
        return func

    return decorate


def list_scan(
    detectors: Sequence[Readable],
    *args: Union[Movable, Any],
    per_step: Any = None,
    md: Optional[Dict[str, Any]] = None,
) -> MsgGenerator[str]:
    # Bluesky's own list_scan, with the signature the queueserver can check: bluesky 1.15
    # annotates ``*args`` as (motor, list) tuples while the plan takes them flat
    # (``motor1, [points], motor2, [points]``), so the queueserver refused every list_scan
    # (rel_list_scan, annotated flat, is fine).
    return (yield from bp.list_scan(detectors, *args, per_step=per_step, md=md))


list_scan.__doc__ = bp.list_scan.__doc__

#: Bluesky's standard plans whose own annotations the queueserver cannot take, as the console
#: and the queue offer them (the same plan, run by Bluesky, recorded as ``list_scan``)
QUEUEABLE_STANDARD_PLANS: Dict[str, Callable[..., Any]] = {"list_scan": list_scan}
