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
