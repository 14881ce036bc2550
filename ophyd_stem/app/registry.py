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

import numpy as np

__all__ = ["PLANS", "ZERO_LOSS", "PlanEntry", "QueueItem", "register", "zero_loss_argument"]

#: ``(plan name, positional arguments, keyword arguments)``, all JSON
QueueItem = tuple[str, list[Any], dict[str, Any]]


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


PLANS: dict[str, PlanEntry] = {}


def register(entry: PlanEntry) -> PlanEntry:
    PLANS[entry.name] = entry
    return entry


def _scan_arguments(parser: argparse.ArgumentParser, size: int | None) -> None:
    keep = " (default: as the instrument has it)" if size is None else ""
    parser.add_argument("--size", type=int, default=size, help=f"survey width = height, px{keep}")
    parser.add_argument(
        "--dwell",
        type=float,
        default=None,
        help="dwell time per pixel, s (default: the microscope's, the twin's per sample)",
    )
    parser.add_argument(
        "--fov",
        type=float,
        default=None,
        help="field of view, nm (default: the microscope's; the twin: 2 nm graphene, 4 nm "
        "SrTiO3, 200 nm nanowire, 300 nm nanoparticles)",
    )


def _setup_item(args: argparse.Namespace, *extra: Any) -> list[QueueItem]:
    """The scan settings as a queued ``mv`` (device components by name); none to make, none
    queued."""
    moves: list[Any] = []
    if args.size is not None:  # None: the field stays as it is (a recording fixes it)
        moves += ["scan_engine.width", args.size, "scan_engine.height", args.size]
    if args.dwell is not None:
        moves += ["scan_engine.dwell_time", args.dwell]
    if args.fov is not None:
        moves += ["scan_engine.field_of_view", args.fov]
    moves += list(extra)
    return [("mv", moves, {})] if moves else []


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
    parser.add_argument(
        "--exposure", type=float, default=None, help="EELS exposure, s (default: the microscope's)"
    )
    zero_loss_argument(parser)


#: ``--zero-loss`` choices and the plans' ``zero_loss`` argument they mean
ZERO_LOSS = {"auto": None, "on": True, "off": False}


def zero_loss_argument(parser: argparse.ArgumentParser) -> None:
    """``--zero-loss auto|on|off``: align each spectrum on its zero-loss peak."""
    parser.add_argument(
        "--zero-loss",
        choices=tuple(ZERO_LOSS),
        default="auto",
        help="align each spectrum on its zero-loss peak: auto = for low-loss spectra "
        "(default: auto)",
    )


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


def _queue_survey(args: argparse.Namespace) -> list[QueueItem]:
    return [*_setup_item(args), ("survey", ["scan_engine"], {"num": args.num})]


def _queue_grid(args: argparse.Namespace) -> list[QueueItem]:
    exposure = ["eels.exposure", args.exposure] if args.exposure is not None else []
    kwargs = {"zero_loss": ZERO_LOSS[args.zero_loss]}
    return [
        *_setup_item(args, *exposure),
        ("spectrum_image", ["scan_engine", "eels_points", args.rows, args.cols], kwargs),
    ]


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


def _logstar_arguments(parser: argparse.ArgumentParser) -> None:
    _scan_arguments(parser, 256)
    parser.add_argument("--images", type=int, default=1, help="survey images to analyse")
    parser.add_argument(
        "--lattice",
        default=None,
        help="a library name: graphene, hBN, WS2 (WS2:W metal only, WS2:bulk), MoS2, SrTiO3, "
        "Si[110], GaAs[110], Au[001], Au[110]... (default: the twin's sample)",
    )
    parser.add_argument(
        "--pixel-size",
        default=None,
        help="nm per pixel, or 'fft' to take it from the image's lattice reflections "
        "(default: the survey image's calibration)",
    )
    parser.add_argument("--budget", type=int, default=40, help="LoG* trials per optimisation")
    parser.add_argument(
        "--weight",
        type=float,
        default=0.5,
        help="Pareto choice: 1 = all on the atom count (QC), 0 = all on spacing errors (ER)",
    )
    parser.add_argument("--clusters", type=int, default=2, help="GMM classes of atoms")
    parser.add_argument("--eels", type=int, default=0, help="spectra per image, at --target")
    parser.add_argument(
        "--target",
        choices=("outliers", "brightest", "all"),
        default="outliers",
        help="where EELS goes: atoms far brighter than the lattice (dopants), the brightest "
        "GMM class, or any atom; brightest first. 'outliers' may give fewer than --eels",
    )
    _control_argument(parser)


def _control_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control",
        choices=("free", "approve"),
        default=None,
        help="with --queue: the operator's hand on the run, `ophyd-stem control` (default: "
        "none, the agent runs alone)",
    )


def _logstar_settings(args: argparse.Namespace, sample: str) -> dict[str, Any]:
    lattice = args.lattice or ("SrTiO3" if sample.lower() == "srtio3" else "graphene")
    return {
        "lattice": lattice,
        "budget": args.budget,
        "default_weight": args.weight,
        "n_clusters": args.clusters,
        "target": args.target,
        "seed": args.seed,
        **_pixel_size_option(args.pixel_size),
    }


def _pixel_size_option(value: str | None) -> dict[str, Any]:
    """``--pixel-size``: nm per pixel, or ``fft`` (from the image's lattice reflections)."""
    if value is None:
        return {}
    if value == "fft":
        return {"pixel_size_nm": "fft"}
    try:
        return {"pixel_size_nm": float(value)}
    except ValueError:
        raise SystemExit(f"--pixel-size must be nm per pixel or 'fft', got {value!r}") from None


def _build_logstar(session: Any, args: argparse.Namespace) -> Generator:
    from agents.logstar import LoGStarAgent
    from plans import logstar

    agent = LoGStarAgent(
        **_logstar_settings(args, session.config.sample),
        progress=True,
        compute=session.config.compute,
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
        lines.append(
            f"  classes     {report['clusters'].get('counts')} (GMM, dimmest first); "
            f"{report.get('outliers', 0)} atom(s) far brighter than the lattice"
        )
    chosen = report.get("chosen") or {}
    front = report.get("front") or []
    if chosen and front:
        point = front[chosen["index"]]
        rewards = ", ".join(f"{k} {v:.3f}" for k, v in point["rewards"].items())
        lines.append(
            f"  front       {len(front)} points; chosen #{chosen['index']} ({rewards}) "
            f"by {chosen['chooser']} ({chosen['method']})"
        )
    if args.eels and len(agent.positions) < args.eels:
        lines.append(
            f"  EELS        {len(agent.positions)} of the {args.eels} spectra asked: only "
            f"{len(agent.positions)} atom(s) of the target '{args.target}' in the image"
        )
    if agent.image is not None:
        found = agent.atoms[:, [1, 0]] if len(agent.atoms) else np.empty((0, 2))
        lines += _truth_atoms(session, found, agent.positions, agent.image.shape)
    info = report.get("pixel_size") or {}
    source = info.get("source")
    if source == "fft" and info.get("given_nm"):
        source = (
            f"from the image's FFT; its calibration {info['given_nm']:.5g}, "
            f"FFT/calibration {info['fft_over_given']:.4f}"
        )
    elif source == "fft":
        source = "from the image's FFT"
    if report.get("pixel_size_nm"):
        lines.append(
            f"  pixel size  {report['pixel_size_nm']:.5g} nm/px ({source or 'given'}; "
            f"lattice {report['lattice']['name']})"
        )
    warning = (report.get("pixel_size") or {}).get("warning")
    if warning:
        lines.append(f"  WARNING     {warning}")
    check = report.get("plausibility") or {}
    if check:
        if check.get("ok"):
            lines.append("  plausible   the atoms sit on columns, where the lattice puts them")
        for text in check.get("warnings") or []:
            lines.append(f"  WARNING     {text}")
    return lines


def _queue_logstar(args: argparse.Namespace) -> list[QueueItem]:
    kwargs: dict[str, Any] = {
        "agent_kwargs": _logstar_settings(args, args.sample),
        "images": args.images,
        "n_eels": args.eels,
        "control": args.control,
    }
    if args.eels:
        kwargs["eels_points"] = "eels_points"
    return [*_setup_item(args), ("logstar", ["scan_engine", "logstar"], kwargs)]


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
    )
)


def _twin_truth(session: Any) -> dict[str, Any] | None:
    """The twin's ground truth of the last image, or None on a real microscope."""
    if session.bridge is None:
        return None
    try:
        return session.bridge.client().get_truth()
    except Exception:  # a replay or another backend without truth
        return None


def _truth_atoms(
    session: Any, found_xy: np.ndarray, eels_xy: np.ndarray, shape: tuple[int, int]
) -> list[str]:
    """On the twin: the atoms found scored against the truth (the benchmarks' rule,
    :func:`agents.metrics.score_atoms`) and the species the EELS positions landed on."""
    truth = _twin_truth(session)
    if truth is None or "atoms" not in truth:
        return []
    from agents.metrics import score_atoms

    atoms = truth["atoms"]
    xy = np.asarray(atoms["xy_px"], dtype=float)
    height, width = shape
    score = score_atoms(found_xy, xy, (width, height))
    lines = [
        f"  truth       F1 {score.f1:.3f} (TP {score.tp}, FP {score.fp}, FN {score.fn}; "
        "the benchmarks' matching rule)"
    ]
    species = np.asarray(atoms.get("species", []))
    names = list(atoms.get("species_names") or [])
    if len(eels_xy) and len(species) == len(xy) and names:
        inside = (xy[:, 0] >= -0.5) & (xy[:, 0] <= width - 0.5)
        inside &= (xy[:, 1] >= -0.5) & (xy[:, 1] <= height - 0.5)
        distance = np.hypot(*(xy[None, :, :] - np.asarray(eels_xy)[:, None, :]).transpose(2, 0, 1))
        nearest = np.argmin(distance, axis=1)
        landed = [str(names[int(species[i])]) for i in nearest]
        counts = {name: landed.count(name) for name in dict.fromkeys(landed)}
        field = {
            str(name): int(np.sum(inside & (species == k)))
            for k, name in enumerate(names)
            if np.any(inside & (species == k))
        }
        lines.append(
            "  EELS on     "
            + ", ".join(f"{n} {name}" for name, n in counts.items())
            + " (nearest true atom of each position; in the field: "
            + ", ".join(f"{n} {name}" for name, n in field.items())
            + ")"
        )
    return lines


def _edge_arguments(parser: argparse.ArgumentParser) -> None:
    _scan_arguments(parser, 128)
    parser.add_argument("--budget", type=int, default=150, help="most points to measure")
    parser.add_argument("--sigma", type=float, default=1.5, help="edge smoothing, px")
    parser.add_argument("--spacing", type=float, default=1.5, help="least spacing of points, px")
    parser.add_argument(
        "--method",
        choices=("canny", "gradient"),
        default="canny",
        help="edge filter: Canny, or the smoothed gradient magnitude",
    )
    parser.add_argument(
        "--scalarizer",
        default=None,
        help="a value recorded per point, e.g. band:5:15 (eV) (default: none; the figures "
        "then show the relative thickness t/λ)",
    )


def _edge_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "method": args.method,
        "sigma": args.sigma,
        "spacing": args.spacing,
        "budget": args.budget,
    }


def _queue_edge(args: argparse.Namespace) -> list[QueueItem]:
    kwargs = {"agent_kwargs": _edge_settings(args), "scalarizer": args.scalarizer}
    return [*_setup_item(args), ("edge_eels", ["scan_engine", "eels_points", "edge"], kwargs)]


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


def _summarize_edge(session: Any, args: argparse.Namespace) -> list[str]:
    agent = args.agent
    n, pixels = len(agent.candidates), int(np.prod(agent.image_shape))
    lines = [f"  measured    {n} of {pixels} pixels ({100 * n / pixels:.2f} %) along the edges"]
    truth = _twin_truth(session)
    if truth is not None and "interface" in truth.get("label_names", []):
        from agents.edges import evaluate_edge_points

        label = list(truth["label_names"]).index("interface")
        score = evaluate_edge_points(truth["labels"], agent.candidates, interface_label=label)
        lines.append(
            f"  truth       {100 * score['interface_within_1px']:.1f} % of the "
            f"{score['n_interface']} true interface pixels lie within 1 px of a measured point"
        )
    per_point = session.microscope.eels_points.last_acquisition
    if per_point is not None and n:
        seconds = per_point.instrument_time / n
        lines.append(
            f"  full grid   {pixels} spectra would take {_minutes(seconds * pixels)} of "
            f"microscope time; the {n} measured took {_minutes(seconds * n)}"
        )
    return lines


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _dkl_arguments(parser: argparse.ArgumentParser) -> None:
    _scan_arguments(parser, None)
    parser.add_argument("--steps", type=int, default=30, help="measurements the agent chooses")
    parser.add_argument(
        "--acquisition",
        choices=("ei", "ucb", "uncertainty"),
        default="ucb",
        help="how to choose: upper confidence bound, expected improvement, most uncertain "
        "(the agent's defaults, the ones the benchmark measures)",
    )
    parser.add_argument(
        "--xi", type=float, default=0.01, help="EI exploration margin, std of the values"
    )
    parser.add_argument(
        "--beta", type=float, default=9.0, help="UCB exploration weight: mean + sqrt(beta) std"
    )
    parser.add_argument(
        "--scalarizer",
        default="band:20:30",
        help="what to maximise, e.g. band:20:30 or edge:420:450:455:475 (eV); "
        "despike:<spec> removes cosmic-ray spikes first",
    )
    parser.add_argument(
        "--despike",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="remove cosmic-ray spikes before scalarizing (recorded as despike:<spec>; "
        "default: on for --replay, off on the twin)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="patch size around each pixel, px (default: scaled to the field, 5-24)",
    )
    parser.add_argument(
        "--step",
        type=int,
        default=None,
        help="candidate spacing, px (default: every pixel up to 4,096 pixels, else coarser)",
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="first measurements, spread over the field"
    )
    parser.add_argument("--maps-every", type=int, default=5, help="record maps every k steps")
    parser.add_argument(
        "--signal", default=None, help="survey detector the agent learns from (default: HAADF)"
    )
    # (the command puts these options in the plan's own group: no group of their own)
    parser.add_argument(
        "--replay",
        metavar="SI_FILE",
        help="a recorded experiment instead of the twin: serve this spectrum image (.dm3/.dm4, "
        ".hspy, .emd, .npz, .h5, .npy) as the instrument; any shape (default: the twin)",
    )
    parser.add_argument(
        "--survey",
        metavar="SURVEY_FILE",
        help="the replay's survey image, in its own file (default: the one in SI_FILE)",
    )
    _control_argument(parser)


def _dkl_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The agent's keyword arguments (JSON: None leaves window and step to the field)."""
    return {
        "window": args.window,
        "step": args.step,
        "acquisition": args.acquisition,
        "xi": args.xi,
        "beta": args.beta,
        "n_seed": args.seeds,
        "seed": args.seed,
    }


def _queue_dkl(args: argparse.Namespace) -> list[QueueItem]:
    if args.replay is not None:
        raise SystemExit(
            "--replay serves a recording in this process; with --queue, serve it on the "
            "facility's bridge (dm-bridge serve --backend replay --file ...)"
        )
    kwargs: dict[str, Any] = {
        "agent_kwargs": _dkl_settings(args),
        "steps": args.steps,
        "maps_every": args.maps_every,
        "control": args.control,
    }
    if args.signal is not None:
        kwargs["signal"] = args.signal
    return [
        *_setup_item(args),
        ("adaptive_eels", ["scan_engine", "eels_points", "dkl", _dkl_scalarizer(args)], kwargs),
    ]


def _dkl_instrument(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--replay SI_FILE [--survey SURVEY_FILE]``: the replay backend serves the files."""
    if args.replay is None:
        if args.survey is not None:
            raise SystemExit("--survey needs --replay SI_FILE (the spectrum image it belongs to)")
        return None
    from pathlib import Path

    files = [Path(args.replay)] + ([Path(args.survey)] if args.survey else [])
    for path in files:
        if not path.is_file():
            raise SystemExit(f"no such file: {path}")
    options: dict[str, Any] = {"file": str(files[0])}
    if args.survey:
        options["survey"] = str(files[1])
    return {
        "backend": "replay",
        "options": options,
        "label": "replay of " + " + ".join(p.name for p in files),
    }


def _dkl_scalarizer(args: argparse.Namespace) -> str:
    """The scalarizer spec as the run records it: ``despike:`` in front when despiking."""
    spec = str(args.scalarizer)
    despike = args.despike if args.despike is not None else args.replay is not None
    if despike and not spec.startswith("despike:"):
        spec = "despike:" + spec
    return spec


def _build_dkl(session: Any, args: argparse.Namespace) -> Generator:
    import bluesky.plan_stubs as bps

    from agents.dkl import DKLAgent
    from agents.scalarizers import get_scalarizer
    from plans import adaptive_eels

    scalarizer = get_scalarizer(_dkl_scalarizer(args))

    def make_agent(image):
        args.agent = DKLAgent(image, **_dkl_settings(args), device=session.config.device or "auto")
        return args.agent

    yield from _setup_scan(session, args)
    m = session.microscope
    signal = args.signal
    if signal is None:  # HAADF when the instrument has it, else its first detector (ABF...)
        signals = list((yield from bps.rd(m.scan.signals)) or ["HAADF"])
        signal = "HAADF" if "HAADF" in signals else signals[0]
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


def _summarize_dkl(session: Any, args: argparse.Namespace) -> list[str]:
    agent = args.agent
    values = np.asarray(agent.values)
    if not len(values):
        return ["  measured    nothing"]
    best = int(np.argmax(values))
    x, y = agent.positions[best]
    lines = [
        f"  best        {values[best]:.4g} at ({x:.1f}, {y:.1f}) px, "
        f"step {best + 1} of {len(values)} ({_dkl_scalarizer(args)})",
        f"  agent       window {agent.window} px, candidates every {agent.grid_step} px "
        f"({len(agent.candidates)}), {args.seeds} seed points spread over the field",
    ]
    truth = _twin_truth(session)
    target = None if truth is None else truth.get("target_map")
    if target is not None and args.scalarizer == "band:20:30":
        # The twin's noise-free map of the same band, looked up where the agent measured.
        target = np.asarray(target, dtype=float)
        rows = np.clip(np.rint(agent.positions[:, 1]).astype(int), 0, target.shape[0] - 1)
        cols = np.clip(np.rint(agent.positions[:, 0]).astype(int), 0, target.shape[1] - 1)
        found = target[rows, cols]
        first = (
            int(np.argmax(found >= 0.9 * target.max())) + 1
            if (found >= 0.9 * target.max()).any()
            else None
        )
        lines.append(
            f"  truth       best measured position holds {100 * found.max() / target.max():.0f} % "
            f"of the true maximum" + (f" (>= 90 % from step {first})" if first else "")
        )
    return lines


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
    )
)


def _dcnn_arguments(parser: argparse.ArgumentParser) -> None:
    _scan_arguments(parser, 256)
    parser.add_argument("--images", type=int, default=1, help="survey images to analyse")
    parser.add_argument("--ensemble", default="default", help="name or folder of the ensemble")
    parser.add_argument(
        "--target",
        choices=("uncertain", "brightest", "confident"),
        default="uncertain",
        help="where EELS goes: the most uncertain sites, the brightest atoms, the surest",
    )
    parser.add_argument("--eels", type=int, default=0, help="spectra per image")
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="fail instead of training the default ensemble when it does not exist yet",
    )


def _queue_dcnn(args: argparse.Namespace) -> list[QueueItem]:
    kwargs: dict[str, Any] = {
        "agent_kwargs": {"ensemble": args.ensemble, "target": args.target},
        "images": args.images,
        "n_eels": args.eels,
    }
    if args.eels:
        kwargs["eels_points"] = "eels_points"
    return [*_setup_item(args), ("dcnn", ["scan_engine", "ensemble"], kwargs)]


def _build_dcnn(session: Any, args: argparse.Namespace) -> Generator:
    from agents.ensemble import EnsembleAgent, EnsembleNotFoundError
    from plans.dcnn import dcnn

    from .default_ensemble import train_default_ensemble

    device = session.config.device or "auto"
    try:
        agent = EnsembleAgent(args.ensemble, target=args.target, device=device)
    except EnsembleNotFoundError:
        if args.no_train or args.ensemble != "default":
            raise
        # "A default ensemble is produced on first use": train it now, once.
        train_default_ensemble("default", device=device, compute=session.config.compute)
        agent = EnsembleAgent("default", target=args.target, device=device)
    args.agent = agent
    yield from _setup_scan(session, args)
    m = session.microscope
    return (
        yield from dcnn(
            m.scan, agent, images=args.images, eels_points=m.eels_points, n_eels=args.eels
        )
    )


#: what an atom's uncertainty is, in the run summary
_UNCERTAINTY_WORDS = {
    "calibrated": "probability of being false, calibrated on the twin",
    "variance": "variance across members",
}


def _summarize_dcnn(session: Any, args: argparse.Namespace) -> list[str]:
    report = args.agent.report()
    lines = [
        f"  atoms       {report.get('atoms')} found by {report['members']} U-Nets "
        f"(ensemble {report['ensemble']!r})",
        f"  uncertainty image {report.get('image_uncertainty', 0):.2e} (variance), "
        f"median atom {report.get('atom_uncertainty_median') or 0:.2e} "
        f"({_UNCERTAINTY_WORDS.get(report.get('uncertainty_method'), 'variance')})",
    ]
    prediction = args.agent.prediction
    if prediction is not None:
        found = np.asarray(prediction.xy, dtype=float).reshape(-1, 2)
        lines += _truth_atoms(session, found, args.agent.positions, prediction.mean.shape)
    return lines


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
    )
)
