"""The plans ``ophyd-stem run`` knows, each with its command-line options.

A plan entry adds its options to an ``argparse`` sub-parser and builds the plan from the
parsed options and a :class:`~ophyd_stem.app.session.Session`. Adaptive workflows register
here as they land; their agents are imported inside ``build`` so ``ophyd-stem runs`` never
loads torch.

The built-in entries are put together from one module per job: their options and what the
options mean, agent settings and queue items (:mod:`.plan_options`); the plans built from the
options (:mod:`.plan_builds`); the lines printed after a run (:mod:`.run_summaries`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from .plan_builds import (
    _build_dcnn,
    _build_dkl,
    _build_edge,
    _build_grid,
    _build_logstar,
    _build_survey,
)
from .plan_options import (
    ZERO_LOSS,
    QueueItem,
    _dcnn_arguments,
    _dkl_arguments,
    _dkl_instrument,
    _edge_arguments,
    _grid_arguments,
    _logstar_arguments,
    _queue_dcnn,
    _queue_dkl,
    _queue_edge,
    _queue_grid,
    _queue_logstar,
    _queue_survey,
    _survey_arguments,
    zero_loss_argument,
)
from .run_summaries import _summarize_dcnn, _summarize_dkl, _summarize_edge, _summarize_logstar

__all__ = ["PLANS", "ZERO_LOSS", "PlanEntry", "QueueItem", "register", "zero_loss_argument"]


@dataclass(frozen=True)
class PlanEntry:
    """One runnable plan.

    Attributes:
        name: the word after ``ophyd-stem run``.
        summary: one line for ``--help``.
        add_arguments: adds the plan's options to its parser.
        build: ``(session, args) -> plan generator``.
        default_sample: the twin sample this workflow is made for.
        example: a command line for ``--help`` (default ``ophyd-stem run NAME``).
        description: more than the summary for ``--help``, when there is more to say.
    """

    name: str
    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    build: Callable[[Any, argparse.Namespace], Generator]
    default_sample: str = "graphene"
    #: extra lines for the summary printed after the run: ``(session, args) -> [str]``
    summarize: Callable[[Any, argparse.Namespace], list[str]] | None = None
    #: twin options this workflow needs (``{"drift": True}``), over the command's own
    twin_options: dict[str, Any] | None = None
    example: str = ""
    description: str = ""
    #: the same experiment as queue items for a re-manager (``--queue``): ``args ->
    #: [(plan name, args, kwargs)]``, every value JSON, devices and agents by name
    queue_items: Callable[[argparse.Namespace], list[QueueItem]] | None = None
    #: the simulated instrument the options ask for instead of the twin, or None:
    #: ``args -> {"backend": name, "options": {...}, "label": str} | None``
    instrument: Callable[[argparse.Namespace], dict[str, Any] | None] | None = None
    #: which of ``--device`` (where agents compute) and ``--compute`` (a Dask cluster) act
    #: for this plan; the others are left out of its options and its help
    computes: tuple[str, ...] = ()


PLANS: dict[str, PlanEntry] = {}


def register(entry: PlanEntry) -> PlanEntry:
    PLANS[entry.name] = entry
    return entry


register(
    PlanEntry(
        "survey",
        "acquire survey image(s) of the current field",
        _survey_arguments,
        _build_survey,
        example="ophyd-stem run survey --sample srtio3 --size 512",
        queue_items=_queue_survey,
    )
)


register(
    PlanEntry(
        "grid",
        "the exhaustive baseline: a survey, then a spectrum at every grid position",
        _grid_arguments,
        _build_grid,
        default_sample="nanowire",
        example="ophyd-stem run grid --rows 64 --cols 64",
        queue_items=_queue_grid,
    )
)


register(
    PlanEntry(
        "logstar",
        "LoG*: unsupervised atom finding with a Pareto front (and EELS at the dopants)",
        _logstar_arguments,
        _build_logstar,
        default_sample="graphene",
        summarize=_summarize_logstar,
        example="ophyd-stem run logstar --eels 5",
        description="LoG*: find atoms without labels; the Pareto front of atom count (QC) "
        "and spacing errors (ER), the choice recorded; GMM classes of atoms; EELS at the "
        "atoms far brighter than the lattice (dopants) with --eels. On the twin the atoms "
        "are scored against the truth.",
        queue_items=_queue_logstar,
        computes=("compute",),  # LoG* windows fan out; the agent is numpy
    )
)


register(
    PlanEntry(
        "edge",
        "edge-guided EELS: spectra only along the edges of the survey image",
        _edge_arguments,
        _build_edge,
        default_sample="nanowire",
        summarize=_summarize_edge,
        example="ophyd-stem run edge --budget 200 --method gradient",
        queue_items=_queue_edge,
    )
)


register(
    PlanEntry(
        "dkl",
        "Deep Kernel Learning: find where the spectral response is strongest",
        _dkl_arguments,
        _build_dkl,
        default_sample="nanoparticles",
        summarize=_summarize_dkl,
        example="ophyd-stem run dkl --steps 30 --acquisition ei --xi 0.5",
        queue_items=_queue_dkl,
        instrument=_dkl_instrument,
        computes=("device",),
    )
)


register(
    PlanEntry(
        "dcnn",
        "ensemble of U-Nets: atoms with uncertainty (and EELS at the uncertain sites)",
        _dcnn_arguments,
        _build_dcnn,
        default_sample="graphene",
        summarize=_summarize_dcnn,
        example="ophyd-stem run dcnn --eels 5",
        description="An ensemble of U-Nets finds atoms with an uncertainty each; EELS at the "
        "most uncertain sites, the brightest atoms or the surest (--target). The first run "
        "trains the default ensemble on twin images (minutes; `ophyd-stem train-ensemble`). "
        "On the twin the atoms are scored against the truth.",
        queue_items=_queue_dcnn,
        computes=("device", "compute"),  # compute: training the default ensemble
    )
)
