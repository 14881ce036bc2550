"""The operator in the loop: approve, veto, redirect an adaptive plan from the console.

The console is blocked while ``RE(plan)`` runs (the NSLS-II way), so the operator acts while
the RunEngine is *paused*, and every act is recorded in the run:

``mode="approve"``
    nothing is measured without approval. At each step the plan records the agent's
    suggestions, sets a checkpoint and pauses; the operator looks (``control.pending``),
    calls :meth:`~OperatorControl.approve`, :meth:`~OperatorControl.veto`,
    :meth:`~OperatorControl.add`, :meth:`~OperatorControl.set_acquisition`,
    :meth:`~OperatorControl.set_scalarizer`... and ``RE.resume()``.
``mode="free"``
    the agent runs freely. The operator can still step in: Ctrl-C (the RunEngine pauses at
    the end of the current step), the same methods, ``RE.resume()``; the changes apply
    from the next step.

The pause always comes right after a checkpoint, so ``RE.resume()`` rewinds nothing: no
spectrum is measured twice and no decision is lost. ``RE.abort()`` ends the run with its
stop document and everything measured so far.

Every intervention (who, what, when, before and after) goes to the run's ``interventions``
stream, so a replay shows it and forensics re-applies it to the agent in the same order.

Example (the digital twin in this process, a 32 x 32 px field, two steps of a DKL agent
with two seed points). At each pause the plan prints the step's suggestions and what to do
(``step 1: the agent suggests (nothing is measured without approval): ...``) and the
RunEngine raises ``RunEngineInterrupted`` with its pause message, the console's prompt
comes back:

    >>> import bluesky.plan_stubs as bps
    >>> from bluesky import RunEngine
    >>> from ophyd_stem.sim import twin_microscope
    >>> from plans import OperatorControl, adaptive_eels
    >>> RE = RunEngine()
    >>> microscope = twin_microscope("nanoparticles", seed=2)
    >>> RE(bps.mv(microscope.scan.width, 32, microscope.scan.height, 32))
    ()
    >>> control = OperatorControl(mode="approve", operator="jane")
    >>> RE(adaptive_eels(microscope.scan, microscope.eels_points, "dkl", "band:20:30",
    ...                  agent_kwargs={"n_seed": 2}, steps=2, control=control))
    Traceback (most recent call last):
    ...
    bluesky.utils.RunEngineInterrupted: ...
    >>> RE.state, control.pending                   # step 1 waits: nothing measured yet
    ('paused', [{'index': 0, 'x': 26.0, 'y': 27.0, 'source': 'seed'}])
    >>> control.veto(0)                             # not there...
    []
    >>> control.add(16, 16)                         # ...here (x, y: px of the field)
    [{'index': 0, 'x': 16.0, 'y': 16.0, 'source': 'operator'}]
    >>> _ = control.approve()
    >>> RE.resume()                                 # measures (16, 16); step 2 waits
    Traceback (most recent call last):
    ...
    bluesky.utils.RunEngineInterrupted: ...
    >>> _ = control.approve()
    >>> uids = RE.resume()                          # the last step: the run ends
    >>> RE.state, len(uids)
    ('idle', 1)

The console methods (the operator's side) are in :mod:`plans._control_console`; the plan
stubs that apply and record the acts (the RunEngine's side) are here.
"""

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import numpy as np
from bluesky.utils import MsgGenerator

from ophyd_stem import Record

from ._control_console import MODES, _Action, _edit, _login, _OperatorConsole
from .stubs import record

__all__ = ["MODES", "OperatorControl", "relabel"]

#: actions that change what the agent suggests (applied before the agent is asked)
_SETTINGS = ("set_acquisition", "set_scalarizer", "set_mode", "pick_front")


def relabel(agent: Any, values: Sequence[float]) -> None:
    """Give an agent new values for the measurements it has (after a scalarizer change).

    The last ``len(values)`` measurements get the new values; an agent with a model refits it
    now (``fit()``), so its next suggestion already reflects them. Agents may provide their
    own ``relabel(values)``.

    Raises:
        ValueError: more values than the agent has measurements, or non-finite values.
    """
    new = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(new)):
        raise ValueError("relabelled values must be finite")
    own = getattr(agent, "relabel", None)
    if callable(own):
        own(new)
        return
    current = np.asarray(agent.values, dtype=np.float64)
    if len(new) > len(current):
        raise ValueError(f"{len(new)} values for an agent with {len(current)} measurements")
    agent.values = np.concatenate([current[: len(current) - len(new)], new])
    fit = getattr(agent, "fit", None)
    if callable(fit) and len(agent.values) >= 2:
        fit()


def _point(s: dict[str, Any]) -> dict[str, Any]:
    """A suggestion as it is shown and recorded: position, source and the agent's numbers."""
    out: dict[str, Any] = {"x": float(s["x"]), "y": float(s["y"])}
    for key in ("source", "acquisition", "mean", "std", "atom", "cluster"):
        if key in s and s[key] is not None:
            value = s[key]
            out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


class OperatorControl(_OperatorConsole):
    """Human-in-the-loop control of adaptive plans (``adaptive_eels``, ``logstar``).

    Args:
        mode: ``"free"`` (the agent runs; intervene with Ctrl-C) or ``"approve"`` (the plan
            pauses for approval before every measurement).
        operator: recorded as ``who`` (default ``$OPHYD_STEM_OPERATOR`` or the login name).
        notify: how the plan tells the operator it waits (default ``print``).
        scalarizers: resolves a scalarizer name such as ``"band:5:15"`` (default
            ``agents.scalarizers.get_scalarizer``, imported when first needed).

    Console methods (:meth:`approve`, :meth:`veto`, :meth:`add`, :meth:`set_acquisition`,
    :meth:`set_scalarizer`, :meth:`pick_front`, :meth:`set_mode`) only queue the act; the plan
    applies and records it when the RunEngine resumes, in the RunEngine's thread. Each takes
    ``who=`` (default ``operator``), recorded with the act: a remote operator acting through
    the queueserver says who they are (:mod:`plans.operator`).

    Example (the acts are queued here; the run lines need a console where Ctrl-C can be
    pressed, so they are not run: the module's example runs a whole plan in approve mode).
    Ctrl-C pauses the RunEngine at the end of the current step; both changes are applied
    and recorded when it resumes, before the agent is next asked:
        >>> from plans import OperatorControl
        >>> control = OperatorControl(mode="free", operator="jane")
        >>> control
        OperatorControl(mode='free', operator='jane')
        >>> RE(adaptive_eels(..., control=control))  # Ctrl-C: pause  # doctest: +SKIP
        >>> control.set_acquisition("ucb", beta=9)
        >>> control.set_scalarizer("band:5:15")
        >>> control.set_scalarizer("band:5")
        Traceback (most recent call last):
        ...
        ValueError: ...
        >>> RE.resume()                  # both applied, recorded  # doctest: +SKIP
    """

    def __init__(
        self,
        mode: str = "free",
        operator: str | None = None,
        notify: Callable[[str], Any] | None = print,
        scalarizers: Callable[[str], Callable] | None = None,
    ) -> None:
        self._mode = self._check_mode(mode)
        self.operator = operator or os.environ.get("OPHYD_STEM_OPERATOR") or _login()
        self.notify = notify
        self._resolve = scalarizers
        self._lock = threading.Lock()
        self._queue: list[_Action] = []
        self._pending: list[dict[str, Any]] | None = None  # shown for approval
        self._front: dict[str, Any] | None = None  # shown for a LoG* pick
        self._recorder = Record("intervention")
        self._scalarizer: Callable | None = None
        self._spectra: list[tuple[np.ndarray, np.ndarray]] = []
        self._agent: Any = None
        self._asked = 0  # times a plan paused for the operator's decision
        #: every intervention recorded so far (also in the run's ``interventions`` stream)
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ plan side

    def scalarize(self, spectra: Any, energy_axis: Any, default: Callable) -> Any:
        """The scalarizer in force (the operator's, else ``default``) applied to new spectra,
        which are kept so that a later scalarizer change can relabel them."""
        spectra = np.asarray(spectra)
        axis = np.asarray(energy_axis)
        values = (self._scalarizer or default)(spectra, axis)
        self._spectra.append((spectra.reshape(-1, spectra.shape[-1]).copy(), axis.copy()))
        return values

    def _take(self) -> list[_Action]:
        with self._lock:
            actions, self._queue = self._queue, []
        return actions

    def _record(
        self,
        step: int,
        phase: str,
        kind: str,
        who: str | None = None,
        requested: float | None = None,
        before: Any = None,
        after: Any = None,
        detail: Any = None,
    ) -> MsgGenerator[None]:
        entry = {
            "step": int(step),
            "phase": phase,
            "kind": kind,
            "who": who or "agent",
            "requested": float(requested if requested is not None else time.time()),
            "mode": self._mode,
            "before": _dumps(before),
            "after": _dumps(after),
            "detail": _dumps(detail or {}),
        }
        self.history.append(entry)
        yield from record(self._recorder, "interventions", **entry)

    def _apply_setting(self, action: _Action, step: int, phase: str, agent: Any):
        """Apply one setting change to the agent and record it; refusals are recorded too."""
        try:
            if action.kind == "set_mode":
                before, self._mode = self._mode, action.args["mode"]
                after, detail = self._mode, {}
            elif action.kind == "set_acquisition":
                set_exploration = getattr(agent, "set_exploration", None)
                if set_exploration is None:
                    raise ValueError(f"{type(agent).__name__} has no acquisition function")
                before = dict(getattr(agent, "exploration", {}) or {})
                after = set_exploration(**action.args)
                detail = dict(action.args)
            elif action.kind == "set_scalarizer":
                func = action.args["func"]
                before = getattr(self._scalarizer, "__name__", None)
                values = self._relabelled(func)
                relabel(agent, values)
                self._scalarizer = func
                after, detail = action.args["name"], {"values": values.tolist()}
            else:  # pick_front
                previous = getattr(agent, "choice", None)
                before = None if previous is None else int(previous.index)
                point = agent.select(
                    index=action.args["index"], weight=action.args["weight"], chooser=action.who
                )
                after = {"index": int(agent.choice.index), "params": point.params.as_dict()}
                detail = {k: v for k, v in action.args.items() if v is not None}
        except (ValueError, TypeError, RuntimeError) as exc:
            self._say(f"step {step}: {action.kind} refused: {exc}")
            args = {k: v for k, v in action.args.items() if k != "func"}
            yield from self._record(
                step,
                phase,
                "refused",
                action.who,
                action.requested,
                before=action.kind,
                after=str(exc),
                detail=args,
            )
            return
        yield from self._record(
            step, phase, action.kind, action.who, action.requested, before, after, detail
        )

    def _relabelled(self, func: Callable) -> np.ndarray:
        if not self._spectra:
            return np.empty(0)
        parts = [np.atleast_1d(np.asarray(func(s, a), dtype=np.float64)) for s, a in self._spectra]
        return np.concatenate(parts)

    def _say(self, text: str) -> None:
        if self.notify is not None:
            self.notify(text)

    def prepare(self, step: int, agent: Any) -> MsgGenerator[None]:
        """Plan stub, before the agent suggests: apply the operator's setting changes made
        while the RunEngine was paused (free mode: after Ctrl-C)."""
        if agent is not self._agent:  # a new run: its own spectra and scalarizer
            self._agent, self._spectra, self._scalarizer = agent, [], None
        keep = []
        for action in self._take():
            if action.kind in _SETTINGS:
                yield from self._apply_setting(action, step, "prepare", agent)
            else:
                keep.append(action)
        with self._lock:
            self._queue = keep + self._queue

    def review(
        self, step: int, suggestions: Sequence[dict[str, Any]], agent: Any
    ) -> MsgGenerator[list[dict[str, Any]]]:
        """Plan stub: the suggestions to measure at this step.

        Free mode: the agent's suggestions plus any points the operator added. Approve mode:
        record them, pause, apply the operator's acts on resume, and repeat until the
        operator approves a non-empty list (see the module docstring).
        """
        suggestions = [dict(s) for s in suggestions]
        batch = max(len(suggestions), 1)
        if self._mode == "free":
            for action in self._take():
                if action.kind == "add":
                    point = {"x": action.args["x"], "y": action.args["y"], "source": "operator"}
                    yield from self._record(
                        step, "review", "add", action.who, action.requested, after=point
                    )
                    suggestions.append(point)
                elif action.kind in _SETTINGS:  # made during a hard pause: from the next step
                    yield from self._apply_setting(action, step, "review", agent)
            return suggestions
        with self._lock:
            adds = any(a.kind == "add" for a in self._queue)
        if not suggestions and not adds:
            return []  # the agent has nothing more to suggest: the plan ends
        pending = [_point(s) for s in suggestions]
        vetoed: list[tuple[float, float]] = []
        yield from self._record(step, "review", "suggested", after=pending, detail={"n": batch})
        while True:
            self._pending = pending
            self._asked += 1
            self._say(_describe(step, self.pending))
            try:
                yield from bps.checkpoint()
                yield from bps.pause()
            finally:  # also when the run is aborted while paused: nothing waits any more
                self._pending = None
            approved, changed = False, False
            for action in self._take():
                if action.kind == "approve":
                    approved = True
                    yield from self._record(
                        step, "review", "approve", action.who, action.requested, after=pending
                    )
                elif action.kind in ("veto", "add"):
                    before = [dict(p) for p in pending]
                    pending = _edit(pending, action)
                    if action.kind == "veto":
                        vetoed += [(p["x"], p["y"]) for p in action.args["points"]]
                    yield from self._record(
                        step,
                        "review",
                        action.kind,
                        action.who,
                        action.requested,
                        before,
                        pending,
                        {k: v for k, v in action.args.items()},
                    )
                else:
                    yield from self._apply_setting(action, step, "review", agent)
                    changed = changed or action.kind in ("set_acquisition", "set_scalarizer")
            if self._mode == "free" and pending:
                return pending
            if approved and pending:
                return pending
            if not pending or (changed and not approved):
                # ask the agent again, for as many points as it had pending, avoiding vetoes
                ours = [p for p in pending if p.get("source") == "operator"]
                want = max(batch - len(ours), 1)
                fresh = agent.suggest(want + len(vetoed))
                yield from self._record(
                    step,
                    "review",
                    "suggested",
                    after=[_point(s) for s in fresh],
                    detail={"n": want + len(vetoed)},
                )
                new = [_point(s) for s in fresh if (s["x"], s["y"]) not in set(vetoed)]
                pending = new[:want] + ours
                if not pending:
                    self._say(f"step {step}: the agent has nothing more to suggest")
                    return []
                if self._mode == "free":
                    return pending

    def review_front(self, image: int, agent: Any) -> MsgGenerator[None]:
        """Plan stub for LoG*: apply the operator's front pick; in approve mode pause until
        the operator picks a point (:meth:`pick_front`) or approves the agent's pick."""
        for action in self._take():
            if action.kind in _SETTINGS:
                yield from self._apply_setting(action, image, "front", agent)
        if self._mode != "approve" or not getattr(agent, "front", None):
            return
        while True:
            chosen = getattr(agent.choice, "index", None)
            front = [
                {"index": i, **{k: float(v) for k, v in p.rewards.items()}}
                for i, p in enumerate(agent.front)
            ]
            self._front = {"chosen": chosen, "front": front}
            self._asked += 1
            yield from self._record(image, "front", "front", after=self._front)
            self._say(
                f"image {image}: LoG* front of {len(front)} points, the agent picked #{chosen}; "
                "control.pick_front(index=|weight=) or control.approve(), then RE.resume()"
            )
            try:
                yield from bps.checkpoint()
                yield from bps.pause()
            finally:  # also when the run is aborted while paused
                self._front = None
            done = False
            for action in self._take():
                if action.kind == "approve":
                    done = True
                    yield from self._record(
                        image, "front", "approve", action.who, action.requested, after=chosen
                    )
                elif action.kind in _SETTINGS:
                    yield from self._apply_setting(action, image, "front", agent)
                    done = done or action.kind == "pick_front" or self._mode == "free"
            if done:
                return


def _describe(step: int, pending: list[dict[str, Any]]) -> str:
    lines = [f"step {step}: the agent suggests (nothing is measured without approval):"]
    for p in pending:
        extra = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in p.items()
            if k not in ("index", "x", "y")
        )
        lines.append(f"  {p['index']}: x {p['x']:.1f}, y {p['y']:.1f}  ({extra})")
    lines.append(
        "control.approve() / control.veto(i) / control.add(x, y) / control.set_acquisition(...)"
        ", then RE.resume()"
    )
    return "\n".join(lines)
