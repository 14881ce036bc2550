"""``ophyd-stem run`` entries of the seed's missing workflows (issue 15).

- ``bandit``: Thompson sampling / UCB over regions of the survey (``agents.bandit``);
- ``physics``: a pyro GP with an edge-profile mean, its physical parameters' posterior
  reported (``agents.physics``);
- ``latent``: the survey's latent map recorded, then EELS at the cluster representatives
  and novel patches of a rotation-invariant VAE's latent space (``plans.latent``);
- ``drift`` and ``zlp``, the instrument corrections: :mod:`.correction_workflows`.

The bandit and physics agents run in :func:`plans.adaptive_eels` (decisions, reports and
maps recorded as for DKL); agents are imported inside ``build`` so listing the commands
never loads torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Generator
from typing import Any

import numpy as np

from .plan_builds import _setup_scan, scalarizer_for_window
from .plan_options import QueueItem, _scan_arguments, _setup_item
from .registry import PlanEntry, register
from .run_summaries import _band_truth, _twin_truth
from .waits import counting_bar

__all__: list[str] = []


def _adaptive_arguments(parser: argparse.ArgumentParser, steps: int = 30) -> None:
    _scan_arguments(parser, 128)
    parser.add_argument("--steps", type=int, default=steps, help="spectra the agent chooses")
    parser.add_argument(
        "--scalarizer",
        default="auto",
        help="what to maximise, e.g. band:20:30 or edge:420:450:455:475 (eV); auto: the "
        "plasmon band 20-30 eV where the spectrometer's window has it, else the strongest "
        "core-loss edge of the first spectra",
    )


def _run_adaptive(session: Any, args: argparse.Namespace, make) -> Generator:
    from agents.scalarizer_auto import scalarizer_from_spec
    from plans import adaptive_eels

    def make_agent(image):
        args.agent = make(image)
        return args.agent

    yield from _setup_scan(session, args)
    m = session.microscope
    args.scalarizer = yield from scalarizer_for_window(m, args.scalarizer)
    args.scalarizer_in_force = scalarizer_from_spec(args.scalarizer)
    return (
        yield from adaptive_eels(
            m.scan, m.eels_points, make_agent, args.scalarizer_in_force, steps=args.steps
        )
    )


def _queue_adaptive(agent: str, settings: Any) -> Any:
    """``--queue``: the scan settings, then ``adaptive_eels`` with the agent by name."""

    def items(args: argparse.Namespace) -> list[QueueItem]:
        plan_args = ["scan_engine", "eels_points", agent, args.scalarizer]
        kwargs = {"agent_kwargs": settings(args), "steps": args.steps}
        return [*_setup_item(args), ("adaptive_eels", plan_args, kwargs)]

    return items


def _truth_lines(session: Any, args: argparse.Namespace) -> list[str]:
    """The best measured value, and the truth there when the twin knows the target band."""
    agent = args.agent
    values = np.asarray(agent.values)
    if not len(values):
        return ["  measured    nothing"]
    best = int(np.argmax(values))
    x, y = agent.positions[best]
    lines = [f"  best        {values[best]:.4g} at ({x:.1f}, {y:.1f}) px, step {best + 1}"]
    band = _band_truth(session, args, agent.positions)
    if band is not None:
        target, found = band
        lines.append(
            f"  truth       best measured position holds "
            f"{100 * found.max() / target.max():.0f} % of the true maximum"
        )
    return lines


# ---------------------------------------------------------------------- bandit


def _bandit_arguments(parser: argparse.ArgumentParser) -> None:
    _adaptive_arguments(parser)
    parser.add_argument(
        "--policy",
        choices=("thompson", "ucb"),
        default="thompson",
        help="how to pick an arm: Thompson sampling or UCB1",
    )
    parser.add_argument(
        "--arms",
        choices=("clusters", "tiles", "latent"),
        default="clusters",
        help="what an arm is: k-means clusters of the survey's patches, tiles of the field, "
        "or the clusters of a rotation-invariant VAE's latent space (trained on the survey)",
    )
    parser.add_argument("--n-arms", type=int, default=8, help="number of arms")


def _build_bandit(session: Any, args: argparse.Namespace) -> Generator:
    from agents.bandit import BanditAgent

    def make(image):
        # latent arms train an rVAE first (seconds): its bar counts the steps
        with counting_bar("rVAE training", unit="step") as progress:
            return BanditAgent(image, **_bandit_settings(args), progress=progress)

    return (yield from _run_adaptive(session, args, make))


def _bandit_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"arms": args.arms, "n_arms": args.n_arms, "policy": args.policy, "seed": args.seed}


def _cpu_seconds(rvae: dict[str, Any]) -> str:
    """' (N s of CPU)' beside the rVAE's wall time: on a busy machine they differ widely."""
    cpu = rvae.get("train_cpu_seconds")
    return "" if cpu is None else f" ({cpu:.1f} s of CPU)"


def _summarize_bandit(session: Any, args: argparse.Namespace) -> list[str]:
    report = args.agent.report()
    arms = report["arms"]
    pulls = ", ".join(f"{k}: {v['pulls']}" for k, v in arms.items())
    lines = [
        *_truth_lines(session, args),
        f"  arms        pulls per arm {{{pulls}}}; best arm {report['best_arm']}",
    ]
    if "latent" in report:  # --arms latent: the rVAE trained on the survey
        rvae = report["latent"]["rvae"]
        lines.append(
            f"  rVAE        the latent arms' rVAE trained in {rvae['train_seconds']:.1f} s"
            + _cpu_seconds(rvae)
        )
    return lines


# ---------------------------------------------------------------------- physics


def _physics_arguments(parser: argparse.ArgumentParser) -> None:
    _adaptive_arguments(parser, steps=20)
    parser.add_argument(
        "--acquisition",
        choices=("ei", "ucb", "uncertainty"),
        default="ucb",
        help="how to choose: expected improvement, upper confidence bound, most uncertain",
    )
    parser.add_argument("--seeds", type=int, default=5, help="random first measurements")
    parser.add_argument(
        "--hypotheses",
        default=None,
        help="weigh competing models by their evidence, e.g. step,peak,flat (agents.hypotheses;"
        " default: the edge step alone)",
    )


def _hypotheses(args: argparse.Namespace) -> list[str] | None:
    return [h.strip() for h in args.hypotheses.split(",") if h.strip()] if args.hypotheses else None


def _build_physics(session: Any, args: argparse.Namespace) -> Generator:
    # the CPU unless --device (or the config) asks for a GPU: agents.physics
    device = session.config.device or "cpu"
    if _hypotheses(args):
        from agents.hypotheses import HypothesisAgent

        def make(image):
            return HypothesisAgent(image, **_physics_settings(args), device=device)
    else:
        from agents.physics import PhysicsGPAgent

        def make(image):
            return PhysicsGPAgent(image, **_physics_settings(args), device=device)

    return (yield from _run_adaptive(session, args, make))


def _physics_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings = {"acquisition": args.acquisition, "n_seed": args.seeds, "seed": args.seed}
    if _hypotheses(args):
        settings["hypotheses"] = _hypotheses(args)
    return settings


def _queue_physics(args: argparse.Namespace) -> list[QueueItem]:
    name = "hypotheses" if _hypotheses(args) else "physics"
    return _queue_adaptive(name, _physics_settings)(args)


def _posterior(physics: dict[str, Any], scalarizer: str) -> str:
    """The physical parameters' posterior; the agent's "value" (the scalarizer's values)
    named with the scalarizer's unit (counts·eV for a band)."""
    import re

    from .views.figures import scalarizer_label

    label = scalarizer_label(scalarizer)
    unit = re.search(r"\(([^()]*)\)$", label)
    value_unit = unit.group(1) if unit else f"({label})"
    return "; ".join(
        f"{k} {v['mean']:.3g} +- {v['std']:.2g} "
        + (value_unit if v["units"] == "value" else v["units"])
        for k, v in physics.items()
    )


def _most_probable(report: dict[str, Any]) -> str:
    """The hypothesis the evidence favours, or that none is favoured yet: the agent's report
    names the first of equals (before the data tell them apart, all have the prior's p)."""
    ranked = sorted(report["hypotheses"].items(), key=lambda kv: -kv[1]["probability"])
    if len(ranked) > 1 and ranked[0][1]["probability"] - ranked[1][1]["probability"] < 0.01:
        tied = [n for n, h in ranked if ranked[0][1]["probability"] - h["probability"] < 0.01]
        return f"none yet ({', '.join(tied)} equally probable)"
    return str(ranked[0][0])


def _summarize_physics(session: Any, args: argparse.Namespace) -> list[str]:
    report = args.agent.report()
    if "hypotheses" not in report:
        posterior = _posterior(report["physics"], args.scalarizer)
        return [*_truth_lines(session, args), "  posterior   " + posterior]
    lines = [*_truth_lines(session, args), f"  most probable  {_most_probable(report)}"]
    for name, h in sorted(report["hypotheses"].items(), key=lambda kv: -kv[1]["probability"]):
        lines.append(
            f"  {name:9s} p = {h['probability']:.3f}, evidence {h['evidence']:.3f} per "
            f"spectrum; {_posterior(h['physics'], args.scalarizer)}"
        )
    return lines


# ---------------------------------------------------------------------- latent


def _latent_arguments(parser: argparse.ArgumentParser) -> None:
    _scan_arguments(parser, 128)
    parser.add_argument("--eels", type=int, default=10, help="spectra to take")
    parser.add_argument(
        "--scalarizer",
        default="auto",
        help="value recorded with each spectrum, e.g. band:20:30 (eV); auto: that band where "
        "the spectrometer's window has it, else the strongest core-loss edge",
    )
    parser.add_argument("--clusters", type=int, default=5, help="latent-space clusters")
    parser.add_argument(
        "--mode",
        choices=("mixed", "representatives", "novelty"),
        default="mixed",
        help="where EELS goes: cluster representatives, then novelty (mixed), or one of them",
    )


def _build_latent(session: Any, args: argparse.Namespace) -> Generator:
    from agents.latent import LatentAgent
    from plans import latent_eels

    def make_agent(image):
        device = session.config.device or "auto"
        with counting_bar("rVAE training", unit="step") as progress:
            args.agent = LatentAgent(
                image, **_latent_settings(args), device=device, progress=progress
            )
        return args.agent

    yield from _setup_scan(session, args)
    m = session.microscope
    args.scalarizer = yield from scalarizer_for_window(m, args.scalarizer)
    return (
        yield from latent_eels(
            m.scan, m.eels_points, make_agent, n_eels=args.eels, scalarizer=args.scalarizer
        )
    )


def _queue_latent(args: argparse.Namespace) -> list[QueueItem]:
    kwargs = {
        "agent_kwargs": _latent_settings(args),
        "n_eels": args.eels,
        "scalarizer": args.scalarizer,
    }
    return [*_setup_item(args), ("latent_eels", ["scan_engine", "eels_points", "latent"], kwargs)]


def _latent_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"n_clusters": args.clusters, "mode": args.mode, "seed": args.seed}


def _summarize_latent(session: Any, args: argparse.Namespace) -> list[str]:
    report = args.agent.report()
    clusters = report["clusters"]
    lines = [
        f"  clusters    sizes {clusters['sizes']}, spectra per cluster {clusters['measured']}",
        f"  rVAE        trained in {report['rvae']['train_seconds']:.1f} s"
        + _cpu_seconds(report["rvae"]),
    ]
    truth = _twin_truth(session)
    if truth is not None and "labels" in truth:
        labels = np.asarray(truth["labels"])
        pos = np.rint(args.agent.positions).astype(int)
        got = sorted({truth["label_names"][int(v)] for v in labels[pos[:, 1], pos[:, 0]]})
        present = [n for k, n in enumerate(truth["label_names"]) if (labels == k).any()]
        lines.append(f"  truth       spectra on {len(got)} of {len(present)} phases: {got}")
    return lines


register(
    PlanEntry(
        "bandit",
        "bandit agent: Thompson sampling or UCB over regions of the survey",
        _bandit_arguments,
        _build_bandit,
        default_sample="nanoparticles",
        summarize=_summarize_bandit,
        example="ophyd-stem run bandit --policy ucb --n-arms 6",
        queue_items=_queue_adaptive("bandit", _bandit_settings),
    )
)
register(
    PlanEntry(
        "physics",
        "physics-informed GP (pyro): edge-profile mean, posterior of its parameters; or "
        "competing hypotheses weighed by their evidence (--hypotheses)",
        _physics_arguments,
        _build_physics,
        default_sample="nanoparticles",
        summarize=_summarize_physics,
        example="ophyd-stem run physics --steps 20",
        queue_items=_queue_physics,
        computes=("device",),
    )
)
register(
    PlanEntry(
        "latent",
        "rotation-invariant VAE (pyro): EELS at latent-cluster representatives and novelty",
        _latent_arguments,
        _build_latent,
        default_sample="nanoparticles",
        summarize=_summarize_latent,
        example="ophyd-stem run latent --mode novelty",
        queue_items=_queue_latent,
        computes=("device",),
    )
)


from . import correction_workflows  # noqa: E402, F401  (registers drift and zlp)
