"""Agents and scalarizers as plans receive them: a registered name (JSON, queueable) or, in the
console, the Python object itself.

Names are looked up in :mod:`agents.registry` and :mod:`agents.scalarizers`, both light: the
agent's own module (torch, say) is imported only when the agent is built, as the plan runs.
"""

from typing import Any, Callable, Optional, Union

import numpy as np

__all__ = [
    "AgentFactory",
    "Scalarizer",
    "agent_from_survey",
    "describe_request",
    "forward_agent",
    "image_agent",
    "scalarizer_of",
    "survey_detector",
]

#: ``agent(survey_image) -> agent``
AgentFactory = Callable[[np.ndarray], Any]
#: ``scalarizer(spectra, energy_axis) -> values``
Scalarizer = Callable[[np.ndarray, np.ndarray], Any]


def _no_kwargs_with_objects(kwargs: Optional[dict[str, Any]]) -> None:
    if kwargs:
        raise ValueError("agent_kwargs go with an agent given by name (e.g. agent='dkl')")


def image_agent(agent: Union[str, AgentFactory], kwargs: Optional[dict[str, Any]]) -> AgentFactory:
    """The factory of an agent made from the survey image: from a registered name (with its
    keyword arguments), or the console's own ``agent(image) -> agent``.

    Raises:
        ValueError: an unknown name, an agent made before the run, or something else.
    """
    if isinstance(agent, str):
        from agents.registry import agent_factory  # light: the agent loads when built

        return agent_factory(agent, kwargs)
    if not callable(agent):
        raise ValueError(f"agent must be a registered name or agent(image) -> agent: {agent!r}")
    _no_kwargs_with_objects(kwargs)
    return agent


def forward_agent(agent: Any, kwargs: Optional[dict[str, Any]]) -> Any:
    """An agent made before the run (LoG*, the ensemble): built now from a registered name and
    its keyword arguments, or the console's own agent object as it is.

    Raises:
        ValueError: an unknown name or an agent that needs the survey image.
    """
    if isinstance(agent, str):
        from agents.registry import make_agent

        return make_agent(agent, **(kwargs or {}))
    _no_kwargs_with_objects(kwargs)
    return agent


def scalarizer_of(scalarizer: Union[str, Scalarizer, None]) -> Optional[Scalarizer]:
    """A scalarizer from its spec (``"band:20:30"``), or the callable as it is.

    Raises:
        ValueError: an unknown or malformed spec (the message lists the known ones).
    """
    if scalarizer is None or callable(scalarizer):
        return scalarizer
    # numpy only; "auto" and "despike:auto" as the object that says what it chose
    from agents.scalarizer_auto import scalarizer_from_spec

    return scalarizer_from_spec(scalarizer)


def describe_request(agent: Any, kwargs: Optional[dict[str, Any]]) -> dict[str, Any]:
    """How the plan was asked for its agent, for the start document's ``plan_args``."""
    if isinstance(agent, str):
        return {"agent": agent, "agent_kwargs": dict(kwargs or {})}
    return {"agent": getattr(agent, "__name__", type(agent).__name__)}


def agent_from_survey(make_agent: AgentFactory, image: Any, signal: str) -> Any:
    """The agent made from the survey image, told the survey detector's name when its
    factory takes one (a registered agent that reads it, DKL: the specimen's objects bright
    on HAADF, dark on ABF or BF); a console's ``agent(image)`` is called as it is."""
    if _takes_detector(make_agent):
        return make_agent(image, detector=signal)
    return make_agent(image)


def survey_detector(agent: Any, signal: str) -> dict[str, Any]:
    """``{"detector": signal}`` for an agent whose ``observe`` takes the survey detector's
    name (LoG*, the ensemble: under ``contrast="auto"`` an ABF or BF survey shows the
    columns dark), else nothing: a console's own agent keeps its own ``observe``."""
    return {"detector": signal} if _takes_detector(getattr(agent, "observe", None)) else {}


def _takes_detector(call: Any) -> bool:
    """Whether ``call`` has a ``detector`` parameter (False for what is not callable, or
    has no signature Python can read)."""
    import inspect

    try:
        return "detector" in inspect.signature(call).parameters
    except (TypeError, ValueError):
        return False
