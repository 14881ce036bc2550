"""``ophyd-stem runs`` says what each run acquired (spectra, images), not every stream's events;
the summary after a run links the run itself and says how to open it.

A low-loss grid of 20 spectra records 20 zero-loss alignment rows beside them (stream
``zero_loss``) and its survey image: 41 events, which read as more spectra than were taken.
The runs below are as the listing's catalog gives them (start and stop documents only), their
stream counts those of real runs (``spectrum_image``, ``survey``, a drift-corrected run).
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from ophyd_stem.app import commands
from ophyd_stem.catalog import client

UID = "9d2e51c0-8f1a-4c41-9d3e-0b7f1c2a3b4c"


class ListedRun:
    """A run of the listing's container: its metadata, nothing else."""

    def __init__(self, detectors, num_events, plan_name="spectrum_image"):
        start = {"uid": UID, "scan_id": 4, "plan_name": plan_name, "sample": "graphene"}
        start.update(time=1.7e9, detectors=detectors)
        stop = {"exit_status": "success", "num_events": num_events}
        self.metadata = {"start": start, "stop": stop if num_events is not None else None}


@pytest.mark.parametrize(
    ("detectors", "num_events", "spectra", "images", "acquired"),
    [
        # low-loss grid: the zero-loss rows are not spectra
        (["scan", "eels_points"], {"survey": 1, "primary": 20, "zero_loss": 20}, 20, 1,
         "20 spectra, 1 image"),
        # a survey: its one image is the primary event
        (["scan"], {"primary": 1}, 0, 1, "1 image"),
        # drift-corrected: tracking images count as images, decisions and points do not
        (["scan", "eels_points"],
         {"survey": 1, "drift_images": 3, "primary": 8, "zero_loss": 8, "edge_points": 8,
          "decisions": 2}, 8, 4, "8 spectra, 4 images"),
        # one spectrum at the beam's position
        (["eels"], {"primary": 1}, 1, 0, "1 spectrum"),
        # a plan of other detectors: their events, said as events
        (["det"], {"primary": 3}, None, 0, "3 events"),
        # still running: nothing to say yet
        (["scan", "eels_points"], None, None, None, ""),
    ],
)  # fmt: skip
def test_a_run_says_what_it_acquired(detectors, num_events, spectra, images, acquired):
    summary = client._summary(ListedRun(detectors, num_events))
    assert (summary.spectra, summary.images, summary.acquired) == (spectra, images, acquired)


def test_the_listing_counts_spectra_not_their_zero_loss_rows(monkeypatch, capsys):
    grid = client._summary(
        ListedRun(["scan", "eels_points"], {"survey": 1, "primary": 20, "zero_loss": 20})
    )
    monkeypatch.setattr(commands, "_open_catalog", lambda args, listing=False: object())
    monkeypatch.setattr(commands, "_settings", lambda args: None)
    monkeypatch.setattr("ophyd_stem.catalog.recent_runs", lambda catalog, n, settings: [grid])
    args = argparse.Namespace(limit=10, catalog=None, api_key=None, data_dir=None)
    assert commands._cmd_runs(args) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split()[-2:] == ["acquired", "status"]
    assert line.split()[-5:] == ["20", "spectra,", "1", "image", "success"]
    assert "41" not in line


# ------------------------------------------------------------------ the summary after a run


def _summary_of(tmp_path, capsys, catalog=None, stored=True):
    from ophyd_stem.catalog import CatalogSettings

    settings = CatalogSettings(tmp_path / "data")
    session = SimpleNamespace(
        config=SimpleNamespace(catalog=catalog, bridge=None, sample="graphene"),
        settings=settings,
        catalog_uri=catalog or "http://127.0.0.1:45123",
        instrument_label=None,
    )
    commands._print_run_summary(session, UID, 2.0, 30.0, stored)
    return settings, capsys.readouterr().out.splitlines()


def test_the_run_summary_links_the_run_and_says_how_to_open_it(tmp_path, capsys):
    settings, lines = _summary_of(tmp_path, capsys)
    (i,) = [i for i, line in enumerate(lines) if line.startswith("  catalog ")]
    # the run's address, not the bare server's (which is no run, and 401 in a browser) ...
    assert lines[i].split()[1] == f"http://127.0.0.1:45123/api/v1/metadata/{UID}"
    # ... with where the key is and how to add it, as `ophyd-stem show` says it
    assert f"append ?api_key=KEY, the key in {settings.server_dir / 'api_key'}" in lines[i + 1]
    assert lines[i + 2].startswith("  in Python   from ophyd_stem.catalog import ")
    assert lines[i + 2].endswith(f"[{UID[:8]!r}]")
    assert f"  look at it  ophyd-stem show {UID[:8]}" in lines


def test_the_run_summary_of_a_remote_catalog_links_the_run_in_its_container(tmp_path, capsys):
    _, lines = _summary_of(
        tmp_path, capsys, catalog="https://tiled.example.org/api/v1/metadata/stem"
    )
    (i,) = [i for i, line in enumerate(lines) if line.startswith("  catalog ")]
    assert lines[i].split()[1:] == [f"https://tiled.example.org/api/v1/metadata/stem/{UID}"]
    assert "your API key" in lines[i + 1]
    assert "api_key=KEY" in lines[i + 2]  # the Python line names it too


def test_the_run_summary_of_a_run_not_yet_stored_says_its_link_answers_once_stored(
    tmp_path, capsys
):
    _, lines = _summary_of(tmp_path, capsys, stored=False)
    (line,) = [line for line in lines if line.startswith("  catalog ")]
    assert line.endswith("(once stored)")
