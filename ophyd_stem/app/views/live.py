"""The live figure: a Bluesky callback that redraws a workflow's figure from the documents.

:class:`LiveView` keeps the current run's documents and redraws the figure of the run's
workflow (:mod:`.figures`). Subscribe it to the RunEngine (the console does when plots are
on) or feed it a recorded run (``ophyd-stem replay UID --callbacks plot``).

Headless (the Agg backend) the figure is written to PNG files; with a display it is shown
and updated as the run goes (through bluesky's Qt teleporter when the backend is Qt).

Example (edge-guided EELS on the digital twin, 10 spectra; the console subscribes a view
for you when plots are on):
    >>> import bluesky.plan_stubs as bps
    >>> from bluesky import RunEngine
    >>> from ophyd_stem.app.views.live import LiveView
    >>> from ophyd_stem.sim import twin_microscope
    >>> from plans import edge_eels
    >>> RE = RunEngine()
    >>> microscope = twin_microscope("nanowire")
    >>> RE(bps.mv(microscope.scan.width, 64, microscope.scan.height, 64))
    ()
    >>> view = LiveView(out_dir="figures")         # PNGs at each step and at the end
    >>> token = RE.subscribe(view)
    >>> uids = RE(edge_eels(microscope.scan, microscope.eels_points,
    ...                     agent_kwargs={"budget": 10}))
    >>> view.last_png
    PosixPath('figures/edge_eels-1-....png')
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from bluesky.callbacks.mpl_plotting import QtAwareCallback

from agents.runs import unpack_run

from .decor import TITLE_ROOM
from .figures import _figure, draw

__all__ = ["LiveView"]

log = logging.getLogger(__name__)

#: streams whose events change the figure (primary spectra alone do not: the decision follows)
_REDRAW_STREAMS = (
    "survey",
    "decisions",
    "agent_maps",
    "edge_map",
    "edge_points",
    "interventions",
    "logstar",
    "logstar_front",
    "atoms",
    "dcnn_maps",
    "drift",
    "zero_loss",
    "latent_map",
)


def _has_display() -> bool:
    import matplotlib

    return matplotlib.get_backend().lower() not in {"agg", "pdf", "svg", "ps", "template"}


class LiveView(QtAwareCallback):
    """The live figure of adaptive and LoG* runs, as a Bluesky callback.

    Args:
        out_dir: write the figure as ``<plan>-<scan_id>-<uid8>.png`` here (every
            ``save_every`` events and at the run's end); None: no files.
        show: draw on screen, updated at every step (default: when matplotlib has a
            display). Off screen the figure is redrawn only when the plan waits for the
            operator, every ``save_every`` events and at the end.
        save_every: also redraw and write the PNG every this many decision (map,
            intervention...) events (0: at the end only).
        plans: plan names to draw (others are ignored).

    Attributes:
        last_png: the last PNG written.
        drawn: what the last redraw drew (``{"measured": 12, "next": 1, ...}``).
        figure: the matplotlib figure.
        zero_loss_figure, last_zero_loss_png: a workflow run that aligns its spectra on the
            zero-loss peak gets that alignment's figure too (written beside the other PNG).
    """

    def __init__(
        self,
        out_dir: str | Path | None = None,
        show: bool | None = None,
        save_every: int = 0,
        plans: tuple[str, ...] = (
            "adaptive_eels",
            "edge_eels",
            "logstar",
            "dcnn",
            "drift_corrected_edge_eels",
            "spectrum_image",
            "latent_eels",
        ),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.show = _has_display() if show is None else bool(show)
        self.save_every = int(save_every)
        self.plans = tuple(plans)
        self.figure: Any = None
        #: the zero-loss alignment's figure (runs that align and are not spectrum images)
        self.zero_loss_figure: Any = None
        self.last_zero_loss_png: Path | None = None
        self.last_png: Path | None = None
        self.drawn: dict[str, int] = {}
        self._docs: list[tuple[str, dict]] = []
        self._streams: dict[str, str] = {}
        self._frames: dict[str, Any] = {}
        self._active = False
        self._redraws = 0
        self._events = 0

    def __call__(self, name: str, doc: dict, *, escape: bool = False) -> Any:
        # With Qt, the teleporter calls again (escape=True) in the main thread: keep once.
        if not escape:
            if name == "start":
                self._active = doc.get("plan_name") in self.plans
                self._docs, self._streams, self._frames = [], {}, {}
                self._redraws = self._events = 0
            if self._active:
                self._docs.append((name, doc))
        if not self._active:
            return None
        return super().__call__(name, doc, escape=escape)

    def descriptor(self, doc: dict) -> None:
        self._streams[doc["uid"]] = doc["name"]

    def _maybe_redraw(self, stream: str | None) -> None:
        # Unseen figures are drawn when someone may look: before the plan waits for the
        # operator (interventions), every `save_every` events, and at the end; a figure on
        # screen follows every step. A redraw costs ~0.1-0.2 s, paid by the RunEngine
        # thread unless Qt's teleporter moves it to the main thread.
        if stream not in _REDRAW_STREAMS:
            return
        self._events += 1
        due = self.save_every and self._events % self.save_every == 0
        if self.show or due or stream == "interventions":
            self.redraw()

    def event(self, doc: dict) -> None:
        self._maybe_redraw(self._streams.get(doc["descriptor"]))

    def event_page(self, doc: dict) -> None:
        self._maybe_redraw(self._streams.get(doc["descriptor"]))

    def stop(self, doc: dict) -> None:
        self.redraw(final=True)

    def _fill(self, resource: dict, datum: dict) -> Any:
        """Survey frames, read once per datum (a live run may still be writing the file)."""
        if datum["uid"] not in self._frames:
            from agents.runs import _read_external

            try:
                frames = _read_external(
                    resource, datum["indices"]["start"], datum["indices"]["stop"]
                )
            except (OSError, KeyError) as exc:  # not flushed yet: try at the next redraw
                log.debug("survey image not readable yet: %s", exc)
                return None
            self._frames[datum["uid"]] = frames
        return self._frames[datum["uid"]]

    def redraw(self, final: bool = False) -> None:
        """Redraw from the documents so far; never lets a drawing error stop a run."""
        try:
            data = unpack_run(self._docs, fill_external=self._fill)
            if self.figure is None:
                self.figure = _figure(data.plan_name, self.show)
            self.drawn = draw(self.figure, data)
            self._redraws += 1
            if self.show:
                self.figure.canvas.draw_idle()
                self.figure.canvas.flush_events()
            due = self.save_every and self._events % self.save_every == 0
            if self.out_dir is not None and (final or due):
                name = f"{data.plan_name}-{data.start.get('scan_id')}-{data.uid[:8]}.png"
                self.figure.tight_layout(rect=TITLE_ROOM)
                self.out_dir.mkdir(parents=True, exist_ok=True)
                self.last_png = self.out_dir / re.sub(r"[^\w.-]", "_", name)
                self.figure.savefig(self.last_png, dpi=80)
            if data.zero_loss and data.plan_name != "spectrum_image":
                self._redraw_zero_loss(data, final or bool(due))
        except Exception:  # a figure must never stop an experiment
            log.exception("the live view could not draw")

    def _redraw_zero_loss(self, data: Any, save: bool) -> None:
        """The zero-loss alignment of a workflow run (its own figure beside the workflow's:
        where each spectrum's peak was, the walk, the aligned peak)."""
        from .corrections import draw_zero_loss

        if self.zero_loss_figure is None:
            self.zero_loss_figure = _figure("spectrum_image", self.show)
        self.zero_loss_figure.clear()
        draw_zero_loss(self.zero_loss_figure, data)
        self.zero_loss_figure.suptitle(
            f"{data.plan_name} - scan {data.start.get('scan_id')}: zero-loss alignment"
        )
        if self.show:
            self.zero_loss_figure.canvas.draw_idle()
        if self.out_dir is not None and save:
            name = f"{data.plan_name}-{data.start.get('scan_id')}-{data.uid[:8]}-zero-loss.png"
            self.zero_loss_figure.tight_layout(rect=TITLE_ROOM)
            self.last_zero_loss_png = self.out_dir / re.sub(r"[^\w.-]", "_", name)
            self.zero_loss_figure.savefig(self.last_zero_loss_png, dpi=80)
