"""LoG* in a run: survey image -> reward-driven atom finding -> atoms, front, choice -> EELS."""

from typing import Any, Optional, Union

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Flyable, Readable
from bluesky.utils import MsgGenerator

from ophyd_stem import Record, Table

from ._agents import describe_request, forward_agent, survey_detector
from ._metadata import forward_md, with_scan_field
from ._queue import AGENT, CONTROL, OPTIONAL_FLYER, READABLE, queue_parameters
from .control import OperatorControl
from .operator import resolve_control
from .stubs import (
    eels_at_suggestions,
    instrument_signal,
    read_survey_image,
    record,
    record_table,
    survey_signal,
)
from .zero_loss import ZeroLossStep

__all__ = ["logstar"]


@queue_parameters(scan_engine=READABLE, eels_points=OPTIONAL_FLYER, agent=AGENT, control=CONTROL)
def logstar(
    scan_engine: Readable,
    agent: Any = "logstar",
    *,
    agent_kwargs: Optional[dict[str, Any]] = None,
    images: int = 1,
    eels_points: Optional[Flyable] = None,
    n_eels: int = 0,
    signal: Optional[str] = None,
    control: Union[str, OperatorControl, None] = None,
    zero_loss: Optional[bool] = None,
    pixel_size_nm: Optional[float] = None,
    md: Optional[dict[str, Any]] = None,
) -> MsgGenerator[str]:
    """Find atoms without labels (LoG*), record the Pareto front and the operator's choice,
    and optionally measure EELS at a chosen class of atoms.

    For each of ``images`` survey images: the image goes to the ``survey`` stream; the agent
    optimises (on the first image, or when the pixel size changed) or reuses the parameters
    the operator picked; the front goes to ``logstar_front`` (one event per point, the chosen
    one flagged), the atoms to ``atoms`` (``x`` = column, ``y`` = row, sigma, cluster), and the
    agent's report (parameters, choice and who made it) to ``logstar``, with ``plausible``
    (False when the atoms do not sit where the lattice puts them: a wrong calibration or
    lattice) and ``reason`` (why not, in a few words with the pixel size the image suggests;
    "" when plausible). With ``n_eels`` > 0,
    spectra at the agent's suggested atoms (its ``target`` class, e.g. the brightest: the
    dopants) go to ``primary``.

    Parameters
    ----------
    scan_engine : ophyd_stem.ScanEngine
    agent : "logstar" or agents.logstar.LoGStarAgent
        A registered agent made before the run (``"logstar"``, settings such as
        ``{"lattice": "SrTiO3", "budget": 40}`` in ``agent_kwargs``), or the console's own
        agent; pick a front point between runs with ``agent.select(...)``.
    agent_kwargs : dict, optional
        The named agent's settings.
    images : int
        Survey images to analyse.
    eels_points : ophyd_stem.EELSPoints, optional
        Needed when ``n_eels`` > 0.
    n_eels : int
        Spectra per image at the suggested atoms.
    signal : str, optional
        Detector signal whose image is analysed; its name goes to the agent, whose
        ``contrast="auto"`` takes an ABF or BF image (columns dark) inverted.
        Default (None): HAADF when the scan records it, else its first detector
        (``"survey"`` for a recording whose detector is not named).
    control : plans.OperatorControl or "free" or "approve", optional
        The operator's hand (a mode name: the session's shared control): its front pick
        (``control.pick_front``) is applied to each image, and in approve mode the plan
        pauses at each front and before the EELS points.
    zero_loss : bool, optional
        Zero-loss alignment of the spectra (:mod:`plans.zero_loss`): None (default) on for
        low-loss spectra, True on, False off; ``primary`` keeps them as measured and
        ``zero_loss`` the shifts.
    pixel_size_nm : float, optional
        The survey's true pixel size, nm, where the microscope's calibration is known to be
        wrong: used for every image instead of the calibration the scan reports (which the
        agent would otherwise take over its own setting), and recorded in ``plan_args``, so
        that replays and forensics use it too. None (default): the scan's calibration.
    md : dict, optional
    """
    if n_eels and eels_points is None:
        raise ValueError("n_eels > 0 needs the eels_points device")
    if pixel_size_nm is not None and not (
        isinstance(pixel_size_nm, (int, float)) and 0 < float(pixel_size_nm) < float("inf")
    ):
        raise ValueError(f"pixel_size_nm must be a positive number of nm, got {pixel_size_nm!r}")
    request = describe_request(agent, agent_kwargs)
    agent = forward_agent(agent, agent_kwargs)
    signal = yield from instrument_signal(scan_engine, signal)
    detector = survey_detector(agent, signal)  # ABF/BF: columns dark (contrast="auto")
    control = resolve_control(control)
    # the agent's settings and state at the start go in too, so forensics can rebuild it
    aligner = ZeroLossStep(zero_loss)
    _md = forward_md(
        "logstar", scan_engine, agent, eels_points, images, n_eels, signal, md, request, aligner
    )
    if pixel_size_nm is not None:  # the operator's correction of the scan's calibration
        _md["plan_args"]["pixel_size_nm"] = float(pixel_size_nm)
    report = Record("logstar", hints=["n_atoms"])
    atoms = Table("atoms", units={"x": "px", "y": "px", "sigma": "px"})
    front = Table("logstar_front", stream="logstar_front")

    @bpp.stage_decorator([scan_engine])
    @bpp.run_decorator(md=_md)
    def inner():
        for index in range(images):
            yield from read_survey_image(scan_engine)
            acquisition = scan_engine.last_acquisition
            image = survey_signal(scan_engine, signal)
            px = acquisition.pixel_size if pixel_size_nm is None else float(pixel_size_nm)
            summary = agent.observe(image, pixel_size_nm=px, **detector)
            if control is not None:  # the operator's pick on the front (recorded)
                yield from control.review_front(index, agent)
            table = agent.atoms_table()
            yield from record_table(
                atoms,
                image=np.full(len(table["row"]), index),
                x=table["col"],
                y=table["row"],
                sigma=table["sigma"],
                cluster=table["cluster"],
            )
            points = agent.front
            chosen = agent.choice.index if agent.choice is not None else -1
            if points:
                names = list(points[0].rewards)
                yield from record_table(
                    front,
                    image=np.full(len(points), index),
                    point=np.arange(len(points)),
                    chosen=np.arange(len(points)) == chosen,
                    parameters=[p.params.as_dict() for p in points],
                    **{name: np.array([p.rewards[name] for p in points]) for name in names},
                )
            said = agent.report()
            check = said.get("plausibility") or {}  # None: an agent without the check
            plausible = bool(check.get("ok", True))
            reason = "" if plausible else check.get("reason") or "implausible"
            yield from record(
                report,
                "logstar",
                image=index,
                n_atoms=len(table["row"]),
                optimised=bool(summary["optimised"]),
                chosen=int(chosen),
                plausible=plausible,
                reason=str(reason),
                report=said,
            )
            if n_eels:
                yield from eels_at_suggestions(
                    agent, eels_points, n_eels, control, index, zero_loss=aligner
                )
            yield from bps.checkpoint()

    return (yield from with_scan_field(inner(), scan_engine))
