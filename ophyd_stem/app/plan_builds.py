"""The built-in plans, built from the command's options and a session (``PlanEntry.build``).

Bluesky, the plans and the agents are imported inside each build, so listing the commands
loads none of them (nor torch).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Generator
from typing import Any

from .plan_options import (
    ZERO_LOSS,
    _contrast_setting,
    _dkl_scalarizer,
    _dkl_settings,
    _edge_settings,
    _logstar_settings,
    logstar_plan_pixel_size,
)

__all__: list[str] = []


def _setup_scan(session: Any, args: argparse.Namespace) -> Generator:
    import bluesky.plan_stubs as bps

    scan = session.microscope.scan
    moves: list[Any] = []
    if args.size is not None:  # None: the field stays as it is (a recording fixes it)
        moves += [scan.width, args.size, scan.height, args.size]
    if args.dwell is not None:
        moves += [scan.dwell_time, args.dwell]
    if args.fov is not None:
        moves += [scan.field_of_view, args.fov]
    if moves:
        yield from bps.mv(*moves)


def scalarizer_for_window(microscope: Any, spec: str) -> Generator[Any, Any, str]:
    """The scalarizer spec with ``auto`` (alone or after ``despike:``) made ``band:20:30``
    when the spectrometer's energy window covers that plasmon band, so the run records the
    band it used; otherwise as it is, and the plan's ``auto`` chooses from the first spectra
    (the strongest core-loss edge; :mod:`agents.scalarizer_auto`)."""
    import bluesky.plan_stubs as bps

    from agents.scalarizer_auto import plasmon_band

    head, _, last = spec.rpartition(":")
    if last != "auto":
        return spec
    eels = microscope.eels
    offset = yield from bps.rd(eels.energy_offset)  # eV
    dispersion = yield from bps.rd(eels.dispersion)  # eV/channel
    binning = yield from bps.rd(eels.binning)
    channels = yield from bps.rd(eels.channels)
    band = plasmon_band(offset, offset + dispersion * binning * (channels - 1))
    if band is None:
        return spec
    return f"{head}:{band}" if head else band


def _build_survey(session: Any, args: argparse.Namespace) -> Generator:
    from plans import survey

    yield from _setup_scan(session, args)
    return (yield from survey(session.microscope.scan, num=args.num))


def _build_grid(session: Any, args: argparse.Namespace) -> Generator:
    import bluesky.plan_stubs as bps

    from plans import spectrum_image

    yield from _setup_scan(session, args)
    if args.exposure is not None:
        yield from bps.mv(session.microscope.eels.exposure, args.exposure)
    m = session.microscope
    return (
        yield from spectrum_image(
            m.scan, m.eels_points, args.rows, args.cols, zero_loss=ZERO_LOSS[args.zero_loss]
        )
    )


def _build_logstar(session: Any, args: argparse.Namespace) -> Generator:
    from agents.logstar import LoGStarAgent
    from plans import logstar

    agent = LoGStarAgent(
        **_logstar_settings(args, session.config.sample),
        progress=True,
        compute=session.config.compute,
    )
    told = logstar_plan_pixel_size(args.pixel_size)
    return (yield from _atom_plan(session, args, logstar, agent, **told))


def _atom_plan(
    session: Any, args: argparse.Namespace, plan: Callable, agent: Any, **kwargs: Any
) -> Generator:
    """An atom-finding plan (``logstar``, ``dcnn``) with its agent: the scan set up, the
    agent kept for the summary, EELS at the agent's atoms when the options ask for it, the
    survey detector's name passed on (an ABF survey shows the columns dark)."""
    args.agent = agent
    yield from _setup_scan(session, args)
    m = session.microscope
    signal = yield from _survey_signal(m, args)
    return (
        yield from plan(
            m.scan,
            agent,
            images=args.images,
            eels_points=m.eels_points,
            n_eels=args.eels,
            signal=signal,
            **kwargs,
        )
    )


def _survey_signal(microscope: Any, args: argparse.Namespace) -> Generator:
    """``--signal`` (recorded too, when the scan did not record it yet: the instrument
    says if it has no such detector), or HAADF when the instrument has it, else its first
    detector (a recording with only an ABF image, say)."""
    import bluesky.plan_stubs as bps

    signals = list((yield from bps.rd(microscope.scan.signals)) or ["HAADF"])
    if args.signal is None:
        return "HAADF" if "HAADF" in signals else signals[0]
    if args.signal not in signals:
        yield from bps.mv(microscope.scan.signals, [*signals, args.signal])
    return args.signal


def _build_edge(session: Any, args: argparse.Namespace) -> Generator:
    from agents.edges import EdgeAgent
    from plans import edge_eels

    scalarizer = None
    if args.scalarizer:
        from agents.scalarizers import get_scalarizer

        scalarizer = get_scalarizer(args.scalarizer)

    def make_agent(image):
        args.agent = EdgeAgent(image, **_edge_settings(args))
        return args.agent

    yield from _setup_scan(session, args)
    m = session.microscope
    return (yield from edge_eels(m.scan, m.eels_points, make_agent, scalarizer=scalarizer))


def _build_dkl(session: Any, args: argparse.Namespace) -> Generator:
    from agents.dkl import DKLAgent
    from agents.scalarizer_auto import scalarizer_from_spec
    from plans import adaptive_eels

    # (the summary reads the spec in force: "auto" made a band where the window has it)
    args.scalarizer = yield from scalarizer_for_window(session.microscope, _dkl_scalarizer(args))
    scalarizer = args.scalarizer_in_force = scalarizer_from_spec(args.scalarizer)

    def make_agent(image, detector=None):
        # the plan names the survey detector: HAADF columns bright, ABF dark (seed points)
        args.agent = DKLAgent(
            image, **_dkl_settings(args), detector=detector, device=session.config.device or "auto"
        )
        return args.agent

    yield from _setup_scan(session, args)
    m = session.microscope
    signal = yield from _survey_signal(m, args)
    return (
        yield from adaptive_eels(
            m.scan,
            m.eels_points,
            make_agent,
            scalarizer,
            steps=args.steps,
            maps_every=args.maps_every,
            signal=signal,
        )
    )


def _build_dcnn(session: Any, args: argparse.Namespace) -> Generator:
    from agents.ensemble import EnsembleAgent, EnsembleNotFoundError
    from plans.dcnn import dcnn

    from .default_ensemble import train_default_ensemble

    device = session.config.device or "auto"
    settings = {"target": args.target, "device": device, **_contrast_setting(args)}
    try:
        agent = EnsembleAgent(args.ensemble, **settings)
    except EnsembleNotFoundError:
        if args.no_train or args.ensemble != "default":
            raise
        # "A default ensemble is produced on first use": train it now, once.
        train_default_ensemble("default", device=device, compute=session.config.compute)
        agent = EnsembleAgent("default", **settings)
    return (yield from _atom_plan(session, args, dcnn, agent))
