"""Start-document metadata the plans share."""

from typing import Any, Optional

__all__ = [
    "POSITION_DIMENSIONS",
    "agent_description",
    "decision_record",
    "forward_md",
    "with_scan_field",
]

#: plans that measure at scattered beam positions: BestEffortCallback draws the hinted
#: intensity as a scatter over the scan field (x across, y down)
POSITION_DIMENSIONS = [(["stem-beam-x"], "primary"), (["stem-beam-y"], "primary")]


def with_scan_field(plan: Any, scan_engine: Any) -> Any:
    """``plan`` with the scan field in its start document: ``extents`` ``[[x0, x1], [y0, y1]]``
    in px (pixel edges, as :data:`POSITION_DIMENSIONS` orders them), read from the scan
    engine just before the run opens. BestEffortCallback scales its scatter of the measured
    positions to the field instead of to the first point (which warned on every run)."""
    import bluesky.plan_stubs as bps
    import bluesky.preprocessors as bpp

    def add_extents(msg: Any) -> Any:
        if msg.command != "open_run" or "extents" in msg.kwargs:
            return None, None

        def head() -> Any:
            width = yield from bps.rd(scan_engine.width)
            height = yield from bps.rd(scan_engine.height)
            field = [[-0.5, float(width) - 0.5], [-0.5, float(height) - 0.5]]
            return (yield msg._replace(kwargs={**msg.kwargs, "extents": field}))

        return head(), None

    return (yield from bpp.plan_mutator(plan, add_extents))


def decision_record(scalarizer: Any = None, **units: str) -> Any:
    """The ``decision`` recorder of an adaptive plan: one event per measured position.

    Units: positions in px; ``value``, ``predicted_mean`` and ``predicted_std`` in the
    scalarizer's units (``scalarizer.units``: counts for a band, eV for a peak position, ""
    for ratios); ``acquisition`` is the agent's ranking score, dimensionless (its own scale).
    ``value`` is hinted: BestEffortCallback plots it against time, one line per run.
    """
    from ophyd_stem import Record

    value = getattr(scalarizer, "units", None)
    defaults = {"acquisition": ""}
    if value is not None:
        defaults.update(value=value, predicted_mean=value, predicted_std=value)
    return Record("decision", units={**defaults, **units}, hints=["value"])


def agent_description(agent: Any) -> dict[str, Any]:
    """Name, class and settings of an agent, for the start document (forensics rebuilds the
    agent from them). Agents say how they were made with ``config()``; for any other object,
    its public attributes that are plain numbers, strings, booleans or None."""
    if callable(getattr(agent, "config", None)):
        config = agent.config()
    else:
        plain = (bool, int, float, str, type(None))
        config = {
            k: v for k, v in vars(agent).items() if not k.startswith("_") and isinstance(v, plain)
        }
    return {
        "name": getattr(agent, "name", type(agent).__name__),
        "class": repr(agent),
        "config": config,
    }


def forward_md(
    plan_name: str,
    scan_engine: Any,
    agent: Any,
    eels_points: Any,
    images: int,
    n_eels: int,
    signal: str,
    md: Optional[dict[str, Any]],
    request: Optional[dict[str, Any]],
    zero_loss: Any,
) -> dict[str, Any]:
    """The start document of a forward workflow: survey images analysed by an agent, then
    EELS at ``n_eels`` of the sites it picks per image (LoG*, DCNN). ``request``: how the
    plan was asked for its agent (a name and its settings, when queued); ``zero_loss``: the
    plan's :class:`plans.zero_loss.ZeroLossStep`."""
    return {
        "plan_name": plan_name,
        "plan_args": {
            **(request or {}),
            "images": images,
            "n_eels": n_eels,
            "signal": signal,
            "zero_loss": zero_loss.setting,
        },
        "zero_loss": zero_loss.metadata(),
        "agent": agent_description(agent),
        "detectors": [scan_engine.name] + ([eels_points.name] if eels_points is not None else []),
        "num_points": images * max(n_eels, 0),
        "hints": {"dimensions": POSITION_DIMENSIONS},
        **(md or {}),
    }
