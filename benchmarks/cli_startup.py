"""How fast do ``ophyd-stem`` commands answer? First output and completion of each command,
with the embedded catalog server already alive (the usual case: it outlives commands) side by
side with the first command of a data directory (which starts the server).

In a temporary data directory it makes three runs (``run survey``, a default ``run grid``
of 32 x 32 spectra and a default ``run dkl`` of 30 steps), then times, for each command, the
first byte on stdout or stderr and the exit, with the server stopped beforehand (``cold``)
and alive (``warm``). ``show`` is timed on the grid run and on the adaptive run, and beside
it the way ``show`` read a run before (``before``: bluesky-tiled-plugins' run clients and
tiled's dask arrays, then the same report), in the same run of the benchmark; ``export -1``
(the adaptive run, HyperSpy files) likewise beside the same export through those clients,
and the files of both must be the same bytes. Every link to the catalog a command prints is
fetched with the catalog's API key and must answer 200 after the command exited.

Targets (issue 11): first output of any command within 1 s; ``runs``, ``show`` and ``export``
done within 2 s on a quiet machine with the server alive. The load average is printed: on a
busy 2-core machine the figures grow with it (the commands are mostly Python imports and a
few requests).

    python benchmarks/cli_startup.py             # 3 repeats, the median of each
    python benchmarks/cli_startup.py --repeat 5
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import httpx

from ophyd_stem.catalog import CatalogSettings, EmbeddedServer

BIN = Path(sys.executable).parent / "ophyd-stem"
FIRST_OUTPUT_TARGET = 1.0  # s
DONE_TARGET = 2.0  # s, runs and show with the server alive


#: ``show`` as it read a run before the snapshot clients (the baseline, run in the same
#: benchmark): bluesky-tiled-plugins' run clients, dask arrays, then the same report
BEFORE = """
import sys
print(f"show {sys.argv[1]} (before): reading the run from the catalog...", file=sys.stderr,
      flush=True)
from pathlib import Path
from ophyd_stem.app.analysis.report import run_report
from ophyd_stem.catalog import get_run, open_catalog
text, png = run_report(get_run(open_catalog(), sys.argv[1]), Path(sys.argv[2]))
print(text)
print(f"figure: {png}")
"""

#: ``export`` as it read a run before it used the snapshot clients (the baseline)
EXPORT_BEFORE = """
import sys
print(f"export {sys.argv[1]} (before): reading the run from the catalog...", file=sys.stderr,
      flush=True)
from pathlib import Path
from ophyd_stem.app.analysis.export import export_run
from ophyd_stem.catalog import get_run, open_catalog
for path in export_run(get_run(open_catalog(), sys.argv[1]), Path(sys.argv[2])):
    print(path)
"""


def timed(command: List[str], env: Dict[str, str]) -> Tuple[float, float, str, int]:
    """(first output s, done s, stdout + stderr, exit status) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    first = None
    chunks: List[bytes] = []
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        selector.register(proc.stderr, selectors.EVENT_READ)
        open_streams = 2
        while open_streams:
            for key, _ in selector.select(timeout=120):
                data = os.read(key.fileobj.fileno(), 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                if first is None:
                    first = time.perf_counter() - start
                chunks.append(data)
    code = proc.wait(timeout=120)
    done = time.perf_counter() - start
    return (first if first is not None else done), done, b"".join(chunks).decode(), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (median)")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="ophyd-stem-startup-"))
    env = dict(os.environ)
    # Unbuffered, as on a terminal: a pipe would otherwise hold the first line until exit.
    env.update(
        OPHYD_STEM_DATA_DIR=str(data_dir / "data"),
        OPHYD_STEM_CONFIG=str(data_dir / "no-config.toml"),
        MPLBACKEND="Agg",
        PYTHONUNBUFFERED="1",
        PYTHONWARNINGS="ignore",
    )
    for name in ("OPHYD_STEM_BRIDGE", "OPHYD_STEM_CATALOG", "OPHYD_STEM_API_KEY", "TILED_API_KEY"):
        env.pop(name, None)
    settings = CatalogSettings(data_dir / "data")
    loads = [" ".join(f"{x:.2f}" for x in os.getloadavg())]
    rows = []
    links_ok, links = 0, 0
    try:
        uids = {}
        for setup in (["run", "survey", "--size", "64"], ["run", "grid"], ["run", "dkl"]):
            result = subprocess.run(
                [str(BIN), *setup], env=env, capture_output=True, text=True, timeout=900
            )
            if result.returncode != 0:
                raise SystemExit(f"ophyd-stem {' '.join(setup)} failed:\n{result.stderr[-2000:]}")
            uids[setup[1]] = re.findall(r"ophyd-stem show (\w+)", result.stdout)[-1]
        figures_dir = str(data_dir / "figures")
        export_before = str(data_dir / "export-before")
        commands = {
            "--help": [str(BIN), "--help"],
            "runs": [str(BIN), "runs"],
            "show grid": [str(BIN), "show", uids["grid"], "--out", figures_dir],
            "show grid, before": [sys.executable, "-c", BEFORE, uids["grid"], figures_dir],
            "show dkl": [str(BIN), "show", uids["dkl"], "--out", figures_dir],
            "show dkl, before": [sys.executable, "-c", BEFORE, uids["dkl"], figures_dir],
            "serve --status": [str(BIN), "serve", "--status"],
            "export -1": [str(BIN), "export", "-1", "--out", str(data_dir / "export")],
            "export -1, before": [sys.executable, "-c", EXPORT_BEFORE, "-1", export_before],
        }
        key = (settings.server_dir / "api_key").read_text().strip()
        for label, argv in commands.items():
            figures = {}
            for state in ("cold", "warm"):
                firsts, dones = [], []
                for _ in range(args.repeat if state == "warm" else 1):  # a start is slow
                    if state == "cold":
                        server = EmbeddedServer.find(settings)
                        if server is not None:
                            server.stop()
                    first, done, output, code = timed(argv, env)
                    if code != 0 and label != "serve --status":  # 1 when not running
                        raise SystemExit(f"{label} failed:\n{output[-2000:]}")
                    firsts.append(first)
                    dones.append(done)
                    if state == "warm":
                        # the catalog's links (--help's examples name made-up servers)
                        for link in set(re.findall(r"http://127\.0\.0\.1[^\s)'\"]*", output)):
                            links += 1
                            reply = httpx.get(link, headers={"Authorization": f"Apikey {key}"})
                            links_ok += reply.status_code == 200
                figures[state] = (statistics.median(firsts), statistics.median(dones))
            rows.append((label, figures))
            print(f"  {label}: done", flush=True)
        # once more each, from the same server: the files name the catalog's address (its
        # port changes when a cold start starts it again)
        ours, before = data_dir / "export-check", data_dir / "export-check-before"
        for argv, folder in (
            (commands["export -1"], ours),
            (commands["export -1, before"], before),
        ):
            subprocess.run([*argv[:-1], str(folder)], env=env, capture_output=True, timeout=300)
        names = sorted(p.name for p in ours.iterdir())
        same_files = names == sorted(p.name for p in before.iterdir()) and all(
            (ours / name).read_bytes() == (before / name).read_bytes() for name in names
        )
    finally:
        loads.append(" ".join(f"{x:.2f}" for x in os.getloadavg()))
        server = EmbeddedServer.find(settings)
        if server is not None:
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    print(
        f"\n{os.cpu_count()} CPUs; load average (1, 5, 15 min) before: {loads[0]}, "
        f"after: {loads[1]}; cold: one run, warm: median of {args.repeat}"
    )
    header = (
        f"{'command':<18} {'cold: first out':>15} {'done':>7}   {'warm: first out':>15} "
        f"{'done':>7}   targets (warm)"
    )
    print(header)
    print("-" * len(header))
    for label, figures in rows:
        (cold_first, cold_done), (warm_first, warm_done) = figures["cold"], figures["warm"]
        verdict = f"first <= {FIRST_OUTPUT_TARGET:g} s " + (
            "met" if warm_first <= FIRST_OUTPUT_TARGET else "NOT met"
        )
        if label in ("runs", "show grid", "show dkl", "export -1"):
            verdict += f", done <= {DONE_TARGET:g} s " + (
                "met" if warm_done <= DONE_TARGET else "NOT met"
            )
        print(
            f"{label:<18} {cold_first:>13.2f} s {cold_done:>5.2f} s   {warm_first:>13.2f} s "
            f"{warm_done:>5.2f} s   {verdict}"
        )
    print(f"\nprinted links that answer (200, after the command exited): {links_ok}/{links}")
    same = "yes" if same_files else "NO"
    print(f"export -1 wrote the same files, byte for byte, as before: {same}")
    print(
        "cold: the catalog server stopped before the command (it starts it); warm: alive. "
        "first out: first byte on stdout or stderr; done: the command exited; "
        "show ..., before: the same report read through bluesky-tiled-plugins' clients "
        "(how show read a run before); export -1, before: the same export read through "
        "them too"
    )


if __name__ == "__main__":
    main()
