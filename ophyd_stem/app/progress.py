"""A progress bar for runs, driven by the documents (so it works for fly scans too)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from bluesky.callbacks.core import CallbackBase
from tqdm import tqdm

__all__ = ["RunProgress", "wait_for_catalog"]


class RunProgress(CallbackBase):
    """Shows how many points of the current run have been measured.

    The total is the start document's ``num_points`` when the plan declares it; events and
    event pages of every stream but the survey and decision streams advance the bar.

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
        ),
    ) -> None:
        super().__init__()
        self.file = file or sys.stderr
        self.ignore_streams = ignore_streams
        self._bar: tqdm | None = None
        self._counted: set[str] = set()

    def start(self, doc: dict[str, Any]) -> None:
        self._close()
        self._counted = set()
        self._bar = tqdm(
            total=doc.get("num_points"),
            desc=str(doc.get("plan_name", "run")),
            unit="pt",
            file=self.file,
            dynamic_ncols=True,
            leave=True,
        )

    def descriptor(self, doc: dict[str, Any]) -> None:
        if doc.get("name") not in self.ignore_streams:
            self._counted.add(doc["uid"])

    def event(self, doc: dict[str, Any]) -> None:
        if self._bar is not None and doc["descriptor"] in self._counted:
            self._bar.update(1)

    def event_page(self, doc: dict[str, Any]) -> None:
        if self._bar is not None and doc["descriptor"] in self._counted:
            self._bar.update(len(doc["seq_num"]))

    def stop(self, doc: dict[str, Any]) -> None:
        if self._bar is not None and doc.get("exit_status") != "success":
            self._bar.set_postfix_str(doc.get("exit_status", ""))
        self._close()

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
