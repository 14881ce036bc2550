"""Bars with counts for the waits outside a run's documents (issue 17: long waits say how long).

A wait that has nothing to count (a catalog server starting) says that it is still waiting
and for how long instead: :func:`still_waiting`.

The agents report their progress through a plain callback, ``progress(done, total)``
(they know nothing of the console); :func:`counting_bar` turns it into a tqdm bar on
stderr, like the run's bar (:mod:`.progress`) and the twin's image bar. The bar appears
with the first count, so a wait that never starts (a bandit whose arms need no training)
draws nothing. It has no bluesky import: ``train-ensemble`` uses it without a RunEngine.

Example (the bar goes to stderr; an agent's ``progress=`` argument takes the callback, as
``LatentAgent(image, progress=progress)`` does):
    >>> from ophyd_stem.app.waits import counting_bar
    >>> with counting_bar("rVAE training", unit="step") as progress:
    ...     for done in range(1, 4):
    ...         progress(done, 3)            # (steps done, steps in all)
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = ["counting_bar", "still_waiting"]


@contextlib.contextmanager
def counting_bar(
    desc: str, unit: str = "step", file: TextIO | None = None, enabled: bool = True
) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(done, total)`` callback drawing a bar with counts; closed on leaving.

    Args:
        desc: what is being waited for, in the microscopist's words (``"calibrating"``).
        unit: what is counted (``"step"``, ``"img"``).
        file: where to draw (default stderr, so stdout stays clean for results).
        enabled: False yields None (no callback: nothing drawn).
    """
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar: tqdm | None = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit=unit, file=file or sys.stderr,
                       dynamic_ncols=True, leave=True)  # fmt: skip
        if bar.total != total:
            bar.total = total
        bar.update(max(int(done) - bar.n, 0))

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


@contextlib.contextmanager
def still_waiting(
    what: str, every: float = 5.0, file: TextIO | None = None, enabled: bool = True
) -> Iterator[None]:
    """Say every ``every`` seconds that ``what`` is still going on, until the block ends.

    Nothing is printed for a block shorter than ``every``; a longer one prints
    ``"  still <what>: 5 s"``, ``10 s``..., then how long it took in all.

    Args:
        what: the wait in the microscopist's words (``"connecting to the catalog"``).
        every: seconds between lines.
        file: where to write (default stderr, so stdout stays clean for results).
        enabled: False prints nothing.
    """
    if not enabled:
        yield
        return
    out = file or sys.stderr
    done = threading.Event()
    started = time.monotonic()
    said = False

    def tick() -> None:
        nonlocal said
        while not done.wait(every):
            said = True
            print(f"  still {what}: {time.monotonic() - started:.0f} s", file=out, flush=True)

    ticker = threading.Thread(target=tick, name="still-waiting", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        if said:
            print(f"  done {what} after {time.monotonic() - started:.1f} s", file=out, flush=True)
