"""Command-line options of the built-in plans (``ophyd-stem run PLAN --help``) and what they
mean: the agents' settings, and the same experiment as queue items for a re-manager
(``--queue``).

Standard library only, so that building the command's parser loads nothing heavy.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["ZERO_LOSS", "QueueItem", "zero_loss_argument"]


#: ``(plan name, positional arguments, keyword arguments)``, all JSON
QueueItem = tuple[str, list[Any], dict[str, Any]]


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


def _survey_arguments(parser: argparse.ArgumentParser) -> None:
    _scan_arguments(parser, 256)
    parser.add_argument("--num", type=int, default=1, help="number of images")


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


def _queue_survey(args: argparse.Namespace) -> list[QueueItem]:
    return [*_setup_item(args), ("survey", ["scan_engine"], {"num": args.num})]


def _queue_grid(args: argparse.Namespace) -> list[QueueItem]:
    exposure = ["eels.exposure", args.exposure] if args.exposure is not None else []
    kwargs = {"zero_loss": ZERO_LOSS[args.zero_loss]}
    return [
        *_setup_item(args, *exposure),
        ("spectrum_image", ["scan_engine", "eels_points", args.rows, args.cols], kwargs),
    ]


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
        help="nm per pixel, where the microscope's calibration is wrong (used instead of it "
        "and recorded with the run), or 'fft' to take it from the image's lattice reflections "
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
    _contrast_arguments(parser)
    _control_argument(parser)


def _contrast_arguments(parser: argparse.ArgumentParser) -> None:
    """``--signal`` and ``--contrast`` of the atom finders (logstar, dcnn)."""
    parser.add_argument(
        "--signal",
        default=None,
        help="survey detector the atoms are found in (default: HAADF when the instrument "
        "has it, else its first, e.g. ABF)",
    )
    parser.add_argument(
        "--contrast",
        choices=("auto", "bright", "dark"),
        default="auto",
        help="how the columns show: bright (HAADF/ADF), dark (ABF/BF: the image is inverted "
        "before the atoms are found), auto: from the detector's name, else from the image "
        "(default: auto)",
    )


def _contrast_setting(args: argparse.Namespace) -> dict[str, Any]:
    """The agent's ``contrast`` (left out at the default, so queued items stay as before)."""
    return {} if args.contrast == "auto" else {"contrast": args.contrast}


def _signal_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The queued plan's ``signal`` when one is given (else the plan's own: HAADF)."""
    return {} if args.signal is None else {"signal": args.signal}


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
        **_agent_pixel_size(args.pixel_size),
        **_contrast_setting(args),
    }


def _agent_pixel_size(value: str | None) -> dict[str, Any]:
    """``--pixel-size fft`` is the agent's setting (it estimates the pixel size itself)."""
    return _pixel_size_option(value) if value == "fft" else {}


def logstar_plan_pixel_size(value: str | None) -> dict[str, Any]:
    """``--pixel-size NUMBER`` is the plan's ``pixel_size_nm``: the survey's true pixel size,
    used instead of the scan's calibration for every image and recorded in the run (given to
    the agent, a survey's own calibration would win over it)."""
    return {} if value in (None, "fft") else _pixel_size_option(value)


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


def _queue_logstar(args: argparse.Namespace) -> list[QueueItem]:
    kwargs: dict[str, Any] = {
        "agent_kwargs": _logstar_settings(args, args.sample),
        "images": args.images,
        "n_eels": args.eels,
        "control": args.control,
        **_signal_kwargs(args),
        **logstar_plan_pixel_size(args.pixel_size),
    }
    if args.eels:
        kwargs["eels_points"] = "eels_points"
    return [*_setup_item(args), ("logstar", ["scan_engine", "logstar"], kwargs)]


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
        default="auto",
        help="what to maximise, e.g. band:20:30 or edge:420:450:455:475 (eV); "
        "despike:<spec> removes cosmic-ray spikes first; auto: the plasmon band 20-30 eV "
        "where the spectrometer's window has it, else the strongest core-loss edge of the "
        "first spectra",
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
        "--seeds",
        type=int,
        default=5,
        help="first measurements, one on each kind of feature the survey shows",
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
    _contrast_arguments(parser)


def _queue_dcnn(args: argparse.Namespace) -> list[QueueItem]:
    kwargs: dict[str, Any] = {
        "agent_kwargs": {
            "ensemble": args.ensemble,
            "target": args.target,
            **_contrast_setting(args),
        },
        "images": args.images,
        "n_eels": args.eels,
        **_signal_kwargs(args),
    }
    if args.eels:
        kwargs["eels_points"] = "eels_points"
    return [*_setup_item(args), ("dcnn", ["scan_engine", "ensemble"], kwargs)]
