"""The plans ``ophyd-stem run`` knows, each with its command-line options.

A plan entry adds its options to an ``argparse`` sub-parser and builds the plan from the
parsed options and a :class:`~ophyd_stem.app.session.Session`. Adaptive workflows register
here as they land; their agents are imported inside ``build`` so ``ophyd-stem runs`` never
loads torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

__all__ = ["PLANS", "PlanEntry", "register"]


@dataclass(frozen=True)
class PlanEntry:
    """One runnable plan.

    Attributes:
        name: the word after ``ophyd-stem run``.
        summary: one line for ``--help``.
        add_arguments: adds the plan's options to its parser.
        build: ``(session, args) -> plan generator``.
        default_sample: the twin sample this workflow is made for.
    """

    name: str
    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    build: Callable[[Any, argparse.Namespace], Generator]
    default_sample: str = "graphene"
    #: extra lines for the summary printed after the run: ``(session, args) -> [str]``
    summarize: Callable[[Any, argparse.Namespace], list[str]] | None = None


PLANS: dict[str, PlanEntry] = {}


def register(entry: PlanEntry) -> PlanEntry:
    PLANS[entry.name] = entry
    return entry


def _scan_arguments(parser: argparse.ArgumentParser, size: int) -> None:
    parser.add_argument("--size", type=int, default=size, help="survey width = height, px")
    parser.add_argument("--dwell", type=float, default=None, help="dwell time per pixel, s")
    parser.add_argument("--fov", type=float, default=None, help="field of view, nm")


def _setup_scan(session: Any, args: argparse.Namespace) -> Generator:
    import bluesky.plan_stubs as bps

    scan = session.microscope.scan
    moves: list[Any] = [scan.width, args.size, scan.height, args.size]
    if args.dwell is not None:
        moves += [scan.dwell_time, args.dwell]
    if args.fov is not None:
        moves += [scan.field_of_view, args.fov]
    yield from bps.mv(*moves)


def _survey_arguments(parser: argparse.ArgumentParser) -> None:
    _scan_arguments(parser, 256)
    parser.add_argument("--num", type=int, default=1, help="number of images")


def _build_survey(session: Any, args: argparse.Namespace) -> Generator:
    from plans import survey

    yield from _setup_scan(session, args)
    return (yield from survey(session.microscope.scan, num=args.num))


def _grid_arguments(parser: argparse.ArgumentParser) -> None:
    _scan_arguments(parser, 128)
    parser.add_argument("--rows", type=int, default=32, help="spectra per column of the grid")
    parser.add_argument("--cols", type=int, default=32, help="spectra per row of the grid")
    parser.add_argument("--exposure", type=float, default=None, help="EELS exposure, s")


def _build_grid(session: Any, args: argparse.Namespace) -> Generator:
    import bluesky.plan_stubs as bps

    from plans import spectrum_image

    yield from _setup_scan(session, args)
    if args.exposure is not None:
        yield from bps.mv(session.microscope.eels.exposure, args.exposure)
    m = session.microscope
    return (yield from spectrum_image(m.scan, m.eels_points, args.rows, args.cols))


register(
    PlanEntry(
        "survey",
        "acquire survey image(s) of the current field",
        _survey_arguments,
        _build_survey,
    )
)
register(
    PlanEntry(
        "grid",
        "the exhaustive baseline: a survey, then a spectrum at every grid position",
        _grid_arguments,
        _build_grid,
        default_sample="nanowire",
    )
)


def _logstar_arguments(parser: argparse.ArgumentParser) -> None:
    _scan_arguments(parser, 256)
    parser.add_argument("--images", type=int, default=1, help="survey images to analyse")
    parser.add_argument("--lattice", default=None, help="graphene or SrTiO3 (default: sample)")
    parser.add_argument("--budget", type=int, default=40, help="LoG* trials per optimisation")
    parser.add_argument(
        "--weight",
        type=float,
        default=0.5,
        help="Pareto choice: 1 = all on the atom count (QC), 0 = all on spacing errors (ER)",
    )
    parser.add_argument("--clusters", type=int, default=2, help="GMM classes of atoms")
    parser.add_argument("--eels", type=int, default=0, help="spectra at the brightest class")


def _build_logstar(session: Any, args: argparse.Namespace) -> Generator:
    from agents.logstar import LoGStarAgent
    from plans import logstar

    lattice = args.lattice or (
        "SrTiO3" if session.config.sample.lower() == "srtio3" else "graphene"
    )
    agent = LoGStarAgent(
        lattice,
        budget=args.budget,
        default_weight=args.weight,
        n_clusters=args.clusters,
        seed=args.seed,
    )
    args.agent = agent
    yield from _setup_scan(session, args)
    m = session.microscope
    return (
        yield from logstar(
            m.scan, agent, images=args.images, eels_points=m.eels_points, n_eels=args.eels
        )
    )


def _summarize_logstar(session: Any, args: argparse.Namespace) -> list[str]:
    agent = args.agent
    report = agent.report()
    lines = [f"  atoms       {report['n_atoms']} found with the chosen LoG parameters"]
    if report.get("clusters"):
        lines.append(f"  classes     {report['clusters'].get('counts')} (GMM)")
    chosen = report.get("chosen") or {}
    front = report.get("front") or []
    if chosen and front:
        point = front[chosen["index"]]
        rewards = ", ".join(f"{k} {v:.3f}" for k, v in point["rewards"].items())
        lines.append(
            f"  front       {len(front)} points; chosen #{chosen['index']} ({rewards}) "
            f"by {chosen['chooser']} ({chosen['method']})"
        )
    return lines


register(
    PlanEntry(
        "logstar",
        "LoG*: unsupervised atom finding with a Pareto front (and EELS at the dopants)",
        _logstar_arguments,
        _build_logstar,
        default_sample="graphene",
        summarize=_summarize_logstar,
    )
)
