"""The forward DCNN workflow: survey image -> U-Net ensemble -> atoms with uncertainty -> EELS."""

from typing import Any, Optional

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Flyable, Readable
from bluesky.utils import MsgGenerator

from ophyd_stem import Record, Table

from ._agents import describe_request, forward_agent, survey_detector
from ._metadata import forward_md, with_scan_field
from ._queue import AGENT, OPTIONAL_FLYER, READABLE, queue_parameters
from .stubs import (
    eels_at_suggestions,
    instrument_signal,
    read_survey_image,
    record,
    record_table,
    survey_signal,
)
from .zero_loss import ZeroLossStep

__all__ = ["dcnn"]


@queue_parameters(scan_engine=READABLE, eels_points=OPTIONAL_FLYER, agent=AGENT)
def dcnn(
    scan_engine: Readable,
    agent: Any = "ensemble",
    *,
    agent_kwargs: Optional[dict[str, Any]] = None,
    images: int = 1,
    eels_points: Optional[Flyable] = None,
    n_eels: int = 0,
    signal: Optional[str] = None,
    zero_loss: Optional[bool] = None,
    md: Optional[dict[str, Any]] = None,
) -> MsgGenerator[str]:
    """Find atoms with an ensemble of U-Nets and measure EELS where the agent says.

    For each of ``images`` survey images: the image goes to ``survey``; the ensemble's mean
    probability and per-pixel variance maps to ``dcnn_maps``; the atoms (``x``, ``y``,
    probability, uncertainty, intensity: the survey's own value at the atom, ``featureless``:
    where the image shows nothing above its noise) to ``atoms``; the agent's report to
    ``dcnn``, with ``plausible`` (False when the atom map is not: noise, vacuum, specks; the
    reasons are in the report's ``plausibility``). With
    ``n_eels`` > 0, spectra at the agent's suggestions -- its ``target``: the most uncertain
    sites (to learn where the network is out of its depth), the brightest atoms (dopants) or
    the most confident ones -- go to ``primary``.

    Parameters
    ----------
    scan_engine : ophyd_stem.ScanEngine
    agent : "ensemble" or agents.ensemble.EnsembleAgent
        A registered agent made before the run (``"ensemble"``, with ``agent_kwargs`` such as
        ``{"ensemble": "default", "target": "brightest"}``: a saved ensemble by name or
        folder), or the console's own agent.
    agent_kwargs : dict, optional
        The named agent's settings.
    images : int
    eels_points : ophyd_stem.EELSPoints, optional
        Needed when ``n_eels`` > 0.
    n_eels : int
        Spectra per image.
    signal : str, optional
        The survey signal the ensemble sees; its name goes to the agent, whose
        ``contrast="auto"`` takes an ABF or BF image (columns dark) inverted.
        Default (None): HAADF when the scan records it, else its first detector
        (``"survey"`` for a recording whose detector is not named).
    zero_loss : bool, optional
        Zero-loss alignment of the spectra (:mod:`plans.zero_loss`): None (default) on for
        low-loss spectra, True on, False off; ``primary`` keeps them as measured and
        ``zero_loss`` the shifts.
    md : dict, optional
    """
    if n_eels and eels_points is None:
        raise ValueError("n_eels > 0 needs the eels_points device")
    request = describe_request(agent, agent_kwargs)
    agent = forward_agent(agent, agent_kwargs)
    signal = yield from instrument_signal(scan_engine, signal)
    detector = survey_detector(agent, signal)  # ABF/BF: columns dark (contrast="auto")
    aligner = ZeroLossStep(zero_loss)
    _md = forward_md(
        "dcnn", scan_engine, agent, eels_points, images, n_eels, signal, md, request, aligner
    )
    maps = Record("dcnn_maps", units={"mean": "", "variance": ""})  # atom probabilities
    report = Record("dcnn", hints=["n_atoms"])
    # intensity: the survey's own mean over each atom's footprint, in its counts (an ABF
    # image's dark columns too: the agent inverts only the copy the members see)
    atoms = Table("atoms", units={"x": "px", "y": "px", "intensity": "counts"})

    @bpp.stage_decorator([scan_engine])
    @bpp.run_decorator(md=_md)
    def inner():
        for index in range(images):
            yield from read_survey_image(scan_engine)
            image = survey_signal(scan_engine, signal)
            prediction = agent.observe(image, **detector)
            yield from record(
                maps,
                "dcnn_maps",
                image=index,
                mean=np.asarray(prediction.mean, dtype=np.float32),
                variance=np.asarray(prediction.variance, dtype=np.float32),
            )
            columns = agent.atoms()
            yield from record_table(atoms, image=np.full(len(columns["x"]), index), **columns)
            summary = agent.report()
            check = summary.get("plausibility") or {}
            yield from record(
                report,
                "dcnn",
                image=index,
                n_atoms=len(columns["x"]),
                plausible=bool(check.get("ok", True)),
                report=summary,
            )
            if n_eels:
                yield from eels_at_suggestions(agent, eels_points, n_eels, zero_loss=aligner)
            yield from bps.checkpoint()

    return (yield from with_scan_field(inner(), scan_engine))
