"""One progress display per run, driven by the documents (so it works for fly scans too).

:class:`RunProgress` draws a bar with counts; :class:`ConsoleOutput` decides, run by run,
between the bar and BestEffortCallback's table, so the two never write over each other: a
short run of scalars (``bp.count``, a small ``bp.scan``) gets the table a person reads row
by row; a spectrum image or an adaptive run (hundreds of spectra) gets the bar.
:func:`wait_for_catalog` shows the catalog catching up after a run, with counts.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from bluesky.callbacks.core import CallbackBase
from tqdm import tqdm

__all__ = ["ConsoleOutput", "RunProgress", "wait_for_catalog"]

#: runs with more points than this (or an unknown number) get the bar instead of the table
TABLE_MAX_ROWS = 50


class RunProgress(CallbackBase):
    """Shows how many points of the current run have been measured.

    The total is the start document's ``num_points`` when the plan declares it; events and
    event pages of every stream but the survey and decision streams advance the bar. An
    adaptive plan often learns during the run how many points it will really take (the
    edge sites a survey holds, fewer than its budget): it names, in its start document,
    the data key that records that number (``num_points_key``, e.g. ``"edge-n_points"``)
    and the bar's total follows it when it is recorded. A run that measures more than
    its total (the operator added points) raises the total as it goes; a run that ends
    well short of its total (the agent had nothing more to measure) ends the bar at what
    it measured, 100 %; a run that fails or is stopped keeps its bar where it stopped,
    with the reason.

    Args:
        file: where to draw (default stderr, so stdout stays clean for results).
        ignore_streams: streams that do not count as measured points.
    """

    def __init__(
        self,
        file: TextIO | None = None,
        ignore_streams: tuple[str, ...] = (
            "survey",
            "baseline",
            "decisions",
            "agent_maps",
            "interventions",
            "edge_map",
            "edge_points",
            "atoms",
            "logstar",
            "logstar_front",
            "dcnn",
            "dcnn_maps",
            "drift",
            "drift_images",
            "latent_map",
            "zero_loss",
        ),
    ) -> None:
        super().__init__()
        self.file = file or sys.stderr
        self.ignore_streams = ignore_streams
        #: off for runs whose progress the table shows (:class:`ConsoleOutput`)
        self.enabled = True
        self._bar: tqdm | None = None
        self._run: dict[str, Any] | None = None
        self._counted: set[str] = set()
        self._total: int | None = None

    def start(self, doc: dict[str, Any]) -> None:
        self._close()
        self._counted = set()
        self._total = doc.get("num_points") or None
        # The bar appears with the first measured point, below what other callbacks print
        # when the run starts (the BestEffortCallback's heading).
        self._run = doc if self.enabled else None

    def _open(self) -> tqdm | None:
        if self._bar is None and self._run is not None:
            self._bar = tqdm(
                total=self._total,
                desc=str(self._run.get("plan_name", "run")),
                unit="pt",
                file=self.file,
                dynamic_ncols=True,
                leave=True,
            )
        return self._bar

    def descriptor(self, doc: dict[str, Any]) -> None:
        if doc.get("name") not in self.ignore_streams:
            self._counted.add(doc["uid"])

    def event(self, doc: dict[str, Any]) -> None:
        self._announced(doc["data"])
        if doc["descriptor"] in self._counted:
            self._advance(1)

    def event_page(self, doc: dict[str, Any]) -> None:
        self._announced(doc["data"])
        if doc["descriptor"] in self._counted:
            self._advance(len(doc["seq_num"]))

    def _announced(self, data: dict[str, Any]) -> None:
        """The plan recorded how many points it will take: the bar's new total."""
        key = self._run.get("num_points_key") if self._run is not None else None
        if key is None or key not in data:
            return
        value = data[key]
        if isinstance(value, list):  # an event page: the latest
            value = value[-1] if value else None
        try:
            total = int(value)
        except (TypeError, ValueError):
            return
        self._total = max(total, 0)
        if self._bar is not None:
            self._bar.total = max(self._total, self._bar.n)
            self._bar.refresh()

    def _advance(self, points: int) -> None:
        bar = self._open()
        if bar is None:
            return
        if bar.total is not None and bar.n + points > bar.total:
            bar.total = bar.n + points  # more than announced (points added): never past 100 %
        bar.update(points)

    def stop(self, doc: dict[str, Any]) -> None:
        if self._bar is not None:
            if doc.get("exit_status") != "success":
                self._bar.set_postfix_str(doc.get("exit_status", ""))
            elif self._bar.total != self._bar.n:
                # the plan ended well with fewer points than it announced (an agent with
                # nothing more to measure, a veto): done is 100 %
                self._bar.total = self._bar.n
                self._bar.refresh()
        self._close()
        self._run = None

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def wait_for_catalog(writer: Any, timeout: float | None, file: TextIO | None = None) -> bool:
    """Wait until the catalog has everything the writer received, with a progress bar.

    The bar counts events (the spectra and images of the run) as the catalog confirms them;
    nothing is drawn when the catalog already has everything.

    Args:
        writer: a :class:`~ophyd_stem.catalog.CatalogWriter`.
        timeout: seconds to wait at most (None: as long as it takes).
        file: where to draw (default stderr).

    Returns:
        True if the catalog has every document.
    """
    status = writer.status()
    if status.queued == 0:
        return status.held == 0 and status.written == status.received
    bar = tqdm(
        total=max(status.received_events, 1),
        initial=min(status.written_events, status.received_events),
        desc="catalog",
        unit="ev",
        file=file or sys.stderr,
        dynamic_ncols=True,
        leave=True,
    )

    def show(current: Any) -> None:
        bar.total = max(current.received_events, 1)
        bar.n = min(current.written_events, bar.total)
        waiting = current.queued
        note = f"{waiting} document(s) to write" if waiting else "written"
        if current.state == "retrying":
            note = "catalog away, retrying; " + note
        bar.set_postfix_str(note, refresh=False)
        bar.refresh()

    try:
        return writer.flush(timeout=timeout, progress=show)
    finally:
        show(writer.status())
        bar.close()


class ConsoleOutput(CallbackBase):
    """Chooses one display per run: BestEffortCallback's table or the progress bar.

    Subscribe it, then the :class:`RunProgress`, *before* the BestEffortCallback (the
    RunEngine calls callbacks in order): the table is switched before that callback sees
    the run, and the bar is closed before it prints its closing lines.

    Args:
        bec: the session's BestEffortCallback.
        progress: the session's :class:`RunProgress`.
        max_rows: the longest run (``num_points``) that gets the table.

    The person's own ``bec.disable_table()`` / ``bec.enable_table()`` is respected: it is
    taken as the wish for the runs that follow.
    """

    def __init__(self, bec: Any, progress: RunProgress | None, max_rows: int = TABLE_MAX_ROWS):
        super().__init__()
        self.bec = bec
        self.progress = progress
        self.max_rows = int(max_rows)
        self.table_wanted = bool(getattr(bec, "_table_enabled", True))
        self._set = self.table_wanted  # what the table's switch was last left at

    def start(self, doc: dict[str, Any]) -> None:
        enabled = bool(getattr(self.bec, "_table_enabled", True))
        if enabled != self._set:
            self.table_wanted = enabled  # the person switched the table themselves
        rows = doc.get("num_points")
        table = self.table_wanted and rows is not None and 0 < int(rows) <= self.max_rows
        if table:
            self.bec.enable_table()
        else:
            self.bec.disable_table()
        self._set = table
        if self.progress is not None:
            self.progress.enabled = not table
