"""Counterfactuals: what another agent or acquisition function would have chosen.

Given a finished run, :func:`counterfactual` rebuilds the run's agent with one thing
changed (UCB instead of EI, another exploration weight, another window) or swaps in a
baseline (random, raster), feeds it the *recorded* measurements step by step, and notes
where it would have gone at each step instead. The alternative cannot measure (the
microscope is not there), so it is always taught what was really measured: the comparison
is of choices given the same history. A PNG shows both trajectories over the survey image.

Alternatives, as ``name[:key=value,...]``:

=====================  ==================================================================
``ei``, ``ucb``,       the run's DKL agent with this acquisition function, e.g.
``uncertainty``        ``ucb:beta=9``, ``ei:xi=0.1``
``dkl:key=value``      the run's DKL agent with other settings, e.g. ``dkl:window=8``
``bandit``, ``physics``, a bandit, physics-informed GP or latent-space agent on the same
``latent``             survey (``bandit:policy=ucb``, ``physics:acquisition=ei``)
``random``, ``raster`` a random or a raster scan over the same field (``random:seed=3``)
``canny``, ``gradient``  edge runs: the edge agent with this filter (``canny:sigma=3``)
``weight=0.2``,        LoG* runs: another point of the recorded Pareto front
``index=3``
``uncertain``,         DCNN runs: the same ensemble sending the beam to another target
``brightest``,
``confident``
``uncorrected``,       drift-corrected runs: no correction, the other correlation, or the
``phase``, ``cross``,  tracker with other settings (``drift:velocity_window=2``), given the
``drift:key=value``    same re-scans
``latent:key=value``   latent runs: the latent agent with other settings (``n_clusters``,
                       ``mode``), or ``random``, ``raster``
``off``, ``centroid``, any run aligned on the zero-loss peak: no alignment, the other peak
``zlp:key=value``      refinement, another window (``zlp:search=3,max_shift=1``)
=====================  ==================================================================

Example:
    >>> result = counterfactual(catalog[-1], "ucb:beta=9", out_dir="figures")  # doctest: +SKIP
    >>> print(result.text())                                                   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import Agent
from agents.runs import RunData

from .rebuild import after_step, agent_factory, as_run_data, map_steps, survey_detector

__all__ = ["CounterfactualResult", "RandomAgent", "RasterAgent", "counterfactual", "parse"]

ACQUISITIONS = ("ei", "ucb", "uncertainty")
#: alternatives to a run's zero-loss alignment (any run that aligned)
ZERO_LOSS_ALTERNATIVES = ("off", "centroid", "log-parabola", "zlp")
EDGE_METHODS = ("canny", "gradient")


def parse(spec: str) -> tuple[str, dict[str, Any]]:
    """``"ucb:beta=9"`` -> ``("ucb", {"beta": 9.0})``; ``"weight=0.2"`` -> ``("front",
    {"weight": 0.2})``.

    Raises:
        ValueError: a malformed option.
    """
    text = str(spec).strip()
    if text.split(":")[0].startswith(("weight=", "index=")):
        text = "front:" + text
    name, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"counterfactual option {item!r} is not key=value (in {spec!r})")
        options[key.strip()] = _number(value.strip())
    return name.strip().lower(), options


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class RandomAgent(Agent):
    """Uniformly random positions on a grid over the field, never the same one twice.

    Args:
        shape: ``(rows, columns)`` of the survey image.
        step: grid spacing, pixels.
        seed: the random generator's seed.
    """

    name = "random"

    def __init__(self, shape: tuple[int, int], step: int = 1, seed: int = 0) -> None:
        super().__init__()
        ys, xs = np.mgrid[0 : shape[0] : step, 0 : shape[1] : step]
        self.candidates = np.column_stack([xs.ravel(), ys.ravel()]).astype(float)
        self._order = list(np.random.default_rng(seed).permutation(len(self.candidates)))

    def suggest(self, n: int = 1) -> list[dict]:
        measured = {(round(x), round(y)) for x, y in self.positions}
        out = []
        while self._order and len(out) < n:
            x, y = self.candidates[self._order.pop(0)]
            if (round(x), round(y)) not in measured:
                out.append(self.make_suggestion(x, y, source="random"))
        return out

    def report(self) -> dict[str, Any]:
        return {"agent": self.name, "n_measured": len(self.values)}


class RasterAgent(Agent):
    """A raster scan: ``n_points`` evenly spread over the field, row by row.

    Args:
        shape: ``(rows, columns)`` of the survey image.
        n_points: how many positions the scan has (the run's measurement budget).
    """

    name = "raster"

    def __init__(self, shape: tuple[int, int], n_points: int) -> None:
        super().__init__()
        rows, cols = shape
        ny = max(1, round(np.sqrt(n_points * rows / cols)))
        nx = max(1, int(np.ceil(n_points / ny)))
        xs = np.rint((np.arange(nx) + 0.5) * cols / nx - 0.5)
        ys = np.rint((np.arange(ny) + 0.5) * rows / ny - 0.5)
        self.path = [(float(x), float(y)) for y in ys for x in xs][:n_points]

    def suggest(self, n: int = 1) -> list[dict]:
        out, self.path = self.path[:n], self.path[n:]
        return [self.make_suggestion(x, y, source="raster") for x, y in out]

    def report(self) -> dict[str, Any]:
        return {"agent": self.name, "left": len(self.path)}


@dataclass
class CounterfactualResult:
    """What the alternative would have chosen, beside what was recorded.

    Attributes:
        uid, plan_name: the run.
        alternative: the spec, e.g. ``"ucb:beta=9"``.
        recorded, chosen: ``(N, 2)`` positions: measured, and the alternative's choices
            (per step, given the same history).
        steps: the step of each row.
        agree: rows where the alternative chose the recorded position.
        png: the figure of both trajectories.
        summary: numbers for the text (mean distance, best values...).
    """

    uid: str
    plan_name: str | None
    alternative: str
    recorded: np.ndarray
    chosen: np.ndarray
    steps: np.ndarray = field(default_factory=lambda: np.empty(0, int))
    agree: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    png: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        data: RunData,
        recorded: np.ndarray,
        chosen: np.ndarray,
        agree: np.ndarray,
        summary: dict[str, Any],
        steps: np.ndarray | None = None,
    ) -> CounterfactualResult:
        """A result for ``data``'s run (the alternative's name is filled in by the caller);
        without ``steps`` every row counts as step 0."""
        if steps is None:
            steps = np.zeros(len(recorded), int)
        return cls(data.uid, data.plan_name, "", recorded, chosen, steps, agree, summary=summary)

    def text(self) -> str:
        lines = [
            f"counterfactual of {self.uid[:8]} ({self.plan_name}): {self.alternative} instead",
        ]
        lines += [f"  {k:22s} {v}" for k, v in self.summary.items()]
        if self.png is not None:
            lines.append(f"  figure                 {self.png}")
        return "\n".join(lines)


def _adaptive(data: RunData, name: str, options: dict[str, Any]) -> Any:
    image = np.asarray(data.survey_image, dtype=np.float64)
    n_total = len(data.values)
    if name in ACQUISITIONS or name == "dkl":
        overrides = dict(options)
        if name != "dkl":
            overrides["acquisition"] = name
        make, _ = agent_factory(data, **overrides)
        return make(image)
    from .rebuild import REPORTED_AGENTS, reported_agent_class

    alias = {"physics": "physics_gp"}.get(name, name)
    if alias in REPORTED_AGENTS:
        return reported_agent_class(alias)(image, **options)
    if name == "random":
        step = int(options.get("step", 1))
        return RandomAgent(image.shape, step=step, seed=int(options.get("seed", 0)))
    if name == "raster":
        return RasterAgent(image.shape, int(options.get("n_points", n_total)))
    raise ValueError(
        f"unknown alternative {name!r} for an adaptive run: {', '.join(ACQUISITIONS)}, "
        "dkl:key=value, bandit, physics, latent (with key=value), random, raster"
    )


def _run_adaptive(data: RunData, name: str, options: dict[str, Any]) -> CounterfactualResult:
    from plans.control import relabel

    agent = _adaptive(data, name, options)
    dec = data.decisions
    steps = np.asarray(dec.get("step", []), dtype=int)
    recorded = np.column_stack([dec.get("x", []), dec.get("y", [])]).astype(float)
    values = np.asarray(dec.get("value", []), dtype=float)
    chosen = np.full_like(recorded, np.nan)
    relabels = {
        int(iv["step"]): iv for iv in data.interventions if iv.get("kind") == "set_scalarizer"
    }
    mapped = map_steps(data)
    for step in sorted(set(steps.tolist())):
        rows = np.flatnonzero(steps == step)
        if step in relabels and len(agent.values):
            relabel(agent, (relabels[step].get("detail") or {}).get("values", []))
        picks = agent.suggest(len(rows))
        for row, s in zip(rows, picks):
            chosen[row] = (s["x"], s["y"])
        agent.ingest(recorded[rows], values[rows])
        # asked what the plan asks after each step (reports, maps): for the physics agents
        # asking moves their fits on, so the same agent must be asked to choose the same
        after_step(agent, int(step), mapped)
    agree = np.all(np.abs(chosen - recorded) < 0.5, axis=1)
    distance = np.linalg.norm(chosen - recorded, axis=1)
    lookup = {(round(x), round(y)): v for (x, y), v in zip(recorded, values)}
    known = [lookup.get((round(x), round(y))) for x, y in chosen if np.isfinite(x)]
    summary = {
        "steps compared": len(np.unique(steps)),
        "same choice": f"{int(agree.sum())} of {len(agree)}",
        "mean distance (px)": f"{np.nanmean(distance):.1f}" if len(distance) else "-",
        "best recorded value": f"{values.max():.4g}" if len(values) else "-",
        "choices measured anyway": sum(k is not None for k in known),
    }
    return CounterfactualResult.of(data, recorded, chosen, agree, summary, steps)


def _run_edge(data: RunData, name: str, options: dict[str, Any]) -> CounterfactualResult:
    from scipy.spatial import cKDTree

    image = np.asarray(data.survey_image, dtype=np.float64)
    recorded = np.asarray(data.edge_points, dtype=float)
    if name in EDGE_METHODS:
        make, _ = agent_factory(data, method=name, **options)
        chosen = np.asarray(make(image).candidates, dtype=float)
    elif name == "random":
        chosen = _xy(
            RandomAgent(image.shape, seed=int(options.get("seed", 0))).suggest(len(recorded))
        )
    elif name == "raster":
        chosen = _xy(RasterAgent(image.shape, len(recorded)).suggest(len(recorded)))
    else:
        raise ValueError(
            f"unknown alternative {name!r} for an edge run: canny, gradient, random, raster"
        )
    near = cKDTree(chosen).query(recorded)[0] if len(chosen) and len(recorded) else np.array([])
    agree = near <= 1.5
    summary = {
        "points recorded": len(recorded),
        "points alternative": len(chosen),
        "recorded within 1.5 px": f"{int(agree.sum())} of {len(recorded)}",
    }
    return CounterfactualResult.of(data, recorded, chosen, agree, summary)


def _run_dcnn(data: RunData, name: str, options: dict[str, Any]) -> CounterfactualResult:
    """Where the ensemble would have sent the beam with another target."""
    from agents.ensemble import TARGETS

    if name not in TARGETS:
        raise ValueError(f"DCNN counterfactuals pick another target: {', '.join(TARGETS)}")
    n_eels = int(data.plan_args.get("n_eels") or 0)
    if not n_eels:
        raise ValueError("the run measured no EELS: there are no decisions to compare")
    make, _ = agent_factory(data, target=name, **options)
    agent = make(None)
    recorded = np.asarray(data.positions, dtype=float)
    chosen = np.full_like(recorded, np.nan)
    used = 0
    for record in data.dcnn:
        image = np.asarray(data.survey_images[int(record["image"])], dtype=np.float64)
        agent.observe(image, **survey_detector(agent, data))
        picks = _xy(agent.suggest(n_eels))
        rows = slice(used, used + len(picks))
        chosen[rows] = picks[: len(recorded[rows])]
        agent.ingest(recorded[rows], np.zeros(len(recorded[rows])))
        used += len(picks)
    agree = np.all(np.abs(chosen - recorded) < 0.5, axis=1)
    summary = {
        "target recorded": (data.dcnn[0].get("report") or {}).get("target"),
        "target alternative": name,
        "same EELS position": f"{int(agree.sum())} of {len(agree)}",
    }
    return CounterfactualResult.of(data, recorded, chosen, agree, summary)


def _xy(suggestions: list[dict]) -> np.ndarray:
    return np.array([[s["x"], s["y"]] for s in suggestions], dtype=float).reshape(-1, 2)


def _run_logstar(data: RunData, name: str, options: dict[str, Any]) -> CounterfactualResult:
    from agents.contrast import orient
    from agents.logstar.params import LoGParameters
    from agents.logstar.pareto import ParetoPoint, select_point
    from agents.logstar.scalespace import ImageScaleSpaces, prepare_image
    from agents.metrics import match_atoms

    if name != "front":
        raise ValueError("LoG* counterfactuals pick another front point: weight=W or index=I")
    image_index = int(data.front[0].get("image", 0)) if data.front else 0
    rows = [p for p in data.front if int(p.get("image", 0)) == image_index]
    if not rows:
        raise ValueError("the run records no Pareto front")
    rewards = [k for k in rows[0] if k not in ("image", "point", "chosen", "parameters")]
    front = [
        ParetoPoint(
            int(p["point"]), LoGParameters(**p["parameters"]), {r: float(p[r]) for r in rewards}, []
        )
        for p in rows
    ]
    choice = select_point(
        front, index=options.get("index"), weight=options.get("weight"), chooser="counterfactual"
    )
    params = front[choice.index].params
    # the image the way round the run took it (an ABF survey: inverted; before the option
    # and for HAADF: as it came)
    record = next((r for r in data.logstar if int(r.get("image", 0)) == image_index), {})
    taken = ((record.get("report") or {}).get("contrast") or {}).get("contrast") or "bright"
    prepared = prepare_image(orient(data.survey_images[image_index], taken))
    found = ImageScaleSpaces(prepared, params.sigma_step).detect(params)
    atoms = data.atoms
    keep = np.asarray(atoms.get("image", []), dtype=int) == image_index
    recorded = np.column_stack([np.asarray(atoms["x"])[keep], np.asarray(atoms["y"])[keep]])
    chosen = np.asarray(found[:, [1, 0]], dtype=float)
    match = match_atoms(chosen, recorded, max_distance=1.5)
    agree = np.zeros(len(recorded), bool)
    agree[match.pairs[:, 1]] = True
    was = next((int(p["point"]) for p in rows if p.get("chosen")), -1)
    summary = {
        "front point": f"#{choice.index} instead of #{was}",
        "atoms recorded": len(recorded),
        "atoms alternative": len(chosen),
        "shared (1.5 px)": int(match.tp),
    }
    return CounterfactualResult.of(data, recorded, chosen, agree, summary)


def _run_drift(data: RunData, name: str, options: dict[str, Any]) -> CounterfactualResult:
    """Another drift correction given the same re-scans (:mod:`.corrections`)."""
    from .corrections import drift_counterfactual

    got = drift_counterfactual(data, name, options)
    return CounterfactualResult.of(
        data, got["recorded"], got["chosen"], got["agree"], got["summary"]
    )


def _run_zero_loss(data: RunData, name: str, options: dict[str, Any]) -> CounterfactualResult:
    """Another zero-loss setting on the same spectra: the beam went to the same places, so
    the figure shows the positions whose shift changed by more than 0.01 eV."""
    from .corrections import zero_loss_counterfactual

    got = zero_loss_counterfactual(data, name, options)
    recorded = np.asarray(data.positions, dtype=float).reshape(-1, 2)
    same = np.abs(got["shift"] - np.asarray(data.zero_loss["shift"], dtype=float)) <= 0.01
    return CounterfactualResult.of(data, recorded, recorded[~same], same, got["summary"])


def _figure(data: RunData, result: CounterfactualResult, path: Path) -> Path:
    from matplotlib.figure import Figure

    from ..views.counterfactual import draw_counterfactual

    fig = Figure(figsize=(7, 6.5))
    draw_counterfactual(fig, data, result)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def counterfactual(
    run: Any, alternative: str = "ucb", out_dir: str | Path | None = "."
) -> CounterfactualResult:
    """Compare a run's decisions with another agent's or acquisition function's.

    Args:
        run: a tiled run, its documents, or a :class:`~agents.runs.RunData`.
        alternative: see the module docstring (``"ucb:beta=9"``, ``"random"``...).
        out_dir: where the PNG of both trajectories goes (None: no figure).

    Returns:
        The :class:`CounterfactualResult` (``result.text()``, ``result.png``).

    Raises:
        ValueError: an unknown alternative for this kind of run, or a run without the
            streams it needs.
    """
    data = as_run_data(run)
    name, options = parse(alternative)
    if name in ZERO_LOSS_ALTERNATIVES:
        result = _run_zero_loss(data, name, options)
    elif data.plan_name == "drift_corrected_edge_eels":
        result = _run_drift(data, name, options)
    elif data.plan_name == "latent_eels":
        from .latent import latent_counterfactual

        got = latent_counterfactual(data, name, options)
        result = CounterfactualResult.of(
            data, got["recorded"], got["chosen"], got["agree"], got["summary"]
        )
    elif data.plan_name == "adaptive_eels":
        if data.survey_image is None or not len(data.values):
            raise ValueError("the run has no survey image or no decisions to compare with")
        result = _run_adaptive(data, name, options)
    elif data.plan_name == "edge_eels":
        result = _run_edge(data, name, options)
    elif data.plan_name == "logstar":
        result = _run_logstar(data, name, options)
    elif data.plan_name == "dcnn":
        result = _run_dcnn(data, name, options)
    else:
        raise ValueError(f"no decisions to compare in a {data.plan_name!r} run")
    result.alternative = alternative
    if out_dir is not None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in alternative)
        path = Path(out_dir) / f"counterfactual-{data.uid[:8]}-{safe}.png"
        result.png = _figure(data, result, path)
    return result
