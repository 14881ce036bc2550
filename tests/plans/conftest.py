"""Every plan test also checks that every number its run recorded has units ("" when
dimensionless), and what BestEffortCallback makes of the run: its documents are replayed
into one with plots on (Agg) and its errors raised rather than logged, so a plan whose run
BestEffortCallback cannot draw (an array plotted as a scatter, nine axes for a stream of
decisions) fails here."""

from __future__ import annotations

import os

import matplotlib
import pytest

matplotlib.use("Agg")


def draw_with_best_effort(documents):
    """Replay ``(name, doc)`` pairs into a BestEffortCallback that raises what it meets.

    Returns:
        ``{figure label: [y-axis labels of its axes that drew something]}``.
    """
    import matplotlib.pyplot as plt
    from bluesky.callbacks.best_effort import BestEffortCallback

    plt.close("all")
    bec = BestEffortCallback()
    bec.disable_table()
    previous = os.environ.get("BLUESKY_DEBUG_CALLBACKS")
    os.environ["BLUESKY_DEBUG_CALLBACKS"] = "1"
    try:
        for name, doc in documents:
            bec(name, doc)
    finally:
        if previous is None:
            del os.environ["BLUESKY_DEBUG_CALLBACKS"]
        else:
            os.environ["BLUESKY_DEBUG_CALLBACKS"] = previous
    drawn = {}
    for number in plt.get_fignums():
        figure = plt.figure(number)
        drawn[figure.get_label()] = [
            ax.get_ylabel() or ax.get_title()
            for ax in figure.axes
            if ax.get_lines() or ax.collections or ax.images
        ]
    plt.close("all")
    return drawn


@pytest.fixture(autouse=True)
def best_effort_draws_the_run(request):
    """After the test, BestEffortCallback draws its runs without an error; where a run has
    spectra (``primary``), it draws their intensity, and it never draws more than three
    panels for one stream."""
    engine = request.getfixturevalue("RE") if "RE" in request.fixturenames else None
    yield
    documents = getattr(engine, "documents", None)
    if not documents:
        return
    # Every number a plan records says its units, "" for a dimensionless one (issue 11).
    unitless = sorted(
        (doc["name"], key)
        for name, doc in documents
        if name == "descriptor"
        for key, data_key in doc["data_keys"].items()
        if data_key["dtype"] in ("number", "integer", "array") and "units" not in data_key
    )
    assert not unitless, f"fields recorded without units: {unitless}"
    drawn = draw_with_best_effort(documents)
    for label, panels in drawn.items():
        assert len(panels) <= 3, f"BestEffortCallback drew {len(panels)} panels for {label}"
    has_spectra = any(
        name == "descriptor"
        and doc.get("name") == "primary"
        and "eels-intensity" in doc["data_keys"]
        for name, doc in documents
    )
    if has_spectra:
        assert any("eels-intensity" in " ".join(panels) or "eels-intensity" in label
                   for label, panels in drawn.items()), drawn  # fmt: skip
