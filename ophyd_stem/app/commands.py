"""What each ``ophyd-stem`` command does, once :mod:`.cli` has parsed its options.

Each ``_cmd_NAME(args) -> exit status`` imports what it needs when it runs, so that parsing
the command line (and ``--help``) loads nothing heavy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__: list[str] = []


def _twin_options(args: argparse.Namespace) -> dict[str, Any]:
    """The twin's constructor options from the command line."""
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
    from dm_bridge.backends.twin.backend import sample_parameters_from_arguments

    params = sample_parameters_from_arguments(args.sample_param)
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
    from .waits import still_waiting

    entry = PLANS[args.plan]
    if args.queue:
        from .queue_commands import queue_run

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
    # (a first start of the local catalog server takes seconds, more on a busy machine)
    with still_waiting(f"connecting to {source} and the catalog"):
        session = _connect(args, twin_options, instrument)
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


def _connect(args: argparse.Namespace, twin_options: dict, instrument: Any) -> Any:
    """The command's session (RunEngine, devices, catalog writer) for ``args``."""
    from .session import configure_session

    return configure_session(
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
    from .analysis.report import catalog_access, run_link

    config = session.config
    data_dir = session.settings.data_dir
    source = config.bridge or session.instrument_label or f"digital twin, sample {config.sample}"
    print(f"run {uid}")
    print(f"  instrument  {source}")
    # The run's own address, and how to open it: the server's address alone is not the run,
    # and every catalog asks for an API key (a bare link answers 401 in a browser).
    uri = config.catalog or session.catalog_uri
    if uri:
        where = "" if config.catalog else f"  (embedded; data in {data_dir})"
        where += "" if ok else "  (once stored)"
        print(f"  catalog     {run_link(uri, uid)}{where}")
        access = (
            catalog_access(uid, uri=uri)
            if config.catalog
            else catalog_access(uid, data_dir=data_dir)
        )
        print("\n".join(access))
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

    from .waits import still_waiting

    with still_waiting("reading the catalog"):  # (seconds on a busy machine)
        catalog = _open_catalog(args, listing=True)
        runs = recent_runs(catalog, args.limit, settings=_settings(args))
    if not runs:
        print("no runs in the catalog yet; try `ophyd-stem run survey`")
        return 0
    # What each run acquired (spectra, survey images), not its events: a low-loss run records
    # a zero-loss alignment row per spectrum, which an event count would add to the spectra.
    header = f"{'scan':>5}  {'uid':8}  {'time':19}  {'plan':16}  {'sample':14}  {'acquired':20}"
    print(f"{header}  status")
    for run in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.time))
        print(
            f"{run.scan_id!s:>5}  {run.uid[:8]}  {when:19}  {run.plan_name or '':16.16}  "
            f"{run.sample or '':14.14}  {run.acquired:20}  {run.state}"
        )
    if any(run.waiting and not run.writing for run in runs):
        print("spooled runs wait in the data directory: `ophyd-stem import-spool` writes them")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    print(f"ophyd-stem show {args.run}: reading the run from the catalog...", file=sys.stderr,
          flush=True)  # fmt: skip
    from concurrent.futures import ThreadPoolExecutor

    from ophyd_stem.catalog import get_run

    from .waits import still_waiting

    # light clients: the report reads whole streams into numpy, seconds quicker without
    # bluesky-tiled-plugins and dask (see ophyd_stem/catalog/_snapshot.py)
    with still_waiting(f"reading run {args.run}"), ThreadPoolExecutor(max_workers=1) as pool:
        catalog = _open_catalog(args, snapshot=True)
        run = get_run(catalog, args.run)
        # the server reads the run out while matplotlib and the figures are imported here
        loading = pool.submit(run.load) if hasattr(run, "load") else None
        from .analysis.report import run_report

        if loading is not None:
            loading.result()
    # no thread is left at work here (the waiting line's included): the workflow's figures
    # can be drawn in forked children
    text, png = run_report(run, Path(args.out), apart=True, access=_catalog_access(args, run))
    print(text)
    print(f"figure: {png}")
    if args.latent:
        from agents.runs import unpack_run

        from .analysis.latent import trajectory_figure

        print(f"latent trajectory: {trajectory_figure(unpack_run(run), Path(args.out))}")
    return 0


def _catalog_access(args: argparse.Namespace, run: Any) -> list[str]:
    """How to open the run's catalog link: it needs the catalog's API key (see
    :func:`~ophyd_stem.app.analysis.report.catalog_access`)."""
    from .analysis.report import catalog_access
    from .config import load_config

    config = load_config(catalog=args.catalog, api_key=args.api_key, data_dir=args.data_dir)
    uid = run.metadata["start"]["uid"]
    if config.catalog:
        return catalog_access(uid, uri=config.catalog)
    return catalog_access(uid, data_dir=_settings(args).data_dir)


def _cmd_export(args: argparse.Namespace) -> int:
    print(f"ophyd-stem export {args.run}: reading the run from the catalog...", file=sys.stderr,
          flush=True)  # fmt: skip
    from concurrent.futures import ThreadPoolExecutor

    from ophyd_stem.catalog import get_run

    # light clients, as show: same files, a second quicker (no bluesky-tiled-plugins, dask)
    run = get_run(_open_catalog(args, snapshot=True), args.run)
    from .analysis.export import export_run, read_ahead, writer

    with ThreadPoolExecutor(max_workers=1) as pool:
        # the server reads what the export needs while rosettasciio is imported here
        reading = pool.submit(read_ahead, run)
        writer(args.format)
        reading.result()
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
            "stream://127.0.0.1:5555; in Python: "
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
    from ophyd_stem.catalog import CatalogSettings, CatalogUnreachable, import_spool

    from .config import load_config

    config = load_config(catalog=args.catalog, api_key=args.api_key, data_dir=args.data_dir)
    settings = CatalogSettings(data_dir=Path(config.data_dir) if config.data_dir else None)
    try:
        report = import_spool(settings, config.catalog, config.api_key)
    except CatalogUnreachable as error:  # what happened, what is safe, what to do
        print(
            f"ophyd-stem import-spool: {error}.\nNothing was lost: the runs stay in "
            f"{settings.spool_dir}; run `ophyd-stem import-spool` again once the catalog "
            "answers.",
            file=sys.stderr,
        )
        return 3
    if not any((report.imported, report.already_there, report.in_use, report.failed)):
        print(f"nothing to import: the spool ({settings.spool_dir}) is empty, every run "
              "reached the catalog")  # fmt: skip
        return 0
    print(report)
    return 0 if getattr(report, "ok", True) else 3


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
    # IPython's own options come after "--" (``ophyd-stem console -- -c CODE``): argparse keeps
    # that separator in the remainder, and IPython would take what follows it as a file name
    ipython = args.ipython[1:] if args.ipython[:1] == ["--"] else args.ipython
    command = [sys.executable, "-m", "IPython", f"--profile-dir={_profile_dir()}", *ipython]
    os.execvpe(command[0], command, env)
    return 0  # not reached
