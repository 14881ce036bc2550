"""``ophyd-stem show``: a run summarised in a few lines, drawn in PNGs, kept as HTML.

Every run gets the overview figure (survey image with the measured positions, spectra, a
grid's map). Runs with decisions (``adaptive_eels``, ``edge_eels``, ``logstar``) also get
their workflow's figure, the same one the live view draws (:mod:`ophyd_stem.app.views`),
and the summary says what was decided: best value, decisions by source, the operator's
interventions, where the data is. The text and the figures go into one HTML page beside
the PNGs.
"""

from __future__ import annotations

import collections
import html
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..views.decor import TITLE_ROOM, run_title
from ..views.overview import overview

__all__ = ["catalog_access", "decision_summary", "plan_line", "run_link", "run_report"]


def _streams(run: Any) -> list[str]:
    return list(run)


def _find_image(run: Any) -> tuple[str, str] | None:
    """(stream, key) of the first survey image in the run."""
    for stream in sorted(_streams(run), key=lambda s: s != "survey"):
        for key in run[stream]:
            if key.startswith("scan-") and key not in ("scan-pixel_size",):
                return stream, key
    return None


def run_report(
    run: Any, out_dir: Path, *, apart: bool = False, access: list[str] | None = None
) -> tuple[str, Path]:
    """Summarise ``run`` (a tiled Bluesky run) as text and write its figure to ``out_dir``.

    The figure (:func:`~ophyd_stem.app.views.overview.overview`) shows the survey image
    with where the spectra were measured, a map of the spectra's contrast and example
    spectra at its extremes.

    Args:
        run: the run's client.
        out_dir: where the PNGs and the HTML page go.
        apart: draw the workflow's figures in child processes (forked, on Linux) while
            this one draws the overview: each figure takes a CPU core for a fraction of a
            second. Only for a process with no other thread at work (``ophyd-stem show``):
            a fork copies no thread, and a lock one holds would stay held in the child.
        access: how to open the run's catalog link, printed under it
            (:func:`catalog_access`); None: nothing more than the link.

    Returns:
        The text summary and the path of the PNG.
    """
    from matplotlib.figure import Figure

    start = run.metadata["start"]
    stop = run.metadata.get("stop") or {}
    uid = start["uid"]
    lines = [
        f"run {uid}  (scan {start.get('scan_id')})",
        f"  plan        {plan_line(start)}",
        f"  started     {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(start['time']))}",
        f"  sample      {start.get('sample')}   operator {start.get('operator', '-')}",
        f"  instrument  {start.get('instrument', {}).get('name', '-')}",
        f"  status      {stop.get('exit_status', 'running or interrupted')}",
    ]
    counts = stop.get("num_events") or {}
    lines.append(f"  streams     {', '.join(f'{k}: {v}' for k, v in counts.items())}")

    from agents.runs import unpack_run

    data = unpack_run(run)
    image_ref = _find_image(run)
    if data.spectra is not None and len(data.spectra):
        lines.append(f"  spectra     {data.spectra.shape[0]} x {data.spectra.shape[1]} channels")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"run-{start.get('scan_id')}-{uid[:8]}.png"
    overview_line = len(lines)  # where the overview says it had nothing to draw

    figures = [(png, overview_caption(data))]
    later: list[Callable[[], Any]] = []  # the workflow's figures, drawn after the overview
    workflows = (
        "adaptive_eels",
        "edge_eels",
        "logstar",
        "dcnn",
        "drift_corrected_edge_eels",
        "latent_eels",
    )
    aligned = bool(data.zero_loss)
    if start.get("plan_name") in workflows or aligned:
        from ..views import render
        from ..views.corrections import render_zero_loss
        from .corrections import correction_summary

        lines += decision_summary(data) + correction_summary(data)
        workflow = out_dir / f"run-{start.get('scan_id')}-{uid[:8]}-workflow.png"
        later.append(lambda: render(data, workflow))
        # a grid has no agent: its workflow figure is the zero-loss alignment
        grid = start.get("plan_name") == "spectrum_image"
        figures.append((workflow, ZERO_LOSS if grid else WORKFLOW))
        lines.append(f"  workflow    {workflow}")
        if aligned and not grid:
            zero_loss = out_dir / f"run-{start.get('scan_id')}-{uid[:8]}-zero-loss.png"
            later.append(lambda: render_zero_loss(data, zero_loss))
            figures.append((zero_loss, ZERO_LOSS))
            # not "zero loss": that is the summary's line of the alignment itself
            lines.append(f"  zlp figure  {zero_loss}")

    def draw_overview() -> None:
        fig = Figure()
        if not overview(fig, data, start.get("shape")):
            lines.insert(overview_line, "  (no survey image or spectra to draw)")
        fig.suptitle(run_title(start))
        fig.tight_layout(rect=TITLE_ROOM)
        fig.savefig(png, dpi=90)

    _draw(draw_overview, later, apart)
    lines += _where(run, image_ref, access or [])
    title = f"scan {start.get('scan_id')}: {start.get('plan_name')} on {start.get('sample')}"
    page = _write_html(
        out_dir / f"run-{start.get('scan_id')}-{uid[:8]}.html", title, lines, figures
    )
    lines.append(f"  summary     {page}")
    return "\n".join(lines), png


def _draw(first: Callable[[], Any], later: list[Callable[[], Any]], apart: bool) -> None:
    """Draw ``first`` here and then ``later``; with ``apart``, ``later`` in forked children
    meanwhile. A child that fails is drawn again here, where its error shows."""
    children = []
    if apart and later and sys.platform.startswith("linux") and hasattr(os, "fork"):
        sys.stdout.flush()
        sys.stderr.flush()
        for job in later:
            pid = os.fork()
            if pid == 0:  # the child: draw, then leave at once (no atexit, no buffers)
                code = 1
                try:
                    job()
                    code = 0
                finally:
                    os._exit(code)
            children.append((pid, job))
        later = []
    first()
    for job in later:
        job()
    for pid, job in children:
        if _wait_child(pid, timeout=CHILD_TIMEOUT) != 0:
            job()


#: seconds a forked figure may take before it is given up and drawn here instead (a child
#: that inherited a lock some library held at the fork would otherwise hang ``show``)
CHILD_TIMEOUT = 60.0


def _wait_child(pid: int, timeout: float) -> int:
    """The child's exit code, or -9 once it ran past ``timeout`` s and was killed."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -9
        time.sleep(0.01)


def decision_summary(data: Any) -> list[str]:
    """Lines on what a run decided: best value, decisions by source, interventions, atoms.

    Args:
        data: an unpacked run (:class:`agents.runs.RunData`).
    """
    lines = []
    values = data.values
    if len(values):
        best = int(np.argmax(values))
        sources = collections.Counter(data.decisions.get("source", []))
        lines.append(
            f"  best value  {values[best]:.5g}{_value_unit(data)} at "
            f"({data.decisions['x'][best]:.1f}, "
            f"{data.decisions['y'][best]:.1f}) px, measurement {best + 1} of {len(values)} "
            f"(step {int(data.decisions['step'][best])})"
        )
        lines.append(
            "  decisions   "
            + ", ".join(f"{n} {k}" for k, n in sorted(sources.items()))
            + f"; scalarizer {_scalarizer_words(data)}"
        )
        agent = _agent_line(data)
        if agent:
            lines.append(agent)
        warning = _survey_warning(data)
        if warning:
            lines.append(f"  WARNING     {warning}")
    if len(data.edge_points):
        lines.append(f"  edge points {len(data.edge_points)} chosen along the edges")
    for record in data.logstar:
        lines.append(
            f"  LoG* image {record.get('image')}: {record.get('n_atoms')} atoms, front point "
            f"#{record.get('chosen')}" + (" (optimised)" if record.get("optimised") else "")
        )
        doubt = _logstar_doubt(record)
        if doubt:
            lines.append(f"  WARNING     LoG* image {record.get('image')} not plausible: {doubt}")
    if data.interventions:
        acts = [iv for iv in data.interventions if iv.get("who") != "agent"]
        kinds = collections.Counter(iv.get("kind") for iv in acts)
        who = sorted({str(iv.get("who")) for iv in acts})
        lines.append(
            f"  operator    {len(acts)} intervention(s) by {', '.join(who) or '-'}: "
            + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        )
        for iv in acts:
            when = time.strftime("%H:%M:%S", time.localtime(iv.get("requested", iv["time"])))
            after = json.dumps(iv.get("after"))
            lines.append(
                f"    {when} step {iv.get('step')}: {iv.get('kind')} by {iv.get('who')} -> "
                + (after if len(after) <= 70 else after[:67] + "...")
            )
    return lines


def _survey_warning(data: Any) -> str:
    """The agent's word on a survey it cannot learn from (DKL: a constant image), from the
    decisions' ``survey_warning`` or, in runs from before that field, their reports."""
    for warning in data.decisions.get("survey_warning") or []:
        if warning:
            return str(warning)
    for report in data.decisions.get("reports") or []:
        if isinstance(report, dict) and report.get("survey_warning"):
            return str(report["survey_warning"])
    return ""


def _logstar_doubt(record: dict[str, Any]) -> str:
    """Why a LoG* image's atoms are not plausible ("" when they are): the run's ``plausible``
    and ``reason``, or, in runs from before those fields, the recorded report's check."""
    if "plausible" in record:
        return "" if record["plausible"] else str(record.get("reason") or "see its report")
    report = record.get("report")
    check = (report.get("plausibility") if isinstance(report, dict) else None) or {}
    if check.get("ok", True):
        return ""
    return str(check.get("reason") or "; ".join(check.get("warnings") or []) or "see its report")


def _scalarizer_words(data: Any) -> str:
    """The run's scalarizer, and what ``auto`` chose where it did (``despike:auto:
    despike:edge:421:451:455:485``)."""
    from ..views.figures import auto_choice

    asked, chosen = str(data.plan_args.get("scalarizer")), auto_choice(data)
    return f"{asked}: {chosen}" if chosen else asked


def _value_unit(data: Any) -> str:
    """' counts·eV' after a value of the scalarizer in force at the end of the run (what the
    figures' axes say), or nothing where the scalarizer's values have no unit (a ratio)."""
    from ..views.figures import _scalarizer_in_force, scalarizer_label

    label = scalarizer_label(_scalarizer_in_force(data)[0])
    if label.endswith(")") and " (" in label:
        return " " + label.rsplit(" (", 1)[1][:-1]
    return ""


def plan_line(start: dict[str, Any]) -> str:
    """The plan and its arguments as a person reads them: ``name=value``, nothing unset,
    a device by its name, not a Python dict with ``'ScanEngine(name="scan")'`` and
    ``'agent': 'make_agent'`` in it (the factory the command passes: the ``agent`` line
    names the agent that decided).

    Example:
        >>> plan_line({"plan_name": "survey",
        ...            "plan_args": {"scan_engine": 'ScanEngine(name="scan")', "num": 1}})
        'survey (scan_engine=scan, num=1)'
        >>> plan_line({"plan_name": "spectrum_image",
        ...            "plan_args": {"rows": 32, "cols": 32, "region": None}})
        'spectrum_image (rows=32, cols=32)'
    """
    parts = []
    for key, value in (start.get("plan_args") or {}).items():
        if value is None or (key == "agent" and value == "make_agent"):
            continue
        device = re.fullmatch(r'\w+\(name="([^"]*)"\)', str(value))
        parts.append(f"{key}={device.group(1) if device else value}")
    name = str(start.get("plan_name"))
    return f"{name} ({', '.join(parts)})" if parts else name


def _agent_line(data: Any) -> str | None:
    """Which agent decided, from its recorded reports (the plan line shows only the factory
    the command passed, ``'agent': 'make_agent'``, for DKL, bandit and physics runs alike)."""
    from ..views.figures import _acquisition_name

    for report in reversed(data.decisions.get("reports") or []):
        if isinstance(report, dict) and report.get("agent"):
            how = _acquisition_name(data)
            return f"  agent       {report['agent']}" + (
                f" ({how})" if how and how != "acquisition" else ""
            )
    return None


def _where(run: Any, image_ref: tuple[str, str] | None, access: list[str]) -> list[str]:
    """Where the run's data lives: the catalog entry (and how to open it) and the image
    files."""
    lines = []
    uri = getattr(run, "uri", None)
    if uri:
        lines.append(f"  catalog     {uri}")
        lines += access
    if image_ref is not None:
        try:
            sources = run[image_ref[0]][image_ref[1]].data_sources()
            files = sorted({a.data_uri for ds in sources for a in ds.assets})
        except Exception:  # an older server or a run without files: nothing to add
            files = []
        for uri in files:
            lines.append(f"  image file  {uri.replace('file://localhost', '')}")
    return lines


def run_link(catalog_uri: str, uid: str) -> str:
    """The run's own address in the catalog (its metadata, JSON), as ``ophyd-stem show``
    prints it: the catalog's address alone is a server, not the run.

    Args:
        catalog_uri: the catalog's address: a Tiled server (``http://host:8000``, runs at its
            root) or its container of runs (``https://host/api/v1/metadata/stem``).
        uid: the run's uid.

    Example:
        >>> run_link("http://127.0.0.1:8000", "639ba5b1-8387")
        'http://127.0.0.1:8000/api/v1/metadata/639ba5b1-8387'
        >>> run_link("https://tiled.example.org/api/v1/metadata/stem/", "639ba5b1-8387")
        'https://tiled.example.org/api/v1/metadata/stem/639ba5b1-8387'
    """
    base = catalog_uri.rstrip("/")
    if "/api/v1/metadata" in base:
        return f"{base}/{uid}"
    return f"{base}/api/v1/metadata/{uid}"


def catalog_access(uid: str, *, data_dir: Path | None = None, uri: str | None = None) -> list[str]:
    """How to open the run that the ``catalog`` line links to, as lines of the summary.

    The link alone answers HTTP 401 in a browser: every catalog this project starts asks
    for an API key (the embedded one is a single-user Tiled server whose key lives in its
    data directory, mode 0600; a facility's has per-user keys). So say where the key is and
    how to add it, and give the line that opens the run from Python, which needs no key
    typed by hand for the embedded catalog. The key itself is never printed: the summary
    is also written to an HTML page meant to be copied and mailed.

    Args:
        uid: the run's uid (its first 8 characters are enough to find it).
        data_dir: the embedded catalog's data directory (the key file is in it).
        uri: a remote catalog's URI, when the run came from one (``data_dir`` is then
            ignored).

    Example:
        >>> lines = catalog_access("639ba5b1-8387", data_dir=Path("/data/stem"))
        >>> print(lines[0].strip())
        (JSON; for a browser append ?api_key=KEY, the key in /data/stem/server/api_key)
        >>> print(lines[1].split(";")[1])
         run = open_catalog(settings=CatalogSettings('/data/stem'))['639ba5b1']
    """
    from ophyd_stem.catalog import CatalogSettings

    indent = " " * 14
    if uri is not None:
        return [
            f"{indent}(JSON; for a browser append ?api_key=KEY, your API key, if the "
            "server asks for one)",
            "  in Python   from ophyd_stem.catalog import open_catalog; "
            f"run = open_catalog({uri!r}, api_key=KEY)[{uid[:8]!r}]",
        ]
    settings = CatalogSettings(data_dir)
    if settings.data_dir == CatalogSettings().data_dir:
        opener = "from ophyd_stem.catalog import open_catalog; run = open_catalog()"
    else:  # another data directory than a bare open_catalog() would find
        opener = (
            "from ophyd_stem.catalog import CatalogSettings, open_catalog; run = "
            f"open_catalog(settings=CatalogSettings({str(settings.data_dir)!r}))"
        )
    return [
        f"{indent}(JSON; for a browser append ?api_key=KEY, the key in "
        f"{settings.server_dir / 'api_key'})",
        f"  in Python   {opener}[{uid[:8]!r}]",
    ]


def overview_caption(data: Any) -> str:
    """The overview's caption: a run without spectra (a survey) shows its image alone."""
    if data.spectra is None or not len(data.spectra):
        return SURVEY
    return OVERVIEW


#: what each figure of ``show`` shows, as its caption on the HTML page
SURVEY = "Survey: the image as acquired, with its scale bar in nm."
OVERVIEW = (
    "Overview: the survey image with where the spectra were measured, their contrast, "
    "and example spectra from its lowest to its highest value (circled where measured)."
)
WORKFLOW = "Workflow: what the agent saw and decided (the same figure as the live view)."
ZERO_LOSS = (
    "Zero-loss alignment: where each spectrum's zero-loss peak was found, on the survey "
    "and in the order measured (with the walk of the energy scale), and the mean peak as "
    "measured and as aligned."
)


def _write_html(path: Path, title: str, lines: list[str], figures: list[tuple[Path, str]]) -> Path:
    """The summary and the figures on one page, each figure with a caption saying what it
    shows (the PNGs sit beside the page: the folder can be copied or mailed as it is)."""
    blocks = []
    for figure, caption in figures:
        blocks.append(
            f'<figure><img src="{html.escape(figure.name)}" alt="{html.escape(caption)}" '
            f'style="max-width:100%"><figcaption>{html.escape(caption)}</figcaption></figure>'
        )
    style = (
        "body{font-family:sans-serif;margin:1.5em;max-width:1400px}"
        # wrapped: a long plan line would otherwise hide behind a scroll bar
        "pre{background:#f4f4f4;padding:0.8em;white-space:pre-wrap}"
        "figure{margin:1.5em 0}figcaption{color:#444;font-size:0.9em}"
    )
    path.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>"
        + html.escape(title)
        + f"</title><style>{style}</style></head><body>\n<h1>"
        + html.escape(title)
        + "</h1>\n<pre>"
        + html.escape("\n".join(lines))
        + "</pre>\n"
        + "\n".join(blocks)
        + "\n</body></html>\n"
    )
    return path
