"""Discovery in feature space, forward: EELS where the survey's latent space says "different".

Forward method 2 of the first seed paper: the survey's patches are encoded by a
rotation-invariant VAE, the latent space is clustered, and spectra go to one representative
of each kind of structure (largest cluster first), then to the patches least like anything
else (novelty) -- all decided from the image, before any spectrum. The agent is named
(``agent="latent"``, :class:`agents.latent.LatentAgent`, settings in ``agent_kwargs``) or, in
the console, given as ``agent(image) -> agent`` with ``suggest``, ``ingest``, ``report`` and
``latent_map``.

Records: ``survey``; ``latent_map`` (one event: the latent coordinates ``z``, the cluster,
the rotation angle and the log-density of every candidate patch as images over the candidate
grid, the grid's ``x``/``y`` in px, and the agent's report with how it was made); ``primary``
(the spectra); ``decisions`` (one per spectrum: position, cluster, latent coordinates
``z0``, ``z1``..., ``representative`` or ``novelty``, and the scalarizer's value when one is
given); with
zero-loss alignment, ``zero_loss`` (:mod:`plans.zero_loss`).
"""

from typing import Any, Optional, Union

import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Flyable, Readable
from bluesky.utils import MsgGenerator

from ophyd_stem import Record

from ._agents import AgentFactory, Scalarizer, describe_request, image_agent, scalarizer_of
from ._metadata import POSITION_DIMENSIONS, decision_record, with_scan_field
from ._queue import AGENT, FLYER, READABLE, SCALARIZER, queue_parameters
from .stubs import (
    acquire_spectra_at_points,
    instrument_signal,
    read_survey_image,
    record,
    survey_signal,
)
from .zero_loss import ZeroLossStep

__all__ = ["latent_eels"]


@queue_parameters(scan_engine=READABLE, eels_points=FLYER, agent=AGENT, scalarizer=SCALARIZER)
def latent_eels(
    scan_engine: Readable,
    eels_points: Flyable,
    agent: Union[str, AgentFactory] = "latent",
    *,
    agent_kwargs: Optional[dict[str, Any]] = None,
    n_eels: int = 10,
    scalarizer: Union[str, Scalarizer, None] = None,
    signal: Optional[str] = None,
    zero_loss: Optional[bool] = None,
    md: Optional[dict[str, Any]] = None,
) -> MsgGenerator[str]:
    """Survey, its latent map, then EELS at the cluster representatives and novel patches.

    Parameters
    ----------
    scan_engine, eels_points : the microscope's scan engine and multi-point EELS device
    agent : str or callable
        A registered agent made from the survey image with a latent map (default
        ``"latent"``; settings in ``agent_kwargs`` such as ``{"n_clusters": 5, "seed": 0}``),
        or ``agent(survey_image)``.
    agent_kwargs : dict, optional
        The named agent's settings.
    n_eels : int
        Spectra to take (representatives first, then novelty).
    scalarizer : str or callable, optional
        A scalarizer spec (``"band:20:30"``) or ``scalarizer(spectra, energy_axis)``; its
        value is recorded with each decision.
    signal : str, optional
        The survey signal the latent space is learnt from.
        Default (None): HAADF when the scan records it, else its first detector
        (``"survey"`` for a recording whose detector is not named).
    zero_loss : bool, optional
        Zero-loss alignment (:mod:`plans.zero_loss`): None (default) on for low-loss spectra.
    """
    if n_eels < 1:
        raise ValueError("n_eels must be >= 1")
    make_agent = image_agent(agent, agent_kwargs)
    scalarizer = scalarizer_of(scalarizer)
    aligner = ZeroLossStep(zero_loss)
    signal = yield from instrument_signal(scan_engine, signal)
    _md = {
        "plan_name": "latent_eels",
        "plan_args": {
            **describe_request(agent, agent_kwargs),
            "n_eels": n_eels,
            "signal": signal,
            "scalarizer": getattr(scalarizer, "__name__", None),
            "zero_loss": zero_loss,
        },
        "zero_loss": aligner.metadata(),
        "detectors": [scan_engine.name, eels_points.name],
        "num_points": n_eels,
        "hints": {"dimensions": POSITION_DIMENSIONS},
        **(md or {}),
    }
    # z: latent coordinates, dimensionless like the log-density of the latent mixture
    latent_record = Record("latent", units={"x": "px", "y": "px", "angle": "rad", "z": ""})
    # latent coordinates (z0, z1, ...; a handful) and the log density are dimensionless
    decisions = decision_record(scalarizer, log_density="", **{f"z{k}": "" for k in range(16)})

    @bpp.stage_decorator([scan_engine])
    @bpp.run_decorator(md=_md)
    def inner():
        yield from read_survey_image(scan_engine)
        agent = make_agent(survey_signal(scan_engine, signal))
        if not callable(getattr(agent, "latent_map", None)):
            raise ValueError(f"agent {agent!r} has no latent map: latent_eels needs one")
        maps = agent.latent_map()
        yield from record(
            latent_record, "latent_map", **{k: np.asarray(v) for k, v in maps.items()},
            report=agent.report(),
        )  # fmt: skip
        suggestions = agent.suggest(n_eels)
        if not suggestions:
            return
        positions = np.array([[s["x"], s["y"]] for s in suggestions], dtype=np.float64)
        acquisition = yield from acquire_spectra_at_points(
            eels_points, positions, zero_loss=aligner
        )
        values = np.full(len(positions), np.nan)
        if scalarizer is not None:
            values = np.atleast_1d(
                np.asarray(scalarizer(acquisition.spectra, acquisition.energy_axis), float)
            )
        agent.ingest(acquisition.positions, np.nan_to_num(values))
        for i, (s, (x, y)) in enumerate(zip(suggestions, acquisition.positions)):
            yield from record(
                decisions,
                "decisions",
                step=i + 1,
                x=float(x),
                y=float(y),
                value=float(values[i]),
                cluster=int(s.get("cluster", -1)),
                # one column per latent coordinate (z0, z1, ...): a catalog on SQLite keeps
                # arrays this small in its event table, which has no column type for them
                **{f"z{k}": float(v) for k, v in enumerate(np.ravel(s.get("z", [])))},
                log_density=float(s.get("log_density", np.nan)),
                source=str(s.get("source", "agent")),
            )

    return (yield from with_scan_field(inner(), scan_engine))
