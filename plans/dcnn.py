"""The forward DCNN workflow: survey image -> U-Net ensemble -> atoms with uncertainty -> EELS."""

from __future__ import annotations

from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.utils import MsgGenerator

from ophyd_stem import Record, Table

from ._metadata import forward_md
from .stubs import eels_at_suggestions, read_survey_image, record, record_table

__all__ = ["dcnn"]


def dcnn(
    scan: Any,
    agent: Any,
    *,
    images: int = 1,
    eels_points: Any = None,
    n_eels: int = 0,
    signal: str = "HAADF",
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Find atoms with an ensemble of U-Nets and measure EELS where the agent says.

    For each of ``images`` survey images: the image goes to ``survey``; the ensemble's mean
    probability and per-pixel variance maps to ``dcnn_maps``; the atoms (``x``, ``y``,
    probability, uncertainty, intensity) to ``atoms``; the agent's report to ``dcnn``. With
    ``n_eels`` > 0, spectra at the agent's suggestions -- its ``target``: the most uncertain
    sites (to learn where the network is out of its depth), the brightest atoms (dopants) or
    the most confident ones -- go to ``primary``.

    Parameters
    ----------
    scan : ophyd_stem.ScanEngine
    agent : agents.ensemble.EnsembleAgent
    images : int
    eels_points : ophyd_stem.EELSPoints, optional
        Needed when ``n_eels`` > 0.
    n_eels : int
        Spectra per image.
    signal : str
        The survey signal the ensemble sees.
    md : dict, optional
    """
    if n_eels and eels_points is None:
        raise ValueError("n_eels > 0 needs the eels_points device")
    _md = forward_md("dcnn", scan, agent, eels_points, images, n_eels, signal, md)
    maps = Record("dcnn_maps")
    report = Record("dcnn")
    atoms = Table("atoms", units={"x": "px", "y": "px"})

    @bpp.stage_decorator([scan])
    @bpp.run_decorator(md=_md)
    def inner():
        for index in range(images):
            yield from read_survey_image(scan)
            acquisition = scan.last_acquisition
            prediction = agent.observe(np.asarray(acquisition.images[signal], dtype=np.float64))
            yield from record(
                maps,
                "dcnn_maps",
                image=index,
                mean=np.asarray(prediction.mean, dtype=np.float32),
                variance=np.asarray(prediction.variance, dtype=np.float32),
            )
            columns = agent.atoms()
            yield from record_table(atoms, image=np.full(len(columns["x"]), index), **columns)
            yield from record(report, "dcnn", image=index, report=agent.report())
            if n_eels:
                yield from eels_at_suggestions(agent, eels_points, n_eels)
            yield from bps.checkpoint()

    return (yield from inner())
