"""Agents by name, so a plan queued with JSON arguments can ask for one.

A plan sent to the queueserver travels as JSON: it cannot carry an agent object or a
function. It names the agent instead, with keyword arguments for its constructor::

    adaptive_eels("scan_engine", "eels_points", agent="dkl",
                  agent_kwargs={"acquisition": "ucb", "beta": 9}, scalarizer="band:20:30")

This module maps each name to a *factory* given as ``"module:attribute"`` text. The module is
imported only when an agent of that name is built, at plan run time, so importing this
registry (which plans do) never loads torch: the queueserver lists and validates plans
without the ML stack.

Two kinds of agent, by what they need to be made:

- ``needs_image=True``: made from the run's first survey image, ``factory(image, **kwargs)``
  (DKL, the edge walker): the plan builds them after it has taken the image.
- ``needs_image=False``: made before the run, ``factory(**kwargs)``, and shown images as the run
  goes (LoG*, the U-Net ensemble).

Adding an agent is one call, in the module that defines it or in a startup file::

    >>> register_agent("bandit", "agents.bandit:BanditAgent",
    ...                "Thompson sampling over regions of the survey image")   # doctest: +SKIP

Keyword arguments must be JSON values (numbers, strings, booleans, None, lists, dicts); a
factory that needs richer objects converts them itself. See
docs/decisions/0008-agents-by-name.md.
"""

import importlib
import inspect
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Union

__all__ = [
    "AGENTS",
    "AgentEntry",
    "agent_entry",
    "agent_factory",
    "make_agent",
    "register_agent",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class AgentEntry:
    """One agent that plans can ask for by name.

    Attributes:
        name: what a plan's ``agent=`` says, e.g. ``"dkl"``.
        factory: ``"module:attribute"`` (imported when first built) or a callable.
        summary: one line for listings (``ophyd-stem agents``, docs).
        needs_image: made from the survey image (``factory(image, **kwargs)``) rather than
            before the run (``factory(**kwargs)``).
    """

    name: str
    factory: Union[str, Callable[..., Any]]
    summary: str = ""
    needs_image: bool = True

    def load(self) -> Callable[..., Any]:
        """The factory itself (imports its module the first time).

        Raises:
            ImportError: the module is missing (an extra not installed, say ``ml``).
        """
        if callable(self.factory):
            return self.factory
        module, _, attribute = self.factory.partition(":")
        target: Any = _import_module(module)
        for part in attribute.split("."):
            target = getattr(target, part)
        return target


logger = logging.getLogger(__name__)


def _import_module(module: str, attempts: int = 3) -> Any:
    """``importlib.import_module``, tried again when another thread's imports cut it short.

    An agent's module is imported when a plan first builds it, in the RunEngine's thread,
    while the catalog writer's thread may be importing too (tiled, pandas, pyarrow). Two
    threads each inside a module the other needs make Python raise ``_DeadlockError`` (a
    RuntimeError) in one of them; the modules it was importing are dropped from
    ``sys.modules``, so importing again once the other thread is done succeeds, where giving
    up would fail the plan (and stop a queueserver's queue).
    """
    for attempt in range(1, attempts + 1):
        try:
            return importlib.import_module(module)
        except RuntimeError as error:  # (_DeadlockError is a RuntimeError)
            if "deadlock" not in str(error).lower() or attempt == attempts:
                raise
            logger.warning("importing %s was cut short (%s); trying again", module, error)
            time.sleep(0.2 * attempt)  # (let the other thread's imports finish)
    raise AssertionError("unreachable")


#: name -> entry; add with :func:`register_agent`
AGENTS: Dict[str, AgentEntry] = {}


def register_agent(
    name: str,
    factory: Union[str, Callable[..., Any]],
    summary: str = "",
    *,
    needs_image: bool = True,
    replace: bool = False,
) -> AgentEntry:
    """Make an agent available to plans by name.

    Args:
        name: lower-case letters, digits and ``_``, starting with a letter.
        factory: ``"module:attribute"`` (preferred: nothing is imported now) or a callable;
            returns the agent.
        summary: one line saying what it does, in the microscopist's words.
        needs_image: ``factory(survey_image, **kwargs)`` when True, ``factory(**kwargs)``
            when False.
        replace: allow replacing an existing entry of the same name.

    Raises:
        ValueError: a malformed name or target, or a name already taken.

    Example:
        >>> entry = register_agent("dkl_copy", "agents.dkl:DKLAgent", "DKL under another name")
        >>> entry.needs_image
        True
        >>> del AGENTS["dkl_copy"]
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"agent name must be lower-case letters, digits or '_' starting with a letter, "
            f"got {name!r}"
        )
    if not callable(factory) and not (isinstance(factory, str) and _TARGET.match(factory)):
        raise ValueError(f"agent factory must be 'module:attribute' or a callable, got {factory!r}")
    if name in AGENTS and not replace and AGENTS[name].factory != factory:
        raise ValueError(f"agent {name!r} is already registered ({AGENTS[name].factory})")
    entry = AgentEntry(name, factory, summary, needs_image)
    AGENTS[name] = entry
    return entry


def agent_entry(name: str) -> AgentEntry:
    """The registered agent called ``name``.

    Raises:
        ValueError: no such agent; the message lists the known names.
    """
    try:
        return AGENTS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(AGENTS))
        raise ValueError(f"unknown agent {name!r}; known agents: {known}") from None


def _check_kwargs(entry: AgentEntry, kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"agent_kwargs for {entry.name!r} must be a dict of names, got {kwargs!r}")
    return dict(kwargs)


def _takes(entry: AgentEntry, parameter: str) -> bool:
    """Whether the agent's constructor has a parameter of this name."""
    try:
        return parameter in inspect.signature(entry.load()).parameters
    except (TypeError, ValueError):
        return False


def _build(entry: AgentEntry, args: tuple, kwargs: Dict[str, Any]) -> Any:
    factory = entry.load()
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C callable: let the call say it
        signature = None
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            accepted = [
                p.name
                for p in list(signature.parameters.values())[len(args) :]
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            raise ValueError(
                f"agent {entry.name!r} ({entry.factory}): {exc}; it takes {accepted}"
            ) from None
    return factory(*args, **kwargs)


def make_agent(name: str, survey_image: Any = None, **kwargs: Any) -> Any:
    """Build the agent called ``name``.

    Args:
        name: a registered name (:data:`AGENTS`).
        survey_image: the image, for agents made from one (``needs_image``); must be None
            for the others.
        kwargs: the agent's constructor arguments.

    Raises:
        ValueError: unknown name, an argument the agent does not take, or an image given to
            (or missing for) an agent that does not take (or needs) one.

    Example:
        >>> import numpy as np
        >>> agent = make_agent("edge", np.eye(32), budget=10)
        >>> type(agent).__name__
        'EdgeAgent'
    """
    entry = agent_entry(name)
    kwargs = _check_kwargs(entry, kwargs)
    if entry.needs_image:
        if survey_image is None:
            raise ValueError(f"agent {name!r} is made from a survey image; none was given")
        return _build(entry, (survey_image,), kwargs)
    if survey_image is not None:
        raise ValueError(f"agent {name!r} is made before the run and takes no survey image")
    return _build(entry, (), kwargs)


def agent_factory(name: str, kwargs: Optional[Mapping[str, Any]] = None) -> Callable[[Any], Any]:
    """``make_agent(image)`` for the agent called ``name``: what plans that build their agent
    from the survey image take. Checks the name now, imports the agent when it is called.

    Raises:
        ValueError: unknown name, or an agent that is not made from an image.
    """
    entry = agent_entry(name)
    if not entry.needs_image:
        raise ValueError(
            f"agent {name!r} is made before the run, not from a survey image: "
            "use it with the plans that take an agent (logstar, dcnn)"
        )
    options = _check_kwargs(entry, kwargs or {})

    def build(survey_image: Any, detector: Optional[str] = None) -> Any:
        # the survey detector's name goes to an agent that reads it (DKL: bright or dark
        # objects), unless the caller's keyword arguments already say
        chosen = dict(options)
        if detector is not None and "detector" not in chosen and _takes(entry, "detector"):
            chosen["detector"] = detector
        return make_agent(name, survey_image, **chosen)

    build.__name__ = name
    build.__qualname__ = name
    return build


# The agents of this project. Plans that take a survey-image agent: adaptive_eels, edge_eels;
# plans that take an agent made before the run: logstar, dcnn.
register_agent(
    "dkl",
    "agents.dkl:DKLAgent",
    "Deep Kernel Learning: learns where the spectral response is strongest (EI, UCB, ...)",
)
register_agent(
    "edge",
    "agents.edges:EdgeAgent",
    "Edges of the survey image: a short beam path along interfaces",
)
register_agent(
    "bandit",
    "agents.bandit:BanditAgent",
    "Bandit over regions of the survey image (Thompson sampling or UCB1)",
)
register_agent(
    "physics",
    "agents.physics:PhysicsGPAgent",
    "Physics-informed GP: an edge-profile mean with priors; posterior of the physical parameters",
)
register_agent(
    "hypotheses",
    "agents.hypotheses:HypothesisAgent",
    "Competing physical hypotheses (edge step, edge peak, no edge) weighed by their evidence",
)
register_agent(
    "latent",
    "agents.latent:LatentAgent",
    "Latent-space discovery: cluster representatives, then novelty, in a rotation-invariant VAE",
)
register_agent(
    "logstar",
    "agents.logstar:LoGStarAgent",
    "LoG*: unsupervised atom finding with a Pareto front of detector settings",
    needs_image=False,
)
register_agent(
    "ensemble",
    "agents.ensemble:EnsembleAgent",
    "U-Net ensemble: atoms with uncertainty; EELS at uncertain, bright or sure sites",
    needs_image=False,
)
