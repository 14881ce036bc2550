"""The latent space of a run's survey: recorded (``latent_eels``) or learnt again (any run).

The first seed paper's Figure 4d draws a DKL run's trajectory in the latent space of a
rotation-invariant VAE trained on the survey: where in "feature space" the agent went, step
by step. :func:`latent_space` gives that space for any run with a survey image: a
``latent_eels`` run recorded its latent map (stream ``latent_map``) and is read as it is;
for any other run (DKL, bandit, edge...) a :class:`agents.latent.LatentAgent` is trained on
the recorded survey (seeded, seconds on a CPU) and the run's measured positions are placed in
its space. :func:`trajectory_figure` draws it (``ophyd-stem replay RUN --latent``).

For ``latent_eels`` runs, :func:`latent_checks` (forensics) rebuilds the agent from its
recorded settings and compares the latent map and every EELS position;
:func:`latent_counterfactual` compares the positions another setting (or a random or raster
scan) would have chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agents.runs import RunData, decode_json

__all__ = [
    "latent_checks",
    "latent_counterfactual",
    "latent_factory",
    "latent_space",
    "recorded_latent_map",
    "trajectory_figure",
]

#: latent coordinates closer than this are the same (float32 storage of the map)
Z_TOLERANCE = 1e-5


def recorded_latent_map(data: RunData) -> dict[str, Any] | None:
    """The ``latent_map`` a ``latent_eels`` run recorded (``z``, ``cluster``, ``angle``,
    ``log_density``, ``x``, ``y`` over the candidate grid, and the agent's ``report``), or
    None."""
    stream = data.streams.get("latent_map")
    if stream is None or not len(stream):
        return None
    out: dict[str, Any] = {}
    for key, column in stream.columns.items():
        name = key.split("-", 1)[-1]
        value = column[-1]
        out[name] = decode_json(str(value)) if name == "report" else np.asarray(value)
    return out


def latent_factory(data: RunData, **overrides: Any) -> tuple[Any, dict[str, Any]]:
    """``(make_agent, description)``: the run's latent agent from its recorded settings."""
    from agents.latent import LatentAgent

    recorded = recorded_latent_map(data)
    if recorded is None:
        raise ValueError("the run records no latent map: no latent agent to rebuild")
    config = dict((recorded.get("report") or {}).get("config") or {})
    options = {**config, **overrides}
    return (lambda image: LatentAgent(image, **options)), {"class": "LatentAgent", **options}


def _xy(suggestions: list[dict]) -> np.ndarray:
    return np.array([[s["x"], s["y"]] for s in suggestions], dtype=float).reshape(-1, 2)


def latent_checks(data: RunData, make_agent: Any) -> list[Any]:
    """Forensics of a ``latent_eels`` run: the latent map learnt again from the recorded
    survey (``"latent_map"``: largest difference of the latent coordinates and whether every
    cluster label agrees) and the EELS positions chosen from it (``"points"``)."""
    from .checks import Check

    if data.survey_image is None:
        raise ValueError("the run has no survey image: nothing to rebuild the agent on")
    recorded = recorded_latent_map(data)
    agent = make_agent(np.asarray(data.survey_image, dtype=np.float64))
    again = agent.latent_map()
    z_then, z_now = np.asarray(recorded["z"], float), np.asarray(again["z"], float)
    same_shape = z_then.shape == z_now.shape
    distance = float(np.max(np.abs(z_then - z_now))) if same_shape else float("inf")
    same = same_shape and distance <= Z_TOLERANCE
    same = same and np.array_equal(recorded["cluster"], again["cluster"])
    checks = [Check(0, "latent_map", z_then.shape, z_now.shape, bool(same), distance)]
    recorded_xy = np.column_stack([data.decisions.get("x", []), data.decisions.get("y", [])])
    chosen = _xy(agent.suggest(len(recorded_xy)))
    if chosen.shape != recorded_xy.shape:
        checks.append(Check(1, "points", recorded_xy, chosen, False, float("inf")))
    else:
        gap = float(np.max(np.abs(chosen - recorded_xy), initial=0.0))
        checks.append(Check(1, "points", recorded_xy, chosen, gap <= 1e-6, gap))
    return checks


def latent_counterfactual(data: RunData, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Where another latent setting, or a random or raster scan, would have sent the beam.

    Args:
        name: ``"latent"`` with ``options`` (``n_clusters``, ``mode``, ``seed``...),
            ``"random"`` or ``"raster"``.

    Returns:
        ``{"recorded", "chosen", "agree", "summary"}``.
    """
    from scipy.spatial import cKDTree

    from .counterfactual import RandomAgent, RasterAgent

    image = np.asarray(data.survey_image, dtype=np.float64)
    recorded = np.column_stack([data.decisions.get("x", []), data.decisions.get("y", [])])
    n = len(recorded)
    if name == "latent":
        make, _ = latent_factory(data, **options)
        agent = make(image)
        chosen = _xy(agent.suggest(n))
    elif name == "random":
        chosen = _xy(RandomAgent(image.shape, seed=int(options.get("seed", 0))).suggest(n))
    elif name == "raster":
        chosen = _xy(RasterAgent(image.shape, n).suggest(n))
    else:
        raise ValueError(
            f"unknown alternative {name!r} for a latent run: latent:key=value (n_clusters, "
            "mode, seed...), random, raster"
        )
    near = cKDTree(chosen).query(recorded)[0] if len(chosen) and n else np.array([])
    agree = near <= 1.5
    summary = {"points recorded": n, "points alternative": len(chosen),
               "recorded within 1.5 px": f"{int(agree.sum())} of {n}"}  # fmt: skip
    recorded_map = recorded_latent_map(data)
    if recorded_map is not None and len(recorded):
        clusters = _cluster_at(recorded_map, chosen)
        summary["clusters reached (recorded)"] = len(set(_cluster_at(recorded_map, recorded)))
        summary["clusters reached (alternative)"] = len(set(clusters))
    return {"recorded": recorded, "chosen": chosen, "agree": agree, "summary": summary}


def _cluster_at(latent_map: dict[str, Any], positions: np.ndarray) -> list[int]:
    """The cluster of the candidate nearest each position."""
    xs = np.asarray(latent_map["x"], float).ravel()
    ys = np.asarray(latent_map["y"], float).ravel()
    clusters = np.asarray(latent_map["cluster"]).ravel()
    out = []
    for x, y in np.asarray(positions, float).reshape(-1, 2):
        out.append(int(clusters[np.argmin((xs - x) ** 2 + (ys - y) ** 2)]))
    return out


def latent_space(data: RunData, **agent_kwargs: Any) -> dict[str, Any]:
    """The latent space of the run's survey and the run's positions in it.

    Args:
        data: any run with a survey image.
        agent_kwargs: :class:`agents.latent.LatentAgent` settings when the space is learnt
            again (default: 5 clusters, seed 0).

    Returns:
        ``{"z": (M, d) every candidate patch, "cluster": (M,), "x", "y": (M,) px,
        "trajectory": (N, d) the run's positions in latent space, "trajectory_cluster": (N,),
        "positions": (N, 2) px, "recorded": bool (the run's own map), "report": the agent's}``.

    Raises:
        ValueError: a run without a survey image.
    """
    if data.survey_image is None:
        raise ValueError("the run has no survey image: no latent space to learn")
    positions = np.column_stack([data.decisions.get("x", []), data.decisions.get("y", [])])
    if not len(positions):
        positions = np.asarray(data.positions, dtype=float).reshape(-1, 2)
    recorded = recorded_latent_map(data)
    if recorded is not None:
        z = np.asarray(recorded["z"], float)
        flat = z.reshape(-1, z.shape[-1])
        xs, ys = np.asarray(recorded["x"], float).ravel(), np.asarray(recorded["y"], float).ravel()
        index = [int(np.argmin((xs - x) ** 2 + (ys - y) ** 2)) for x, y in positions]
        clusters = np.asarray(recorded["cluster"]).ravel()
        return {
            "z": flat,
            "cluster": clusters,
            "x": xs,
            "y": ys,
            "trajectory": flat[index] if index else np.empty((0, flat.shape[1])),
            "trajectory_cluster": clusters[index] if index else np.empty(0, int),
            "positions": positions,
            "recorded": True,
            "report": recorded.get("report") or {},
        }
    from agents.latent import LatentAgent, latent_trajectory

    agent = LatentAgent(np.asarray(data.survey_image, dtype=np.float64), **agent_kwargs)
    path = latent_trajectory(agent, positions) if len(positions) else None
    return {
        "z": agent.z,
        "cluster": agent.cluster,
        "x": agent.candidates[:, 0],
        "y": agent.candidates[:, 1],
        "trajectory": path["z"] if path else np.empty((0, agent.z.shape[1])),
        "trajectory_cluster": path["cluster"] if path else np.empty(0, int),
        "positions": positions,
        "recorded": False,
        "report": agent.report(),
    }


def trajectory_figure(data: RunData, out_dir: str | Path, **agent_kwargs: Any) -> Path:
    """Figure 4d for any run: the survey with the measured positions coloured by their
    latent cluster, and the latent space with the run's trajectory; a PNG in ``out_dir``."""
    from matplotlib.figure import Figure

    from ..views.decor import run_title
    from ..views.latent import draw_trajectory

    space = latent_space(data, **agent_kwargs)
    fig = Figure(figsize=(12, 5.2))
    draw_trajectory(fig, data, space)
    origin = "recorded latent map" if space["recorded"] else "rVAE trained on the survey now"
    fig.suptitle(run_title(data.start, f"trajectory in latent space ({origin})", data.uid))
    fig.tight_layout()
    path = Path(out_dir) / f"latent-{data.uid[:8]}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path
