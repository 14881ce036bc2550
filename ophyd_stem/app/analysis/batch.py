"""Forensics and counterfactuals in batches: one job per run or per alternative.

Each replay is independent of the others, so a batch runs one job per Dask worker when
given ``compute`` (``"local"``, ``"local:N"``, a scheduler address or a
``distributed.Client``; see :mod:`agents.compute`), else one after the other here. Runs are
unpacked here first (a catalog client does not travel to workers; the unpacked
:class:`~agents.runs.RunData` does). Workers of a remote cluster need ophyd-stem installed,
the same ensembles in their cache (DCNN runs) and, for counterfactual figures, a folder they
can all write to.

Example (needs runs in a catalog and starts a Dask cluster: the test suite does not run
it; ``ophyd-stem replay -1 --forensics --counterfactual ucb`` does the same for one run):
    >>> from ophyd_stem.app.analysis.batch import counterfactuals, forensics_many
    >>> from ophyd_stem.catalog import open_catalog
    >>> catalog = open_catalog()                                          # doctest: +SKIP
    >>> reports = forensics_many([catalog[-2], catalog[-1]], compute="local")  # doctest: +SKIP
    >>> [r.ok for r in reports]                                           # doctest: +SKIP
    [True, True]
    >>> results = counterfactuals(catalog[-1], ["ucb:beta=9", "random", "raster"],
    ...                           compute="local")                        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.compute import fan_out

from .counterfactual import CounterfactualResult, counterfactual
from .forensics import ForensicsReport, as_run_data, forensics

__all__ = ["counterfactuals", "forensics_many"]


def _forensics_job(data: Any) -> ForensicsReport:
    return forensics(data)


def forensics_many(runs: Sequence[Any], *, compute: Any = None) -> list[ForensicsReport]:
    """:func:`~ophyd_stem.app.analysis.forensics.forensics` of every run; reports in order.

    Args:
        runs: tiled runs, document lists or :class:`~agents.runs.RunData`.
        compute: ``None`` (here, one after the other) or a Dask cluster.

    Raises:
        ValueError: a run whose agent cannot be rebuilt (as for one run).
    """
    return fan_out(_forensics_job, [as_run_data(run) for run in runs], compute=compute)


def _counterfactual_job(
    alternative: str, *, data: Any, out_dir: str | None
) -> CounterfactualResult:
    return counterfactual(data, alternative, out_dir=out_dir)


def counterfactuals(
    run: Any,
    alternatives: Sequence[str],
    *,
    out_dir: str | Path | None = ".",
    compute: Any = None,
) -> list[CounterfactualResult]:
    """:func:`~ophyd_stem.app.analysis.counterfactual.counterfactual` for each alternative.

    Args:
        run: a tiled run, its documents, or a :class:`~agents.runs.RunData`.
        alternatives: e.g. ``["ucb:beta=9", "random", "raster"]``.
        out_dir: where each alternative's PNG goes (None: no figures).
        compute: ``None`` (here, one after the other) or a Dask cluster.

    Raises:
        ValueError: an alternative unknown for this kind of run (as for one alternative).
    """
    data = as_run_data(run)
    folder = None if out_dir is None else str(Path(out_dir).resolve())
    return fan_out(
        _counterfactual_job,
        list(alternatives),
        compute=compute,
        shared={"data": data, "out_dir": folder},
    )
