"""Start-document metadata the plans share."""

from typing import Any, Optional

__all__ = ["agent_description", "forward_md"]


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
    request: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """The start document of a forward workflow: survey images analysed by an agent, then
    EELS at ``n_eels`` of the sites it picks per image (LoG*, DCNN). ``request``: how the
    plan was asked for its agent (a name and its settings, when queued)."""
    return {
        "plan_name": plan_name,
        "plan_args": {**(request or {}), "images": images, "n_eels": n_eels, "signal": signal},
        "agent": agent_description(agent),
        "detectors": [scan_engine.name] + ([eels_points.name] if eels_points is not None else []),
        "num_points": images * max(n_eels, 0),
        "hints": {"dimensions": [(["stem-beam-x"], "primary")]},
        **(md or {}),
    }
