"""``ophyd-stem``: run an experiment, list runs, look at one, open the console.

Examples::

    ophyd-stem run survey                       # the digital twin, the embedded catalog
    ophyd-stem run grid --rows 64 --cols 64     # the exhaustive baseline
    ophyd-stem run survey --bridge tcp://microscope-pc:5555 --server-key keys/server.key \\
        --client-key keys/private/client-1.key_secret --catalog https://tiled/api --api-key ...
    ophyd-stem runs
    ophyd-stem show 3f2a9c                      # summary + PNG of its images and spectra
    ophyd-stem replay 3f2a9c --callbacks table plot --forensics --counterfactual ucb
    ophyd-stem run dcnn --device cuda --compute tcp://scheduler:8786   # GPU, Dask cluster
    ophyd-stem console                          # the IPython console (profile_collection)
    ophyd-stem import-spool                     # write runs the catalog missed
    ophyd-stem serve                            # a one-machine facility (queueserver)
    ophyd-stem serve --status                   # what runs: facility, catalog server (--stop)
    ophyd-stem run dkl --queue tcp://gpu-node:60615 --control approve
    ophyd-stem control status --queue tcp://gpu-node:60615
    ophyd-stem export -1 --format hspy          # survey + spectra for HyperSpy, in register

This module parses the command line (every command's options and help); what each command
does is in :mod:`.commands`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .commands import (
    _cmd_console,
    _cmd_export,
    _cmd_import_spool,
    _cmd_replay,
    _cmd_run,
    _cmd_runs,
    _cmd_show,
    _cmd_train_ensemble,
    _log_dir,
)

__all__ = ["main"]


class HelpFormatter(argparse.HelpFormatter):
    """Every option's default in its help (unless the help already says it); descriptions
    wrapped, example lines (indented) kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        lines = []
        for line in text.splitlines():
            if line.startswith(" ") or line.endswith(":"):
                lines.append(indent + line)
            else:
                lines.append(textwrap.fill(line, width, initial_indent=indent,
                                           subsequent_indent=indent))  # fmt: skip
        return "\n".join(lines)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or not action.option_strings
            or action.default is None
            or action.default is False
            or action.default is argparse.SUPPRESS
            or action.default == []
        ):
            return text
        return f"{text} (default: %(default)s)"


def _command(
    commands: Any, name: str, summary: str, example: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A sub-command with its one-line summary, a description and an example."""
    return commands.add_parser(
        name,
        help=summary,
        description=description or summary[:1].upper() + summary[1:] + ".",
        epilog=f"example:\n  {example}",
        formatter_class=HelpFormatter,
    )


def _catalog_arguments(parser: argparse.ArgumentParser) -> Any:
    group = parser.add_argument_group("catalog (default: the embedded local catalog)")
    group.add_argument(
        "--catalog",
        help="Tiled URI of a catalog server (default: $OPHYD_STEM_CATALOG, the config file, "
        "or the embedded catalog)",
    )
    group.add_argument(
        "--api-key",
        help="API key of that catalog (default: $OPHYD_STEM_API_KEY, the config file, or "
        "$TILED_API_KEY; the embedded catalog needs none)",
    )
    group.add_argument(
        "--data-dir",
        help="data directory of the embedded catalog (default: $OPHYD_STEM_DATA_DIR, the "
        "config file, or the user data folder)",
    )
    return group


def _session_arguments(parser: argparse.ArgumentParser) -> Any:
    group = parser.add_argument_group("microscope (default: the digital twin)")
    group.add_argument(
        "--bridge",
        help="address of a DM bridge, e.g. tcp://host:5555 (default: $OPHYD_STEM_BRIDGE, the "
        "config file, or the twin)",
    )
    group.add_argument(
        "--server-key",
        help="the bridge's CurveZMQ public key file (default: $OPHYD_STEM_SERVER_KEY, the "
        "config file, or none: loopback)",
    )
    group.add_argument(
        "--client-key",
        help="this client's CurveZMQ secret key file (default: $OPHYD_STEM_CLIENT_KEY, the "
        "config file, or none)",
    )
    group.add_argument(
        "--operator",
        help="recorded in every run (default: $OPHYD_STEM_OPERATOR, the config file, or none)",
    )
    return _catalog_arguments(parser)


def _compute_arguments(
    parser: argparse.ArgumentParser, device: bool = True, compute: bool = True
) -> None:
    """``--device`` and ``--compute`` where they act; where one does not, its value is None
    (the configuration's default), so the help lists only what changes something."""
    parser.set_defaults(device=None, compute=None)
    if not (device or compute):
        return
    group = parser.add_argument_group("compute (default: this process, a GPU when there is one)")
    if device:
        group.add_argument(
            "--device",
            help="where agents compute: auto (a GPU when there is one), cpu, cuda or cuda:N "
            "(default: $OPHYD_STEM_DEVICE, the config file, or auto)",
        )
    if compute:
        group.add_argument(
            "--compute",
            help="Dask cluster for work that fans out (ensemble members, LoG* windows, "
            "counterfactuals): local, local:N, or a scheduler address such as "
            "tcp://scheduler:8786 (default: $OPHYD_STEM_COMPUTE, the config file, or none: "
            "in this process)",
        )


def _twin_arguments(parser: argparse.ArgumentParser, default_sample: str) -> None:
    group = parser.add_argument_group("digital twin (when no --bridge is given)")
    group.add_argument(
        "--sample",
        default=default_sample,
        choices=("graphene", "srtio3", "nanowire", "nanoparticles"),
        help="the specimen",
    )
    group.add_argument(
        "--seed", type=int, default=0, help="seed of the twin's sample and noise, and of the agent"
    )
    group.add_argument(
        "--noise-level",
        type=float,
        default=None,
        help="survey image noise, 0 (clean) ... 1 (atoms barely visible) (default: the "
        "physical dose of the beam current)",
    )
    group.add_argument("--beam-current", type=float, default=50.0, help="probe current, pA")
    group.add_argument("--drift", action="store_true", help="let the specimen drift")
    group.add_argument(
        "--damage", action="store_true", help="let the beam knock atoms out (graphene)"
    )
    group.add_argument(
        "--energy-drift", type=float, default=0.0, help="energy-scale drift of EELS, eV/s"
    )
    group.add_argument(
        "--sample-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a sample parameter (docs/twin.md), e.g. thickness=20; repeatable; JSON values "
        "(default: the sample's own)",
    )
    group.add_argument(
        "--time-scale",
        type=float,
        default=0.0,
        help="0: instant; 1: as slow as the real microscope; 0.1: ten times faster",
    )
    group.add_argument(
        "--twin-mode",
        choices=("thread", "subprocess", "local"),
        default="thread",
        help="how the twin's bridge runs: a real bridge on loopback in this process "
        "(thread), in its own process, or without sockets (local)",
    )


def _add_serve_command(commands: Any) -> None:
    """``ophyd-stem serve``: the facility (app/facility.py), and the catalog server alone."""
    from .facility import add_serve_parser

    add_serve_parser(commands, _command, _session_arguments)


def build_parser() -> argparse.ArgumentParser:
    from . import workflows  # noqa: F401  (registers bandit, physics, latent, drift)
    from .registry import PLANS

    parser = argparse.ArgumentParser(
        prog="ophyd-stem",
        description="Autonomous STEM-EELS with Bluesky: run experiments, browse and replay runs.",
        epilog="examples:\n  ophyd-stem run grid\n  ophyd-stem show -1\n  "
        "ophyd-stem run logstar --help",
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _command(
        commands,
        "run",
        "run a plan on the twin or a microscope",
        "ophyd-stem run edge --sample nanowire",
        description="Run a plan on the digital twin (the default) or a microscope (--bridge); "
        "its data and decisions go to the catalog. `ophyd-stem run PLAN --help` lists the "
        "plan's options.",
    )
    plans = run.add_subparsers(dest="plan", required=True, metavar="PLAN")
    for entry in PLANS.values():
        sub = _command(
            plans,
            entry.name,
            entry.summary,
            entry.example or f"ophyd-stem run {entry.name}",
            description=entry.description or None,
        )
        group = sub.add_argument_group(f"{entry.name} options")
        entry.add_arguments(group)
        _twin_arguments(sub, entry.default_sample)
        catalog = _session_arguments(sub)
        _compute_arguments(
            sub, device="device" in entry.computes, compute="compute" in entry.computes
        )
        catalog.add_argument(
            "--catalog-timeout",
            type=float,
            default=120.0,
            help="seconds to wait for the catalog at the end (the spool keeps the rest)",
        )
        queue = sub.add_argument_group("facility mode")
        queue.add_argument(
            "--queue",
            metavar="ADDRESS",
            help="submit to the re-manager at ADDRESS (e.g. tcp://host:60615) and follow the "
            "run there (default: run here)",
        )
        queue.add_argument(
            "--queue-key",
            help="the re-manager's public key, for an encrypted channel (default: "
            "$QSERVER_ZMQ_PUBLIC_KEY or none)",
        )
        sub.set_defaults(func=_cmd_run)

    runs = _command(
        commands, "runs", "list recent runs in the catalog", "ophyd-stem runs --limit 5"
    )
    runs.add_argument("--limit", type=int, default=20, help="how many runs, newest first")
    _catalog_arguments(runs)
    runs.set_defaults(func=_cmd_runs)

    show = _command(
        commands,
        "show",
        "summarise one run and draw its figures (PNG and an HTML page)",
        "ophyd-stem show -1 --out figures/",
    )
    show.add_argument("run", help="uid (or its first characters), scan id, or -1 for the last")
    show.add_argument(
        "--out",
        default=".",
        help="folder for the PNGs and the HTML page (default: the current folder)",
    )
    show.add_argument(
        "--latent",
        action="store_true",
        help="also draw the run's positions in the latent space of its survey (Figure 4d of "
        "the first seed paper: a rotation-invariant VAE trained now, unless the run recorded "
        "its latent map)",
    )
    _catalog_arguments(show)
    show.set_defaults(func=_cmd_show)

    export = _command(
        commands,
        "export",
        "write a run's survey images and spectra for HyperSpy (.hspy) or NeXus (.nxs)",
        "ophyd-stem export -1 --format hspy --out exports/",
        description="Survey images as Signal2D and spectra as an EELSSpectrum (a spectrum "
        "image, or points with their positions), calibrated in nm and eV and in register: "
        "a spectrum taken on survey pixel (i, j) has that pixel's coordinates.",
    )
    export.add_argument("run", help="uid (or its first characters), scan id, or -1 for the last")
    export.add_argument("--format", choices=("hspy", "nexus"), default="hspy", help="file format")
    export.add_argument(
        "--out", default=".", help="folder for the files (default: the current folder)"
    )
    _catalog_arguments(export)
    export.set_defaults(func=_cmd_export)

    replay = _command(
        commands,
        "replay",
        "replay a run: its figures, forensics, counterfactuals, or as an experiment",
        "ophyd-stem replay -1 --forensics --counterfactual ucb",
        description="Replay a run's documents into callbacks; re-run its agent on the "
        "recorded measurements (--forensics) or swap it (--counterfactual); write its data "
        "as a recording for the replay backend (--as-experiment).",
    )
    replay.add_argument("run", help="uid (or its first characters), scan id, or -1 for the last")
    replay.add_argument(
        "--callbacks",
        nargs="*",
        choices=("table", "plot"),
        default=[],
        help="replay the documents into a text table and/or the live figure (PNG in --out) "
        "(default: none)",
    )
    replay.add_argument(
        "--forensics",
        action="store_true",
        help="re-run the agent offline: same suggestions? (exit status 4 when not)",
    )
    replay.add_argument(
        "--counterfactual",
        action="append",
        metavar="ALTERNATIVE",
        help="what another choice would have done: ucb, ei, uncertainty (e.g. ucb:beta=9), "
        "random, raster, dkl:window=8; canny/gradient for edge runs; weight=W or index=I "
        "for LoG*; uncorrected, phase or drift:velocity_window=2 for drift runs; "
        "latent:n_clusters=3 for latent runs; off or centroid for the zero-loss alignment; "
        "repeat for several (default: none)",
    )
    replay.add_argument(
        "--latent",
        action="store_true",
        help="draw the run's positions in the latent space of its survey (a rotation-"
        "invariant VAE, trained now unless the run recorded its latent map; PNG in --out)",
    )
    replay.add_argument(
        "--as-experiment",
        action="store_true",
        help="write the survey image and spectra as a recording the replay backend serves",
    )
    replay.add_argument(
        "--out", default=".", help="folder for figures and recordings (default: the current folder)"
    )
    _catalog_arguments(replay)
    # a replay computes where the run did (forensics says when it cannot): no --device
    _compute_arguments(replay, device=False)
    replay.set_defaults(func=_cmd_replay)

    _add_serve_command(commands)

    spool = _command(
        commands,
        "import-spool",
        "write runs that never reached the catalog (kept locally in the spool)",
        "ophyd-stem import-spool --catalog https://tiled.example/api --api-key KEY",
        description="Write the runs kept in the local spool (because the catalog could not "
        "take them in time) into the catalog; runs already there are only removed from the "
        "spool. Safe to repeat.",
    )
    _catalog_arguments(spool)
    spool.set_defaults(func=_cmd_import_spool)

    train = _command(
        commands,
        "train-ensemble",
        "train the U-Net ensemble of the dcnn workflow on twin images",
        "ophyd-stem train-ensemble --members 3 --steps 200",
    )
    train.add_argument("--name", default="default", help="saved under this name")
    train.add_argument("--members", type=int, default=5, help="number of U-Nets")
    train.add_argument("--steps", type=int, default=600, help="training steps per U-Net")
    train.add_argument("--images", type=int, default=160, help="labelled twin images")
    train.add_argument("--size", type=int, default=128, help="image side, px")
    train.add_argument("--seed", type=int, default=0, help="seed of images and training")
    train.add_argument(
        "--calibration-images",
        type=int,
        default=48,
        help="256² twin images to calibrate the atom uncertainty on (0: none, variance)",
    )
    train.add_argument("--force", action="store_true", help="replace an existing ensemble")
    _compute_arguments(train)
    train.set_defaults(func=_cmd_train_ensemble)

    from .queue_commands import add_control_parser

    add_control_parser(commands, _command)

    console = _command(
        commands,
        "console",
        "open the IPython RunEngine console",
        "ophyd-stem console --sample nanowire",
        description="Open the IPython console with a RunEngine, the microscope's devices "
        "(the twin unless --bridge), the plans and agents (profile_collection/).",
    )
    _session_arguments(console)
    _compute_arguments(console)
    console.add_argument(
        "--sample", help="the twin's sample (default: $OPHYD_STEM_SAMPLE or graphene)"
    )
    console.add_argument(
        "ipython",
        nargs=argparse.REMAINDER,
        help="arguments for IPython, after -- (ophyd-stem console -- -c 'RE(bp.count([eels]))')",
    )
    console.set_defaults(func=_cmd_console)
    return parser


def _one_line(exc: Exception) -> str:
    """An error as the user reads it. A run that is not in the catalog is a lookup the user
    typed, not a program fault: its message alone (a KeyError's str() is the repr of its
    argument, quotes and all), and where to look. Anything else keeps its type's name,
    which says what kind of fault it was; a device's failed move says its own error, not
    the repr of the status object that carried it (bluesky's FailedStatus, raised from it)."""
    while type(exc).__name__ == "FailedStatus" and isinstance(exc.__cause__, Exception):
        exc = exc.__cause__
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        message = exc.args[0]
        if message.startswith("the catalog holds 0 run"):  # a new user's first `show -1`
            return "the catalog holds no runs yet; try `ophyd-stem run survey`"
        if message.startswith(("no run", "the catalog holds", "scan_id 0")):
            return f"{message} (`ophyd-stem runs` lists the runs)"
    return f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ophyd-stem`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.func is not _cmd_console:  # the console is a Python session: its own logs
            from .logs import route_library_logs

            route_library_logs(_log_dir(args))
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a clear line for the user; the traceback with --debug
        if os.environ.get("OPHYD_STEM_DEBUG"):
            raise
        message = _one_line(exc)
        print(f"ophyd-stem: {message}", file=sys.stderr)
        if message.split(" ", 1)[0].endswith(":"):  # "SomeError: ...": a fault, not a typo
            print("(set OPHYD_STEM_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
