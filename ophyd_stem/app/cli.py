"""``ophyd-stem``: run an experiment, list runs, look at one, open the console.

Examples::

    ophyd-stem run survey                       # the digital twin, the embedded catalog
    ophyd-stem run grid --rows 64 --cols 64     # the exhaustive baseline
    ophyd-stem run survey --bridge tcp://microscope-pc:5555 --server-key keys/server.key \\
        --client-key keys/clients/client-1.key_secret --catalog https://tiled/api --api-key ...
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
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

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
        "--catalog", help="Tiled URI of a catalog server (default: the embedded catalog)"
    )
    group.add_argument("--api-key", help="API key of that catalog (default: none)")
    group.add_argument(
        "--data-dir",
        help="data directory of the embedded catalog (default: $OPHYD_STEM_DATA_DIR, the "
        "config file, or the user data folder)",
    )
    return group


def _session_arguments(parser: argparse.ArgumentParser) -> Any:
    group = parser.add_argument_group("microscope (default: the digital twin)")
    group.add_argument(
        "--bridge", help="address of a DM bridge, e.g. tcp://host:5555 (default: the twin)"
    )
    group.add_argument(
        "--server-key", help="the bridge's CurveZMQ public key file (default: none, loopback)"
    )
    group.add_argument(
        "--client-key", help="this client's CurveZMQ secret key file (default: none)"
    )
    group.add_argument(
        "--operator", help="recorded in every run (default: $OPHYD_STEM_OPERATOR or none)"
    )
    return _catalog_arguments(parser)


def _compute_arguments(parser: argparse.ArgumentParser, device: bool = True) -> None:
    group = parser.add_argument_group("compute (default: this process, a GPU when there is one)")
    if device:
        group.add_argument(
            "--device",
            help="where agents compute: auto (a GPU when there is one), cpu, cuda or cuda:N "
            "(default: $OPHYD_STEM_DEVICE, the config file, or auto)",
        )
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


def _twin_options(args: argparse.Namespace) -> dict[str, Any]:
    """The twin's constructor options from the command line."""
    import json

    options: dict[str, Any] = {
        "seed": args.seed,
        "time_scale": args.time_scale,
        "beam_current": args.beam_current,
        "drift": args.drift,
        "damage": args.damage,
        "energy_drift": args.energy_drift,
    }
    if args.noise_level is not None:
        options["noise_level"] = args.noise_level
    params: dict[str, Any] = {}
    for item in args.sample_param:
        name, sep, raw = str(item).partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--sample-param wants NAME=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        params[name.strip()] = tuple(value) if isinstance(value, list) else value
    if params:
        options["sample_parameters"] = params
    return options


def _format_duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _cmd_run(args: argparse.Namespace) -> int:
    import logging

    from tqdm.contrib.logging import logging_redirect_tqdm

    # Warnings (the catalog writer's, the bridge's) print above the progress bar, not
    # through it.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    with logging_redirect_tqdm():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from . import workflows  # noqa: F401  (registers bandit, physics, latent, drift)
    from .registry import PLANS
    from .session import configure_session

    entry = PLANS[args.plan]
    if args.queue:
        from .queue import queue_run

        return queue_run(args, entry)
    if getattr(args, "control", None):
        print("ophyd-stem: --control needs --queue (here nobody could act while it runs)")
        return 2
    instrument = entry.instrument(args) if entry.instrument and not args.bridge else None
    # Something to read at once: a new session takes seconds (the catalog server may start).
    source = args.bridge or (instrument or {}).get("label") or f"the digital twin ({args.sample})"
    print(f"ophyd-stem run {args.plan}: connecting to {source} and the catalog...",
          file=sys.stderr, flush=True)  # fmt: skip
    twin_options = {**_twin_options(args), **(entry.twin_options or {})}
    session = configure_session(
        plots=False,
        mode=args.twin_mode,
        suspenders=args.bridge is not None,
        twin_options=twin_options,
        instrument=instrument,
        bridge=args.bridge,
        server_key=args.server_key,
        client_key=args.client_key,
        catalog=args.catalog,
        api_key=args.api_key,
        data_dir=args.data_dir,
        operator=args.operator,
        sample=args.sample,
        device=args.device,
        compute=args.compute,
    )
    # The progress bar tells the story on the command line; the table would repeat it
    # (ConsoleOutput takes the table's switch as the person's wish).
    session.bec.disable_table()
    session.bec.disable_baseline()
    exit_code = 0
    stored = False
    try:
        before = session.instrument_time()
        started = time.monotonic()
        uids = session.RE(entry.build(session, args))
        wall = time.monotonic() - started
        instrument = session.instrument_time() - before
        stored = _store_runs(session, uids, args.catalog_timeout)
        for uid in uids:
            _print_run_summary(session, uid, wall, instrument, stored)
            if entry.summarize is not None:
                print("\n".join(entry.summarize(session, args)))
        if not stored:
            exit_code = 3
    finally:
        if not session.close(timeout=args.catalog_timeout) and not stored:
            print(
                f"the catalog did not take every document within {args.catalog_timeout:g} s. "
                f"Nothing is lost: they are safe in {session.settings.spool_dir}. "
                "`ophyd-stem import-spool` writes them once the catalog answers (a longer "
                "--catalog-timeout waits for it next time)",
                file=sys.stderr,
            )
            exit_code = 3
    return exit_code


def _store_runs(session: Any, uids: Any, timeout: float) -> bool:
    """Wait until the catalog has the runs (a progress bar counts their events). If the
    embedded catalog did not take everything (its server died and could not be restarted
    in time, say), start it again and import the spool: a remote catalog that is down gets
    the runs later, from ``ophyd-stem import-spool``."""
    from ophyd_stem.catalog import import_spool
    from ophyd_stem.catalog.spool import spooled_runs

    from .progress import wait_for_catalog

    if wait_for_catalog(session.writer, timeout):
        return True
    if session.config.catalog:
        return False
    print("the catalog fell behind: restarting it and importing the spool...", file=sys.stderr)
    session.writer.close(timeout=0)
    try:
        report = import_spool(session.settings)
    except Exception as error:  # the runs stay in the spool; say why, then exit status 3
        print(f"  import-spool failed: {type(error).__name__}: {error}", file=sys.stderr)
        return False
    print(f"  {report}", file=sys.stderr)
    left = {run.run_uid for run in spooled_runs(session.settings.spool_dir)}
    return not left.intersection(uids)


def _print_run_summary(session: Any, uid: str, wall: float, instrument: float, ok: bool) -> None:
    config = session.config
    data_dir = session.settings.data_dir
    where = config.catalog or f"{session.catalog_uri} (embedded; data in {data_dir})"
    source = config.bridge or session.instrument_label or f"digital twin, sample {config.sample}"
    print(f"run {uid}")
    print(f"  instrument  {source}")
    print(f"  catalog     {where}")
    print(f"  images      {session.settings.assets_dir}")
    print(
        f"  microscope  would have taken {_format_duration(instrument)} "
        f"(this run took {_format_duration(wall)})"
    )
    if ok:
        print("  stored      yes")
        print(f"  look at it  ophyd-stem show {uid[:8]}")
    else:
        print(
            "  stored      not yet: safe in the local spool, written by `ophyd-stem import-spool`"
        )
        print(f"  look at it  ophyd-stem show {uid[:8]}  (once stored)")


def _settings(args: argparse.Namespace) -> Any:
    """The data directory's settings (the embedded catalog, the spool)."""
    from ophyd_stem.catalog import CatalogSettings

    from .config import load_config

    config = load_config(catalog=args.catalog, api_key=args.api_key, data_dir=args.data_dir)
    return CatalogSettings(data_dir=Path(config.data_dir) if config.data_dir else None)


def _log_dir(args: argparse.Namespace) -> Path | None:
    """The data directory, for the log file (None when the settings cannot be read: the
    command itself says why)."""
    try:
        return _settings(args).data_dir
    except Exception:
        return None


def _open_catalog(args: argparse.Namespace, listing: bool = False, snapshot: bool = False) -> Any:
    from ophyd_stem.catalog import open_catalog

    from .config import load_config

    config = load_config(catalog=args.catalog, api_key=args.api_key, data_dir=args.data_dir)
    if config.catalog:
        return open_catalog(config.catalog, config.api_key, listing=listing, snapshot=snapshot)
    settings = _settings(args)
    from ophyd_stem.catalog import EmbeddedServer

    server = EmbeddedServer.find(settings)
    if server is not None:  # running: open it at once (no second health check)
        return open_catalog(server.uri, server.api_key, listing=listing, snapshot=snapshot)
    # something to read while it starts (seconds)
    print(f"starting the catalog server of {settings.data_dir} (it stays up "
          "for the next commands)...", file=sys.stderr, flush=True)  # fmt: skip
    return open_catalog(settings=settings, listing=listing, snapshot=snapshot)


def _cmd_runs(args: argparse.Namespace) -> int:
    from ophyd_stem.catalog import recent_runs

    catalog = _open_catalog(args, listing=True)
    runs = recent_runs(catalog, args.limit, settings=_settings(args))
    if not runs:
        print("no runs in the catalog yet; try `ophyd-stem run survey`")
        return 0
    print(f"{'scan':>5}  {'uid':8}  {'time':19}  {'plan':16}  {'sample':14}  {'events':>7}  status")
    for run in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.time))
        events = "" if run.num_events is None else run.num_events
        print(
            f"{run.scan_id!s:>5}  {run.uid[:8]}  {when:19}  {run.plan_name or '':16.16}  "
            f"{run.sample or '':14.14}  {events!s:>7}  {run.state}"
        )
    if any(run.waiting and not run.writing for run in runs):
        print("spooled runs wait in the data directory: `ophyd-stem import-spool` writes them")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    print(f"ophyd-stem show {args.run}: reading the run from the catalog...", file=sys.stderr,
          flush=True)  # fmt: skip
    from concurrent.futures import ThreadPoolExecutor

    from ophyd_stem.catalog import get_run

    # light clients: the report reads whole streams into numpy, seconds quicker without
    # bluesky-tiled-plugins and dask (see ophyd_stem/catalog/_snapshot.py)
    catalog = _open_catalog(args, snapshot=True)
    run = get_run(catalog, args.run)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # the server reads the run out while matplotlib and the figures are imported here
        loading = pool.submit(run.load) if hasattr(run, "load") else None
        from .analysis.report import run_report

        if loading is not None:
            loading.result()
    # no thread is left at work here: the workflow's figures can be drawn in forked children
    text, png = run_report(run, Path(args.out), apart=True)
    print(text)
    print(f"figure: {png}")
    if args.latent:
        from agents.runs import unpack_run

        from .analysis.latent import trajectory_figure

        print(f"latent trajectory: {trajectory_figure(unpack_run(run), Path(args.out))}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    print(f"ophyd-stem export {args.run}: reading the run from the catalog...", file=sys.stderr,
          flush=True)  # fmt: skip
    from ophyd_stem.catalog import get_run

    from .analysis.export import export_run

    run = get_run(_open_catalog(args), args.run)
    for path in export_run(run, Path(args.out), args.format):
        print(path)
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from ophyd_stem.catalog import get_run

    from .analysis.replay import RunTable, as_experiment, replay

    catalog = _open_catalog(args)
    run = get_run(catalog, args.run)
    uid = run.metadata["start"]["uid"]
    out = Path(args.out)
    callbacks: list[Any] = []
    view = None
    if "table" in args.callbacks:
        callbacks.append(RunTable())
    if "plot" in args.callbacks:
        from .views import LiveView

        view = LiveView(out_dir=out)
        callbacks.append(view)
    if callbacks:
        count = replay(run, callbacks)
        print(f"replayed {count} documents of run {uid[:8]}")
        if view is not None:
            print(f"figure: {view.last_png}")
    exit_code = 0
    if args.forensics:
        from .analysis.forensics import forensics

        report = forensics(run)
        print(report.text())
        exit_code = 0 if report.ok else 4
    if args.counterfactual:
        from .analysis.batch import counterfactuals
        from .config import load_config

        compute = load_config(compute=args.compute).compute
        for result in counterfactuals(run, args.counterfactual, out_dir=out, compute=compute):
            print(result.text())
    if args.latent:
        from agents.runs import unpack_run

        from .analysis.latent import trajectory_figure

        print(f"latent trajectory: {trajectory_figure(unpack_run(run), out)}")
    if args.as_experiment:
        recording = as_experiment(run, out)
        print(f"recording: {recording.path}  ({recording.metadata['note']})")
        print(
            "  serve it: dm-bridge serve --backend replay --file "
            f"{recording.path} --port 5555, then: ophyd-stem run dkl --bridge "
            "tcp://127.0.0.1:5555; in Python: "
            "ophyd_stem.app.analysis.replay.replay_microscope(path)"
        )
    if not (
        callbacks or args.forensics or args.counterfactual or args.as_experiment or args.latent
    ):
        print(
            "nothing asked: give --callbacks, --forensics, --counterfactual, --latent or "
            "--as-experiment"
        )
        return 2
    return exit_code


def _cmd_import_spool(args: argparse.Namespace) -> int:
    from ophyd_stem.catalog import CatalogSettings, import_spool

    from .config import load_config

    config = load_config(catalog=args.catalog, api_key=args.api_key, data_dir=args.data_dir)
    settings = CatalogSettings(data_dir=Path(config.data_dir) if config.data_dir else None)
    report = import_spool(settings, config.catalog, config.api_key)
    print(report)
    return 0 if getattr(report, "ok", True) else 3


def _add_serve_command(commands: Any) -> None:
    """``ophyd-stem serve``: the facility (app/facility.py), and the catalog server alone."""
    from .facility import add_serve_parser

    add_serve_parser(commands, _command, _session_arguments)


def _cmd_train_ensemble(args: argparse.Namespace) -> int:
    from .config import load_config
    from .default_ensemble import train_default_ensemble

    config = load_config(device=args.device, compute=args.compute)
    train_default_ensemble(
        args.name,
        members=args.members,
        steps=args.steps,
        images=args.images,
        size=args.size,
        seed=args.seed,
        overwrite=args.force,
        log=lambda line: print(line, flush=True),
        device=config.device or "auto",
        compute=config.compute,
        calibration_images=args.calibration_images,
    )
    return 0


def _profile_dir() -> Path:
    repo = Path(__file__).resolve().parents[2]
    profile = repo / "profile_collection" / "profile_ophyd_stem"
    if profile.is_dir():
        return profile
    # An installed copy without the repository: a minimal profile that does the same.
    fallback = Path("~/.ipython/profile_ophyd_stem").expanduser()
    startup = fallback / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-session.py").write_text(
        "from ophyd_stem.app.session import configure_session\n"
        "session = configure_session(get_ipython().user_ns)\n"
    )
    return fallback


def _cmd_console(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    for name, value in (
        ("OPHYD_STEM_BRIDGE", args.bridge),
        ("OPHYD_STEM_SERVER_KEY", args.server_key),
        ("OPHYD_STEM_CLIENT_KEY", args.client_key),
        ("OPHYD_STEM_CATALOG", args.catalog),
        ("OPHYD_STEM_API_KEY", args.api_key),
        ("OPHYD_STEM_DATA_DIR", args.data_dir),
        ("OPHYD_STEM_OPERATOR", args.operator),
        ("OPHYD_STEM_SAMPLE", args.sample),
        ("OPHYD_STEM_DEVICE", args.device),
        ("OPHYD_STEM_COMPUTE", args.compute),
    ):
        if value:
            env[name] = value
    command = [sys.executable, "-m", "IPython", f"--profile-dir={_profile_dir()}", *args.ipython]
    os.execvpe(command[0], command, env)
    return 0  # not reached


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
        _compute_arguments(sub)
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

    from .queue import add_control_parser

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
    console.add_argument("ipython", nargs=argparse.REMAINDER, help="arguments for IPython")
    console.set_defaults(func=_cmd_console)
    return parser


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
        print(f"ophyd-stem: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("(set OPHYD_STEM_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
