"""Facility mode with real components: redis-server, a re-manager running profile_collection
with the twin, the catalog; plans submitted through bluesky-queueserver-api with JSON
arguments, each run found complete in the catalog; the operator's veto sent from this
(remote) process and found in the run."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from ophyd_stem.app.queue import QueueError, RemoteControl

from .conftest import complete_run, missing_service

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_ensemble_folder(tmp_path_factory):
    """A 2-member U-Net ensemble trained for a few steps, saved to a folder the worker loads
    by path (the machinery, not the accuracy)."""
    from agents.ensemble import TrainingSettings, save_ensemble, train_ensemble
    from ophyd_stem.app.training_data import make_training_set

    images, atoms = make_training_set(("graphene",), n_images=4, size=64, seed=1)
    settings = TrainingSettings(
        members=2, steps=10, batch_size=4, crop_size=32, levels=2, num_threads=1
    )
    folder = tmp_path_factory.mktemp("ensembles") / "tiny"
    save_ensemble(train_ensemble(images, atoms, settings), folder)
    return str(folder)


def test_standard_and_project_plans_run_from_json_and_land_in_the_catalog(
    queue, catalog, tiny_ensemble_folder
):
    items = [
        ("mv", ["scan_engine.width", 64, "scan_engine.height", 64], {}),
        ("count", [["eels"]], {"num": 2}),
        ("grid_scan", [["eels"], "stem.beam.x", 10, 20, 3, "stem.beam.y", 10, 20, 2], {}),
        ("survey", ["scan_engine"], {}),
        ("spectrum_image", ["scan_engine", "eels_points", 3, 4], {}),
        ("edge_eels", ["scan_engine", "eels_points"], {"agent_kwargs": {"budget": 6}}),
        (
            "adaptive_eels",
            ["scan_engine", "eels_points"],
            {
                "agent": "dkl",
                "agent_kwargs": {"acquisition": "ucb", "n_seed": 2, "window": 8},
                "scalarizer": "band:20:30",
                "steps": 5,
                "maps_every": 5,
            },
        ),
        (
            "logstar",
            ["scan_engine"],
            {"agent_kwargs": {"lattice": "graphene", "budget": 8, "n_initial": 6}},
        ),
        # a dose that shows the columns: at the default dwell the 64² image is noise, and
        # the ensemble sends no EELS to noise
        ("mv", ["scan_engine.dwell_time", 2e-3], {}),
        (
            "dcnn",
            ["scan_engine", "ensemble"],
            {
                "agent_kwargs": {"ensemble": tiny_ensemble_folder, "num_threads": 1},
                "eels_points": "eels_points",
                "n_eels": 2,
            },
        ),
    ]
    started = time.monotonic()
    uids = [queue.submit(name, *args, start=False, **kwargs) for name, args, kwargs in items]
    queue.start()
    results = []
    for uid, (name, _, _) in zip(uids, items):
        # the queue stops at a failed plan: report that one, not a hang after it; what ran
        # when is printed, for a CI log to show where the time went if this ever fails
        def said(line, name=name):
            print(f"{time.monotonic() - started:6.1f} s  {name}: {line}", flush=True)

        results.append(queue.follow(uid, timeout=600, submitted=started, on_progress=said))
        said(f"ended {results[-1].exit_status}")
        if not results[-1].ok:
            for later in uids[len(results) :]:
                queue.api.item_remove(uid=later)
            queue.discard(results[-1])
            break
    failed = {r.name: r.message for r in results if not r.ok}
    assert not failed, failed

    runs = {r.name: complete_run(catalog, r.run_uids[0]) for r in results if r.run_uids}
    assert set(runs) == {name for name, _, _ in items} - {"mv"}
    for name, run in runs.items():
        assert run.metadata["stop"]["exit_status"] == "success", name
        assert run.metadata["start"]["plan_name"] == name
    # what the JSON asked for is what ran, recorded with the run
    assert runs["count"]["primary"]["eels-spectrum"].read().shape[0] == 2
    assert runs["grid_scan"]["primary"]["stem-beam-x"].read().shape[0] == 6
    survey = runs["survey"]["primary"]["scan-haadf"].read()
    assert survey.shape[-2:] == (64, 64)  # the queued mv set the scan size
    assert len(runs["spectrum_image"]["primary"]["eels-spectrum"].read()) == 12
    dkl = runs["adaptive_eels"]
    assert dkl.metadata["start"]["plan_args"]["agent"] == "dkl"
    assert dkl.metadata["start"]["plan_args"]["agent_kwargs"]["acquisition"] == "ucb"
    assert len(dkl["decisions"]["decision-x"].read()) == 5
    assert len(runs["edge_eels"]["primary"]["eels-spectrum"].read()) == 6
    assert len(runs["logstar"]["atoms"]["atoms-x"].read()) > 0
    assert len(runs["dcnn"]["primary"]["eels-spectrum"].read()) == 2


def test_a_bad_plan_is_refused_when_submitted_and_the_queue_goes_on(queue):
    with pytest.raises(QueueError, match="record"):
        queue.submit("record", start=False)  # a plan stub is not offered
    with pytest.raises(QueueError, match="control"):
        queue.submit(
            "adaptive_eels", "scan_engine", "eels_points", "dkl", "band:20:30",
            control="sometimes", start=False,
        )  # fmt: skip
    result = queue.run("adaptive_eels", "scan_engine", "eels_points", "dlk", "band:20:30")
    assert result.exit_status == "failed"
    assert "known agents" in result.message
    assert queue.run("count", ["eels"]).ok  # the re-manager still works


def test_following_a_plan_behind_a_failed_one_says_why_instead_of_waiting(queue):
    bad = queue.submit(
        "adaptive_eels", "scan_engine", "eels_points", "dlk", "band:20:30", start=False
    )
    good = queue.submit("count", ["eels"], start=False)
    queue.start()
    failed = queue.follow(bad, timeout=120)
    assert failed.exit_status == "failed"
    started = time.monotonic()
    with pytest.raises(QueueError) as raised:
        queue.follow(good, timeout=120, stopped_after=2.0)
    assert time.monotonic() - started < 60  # told, not left to its timeout
    text = str(raised.value)
    assert "plan count" in text
    assert "position 2 of 2" in text  # behind the failed plan's copy
    assert "adaptive_eels ended failed" in text
    assert "known agents" in text
    # nothing lost: once the failed copy is off the queue, the waiting plan runs
    queue.discard(failed)
    queue.start()
    assert queue.follow(good, timeout=120).ok


def test_the_operator_vetoes_from_another_process_and_the_run_records_it(queue, catalog):
    hand = RemoteControl(queue, who="remote-jane")
    uid = queue.submit(
        "adaptive_eels", "scan_engine", "eels_points", "dkl", "band:20:30",
        agent_kwargs={"n_seed": 2, "window": 8}, steps=2, maps_every=0, control="approve",
    )  # fmt: skip
    first = hand.wait_for_decision(timeout=180)
    assert first["mode"] == "approve"
    assert len(first["pending"]) == 1
    vetoed = (first["pending"][0]["x"], first["pending"][0]["y"])
    # the veto from a shell, as an operator at another computer types it
    command = [sys.executable, "-m", "ophyd_stem.app.cli", "control", "veto", "0"]
    command += ["--queue", queue.address, "--operator", "remote-jane"]
    shell = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shell.returncode == 0, shell.stdout + shell.stderr
    assert json.loads(shell.stdout) == []  # nothing left: the agent is asked again on resume
    hand.resume()
    again = hand.wait_for_decision(timeout=180)
    assert (again["pending"][0]["x"], again["pending"][0]["y"]) != vetoed
    hand.add(10, 12)
    hand.approve()
    hand.resume()
    hand.wait_for_decision(timeout=180)  # step 2
    hand.approve()
    hand.resume()
    result = queue.follow(uid, timeout=300)
    assert result.ok, result.message

    run = complete_run(catalog, result.run_uids[0])
    table = run["interventions"].read()
    kinds = [str(k) for k in table["intervention-kind"].values]
    who = [str(w) for w in table["intervention-who"].values]
    assert "veto" in kinds
    assert who[kinds.index("veto")] == "remote-jane"
    before = json.loads(str(table["intervention-before"].values[kinds.index("veto")]))
    assert (before[0]["x"], before[0]["y"]) == vetoed
    assert who[kinds.index("add")] == "remote-jane"
    positions = np.column_stack(
        [run["primary"]["stem-beam-x"].read(), run["primary"]["stem-beam-y"].read()]
    )
    assert [10.0, 12.0] in positions.tolist()
    assert vetoed not in [tuple(p) for p in positions.tolist()]
    sources = [str(s) for s in run["decisions"]["decision-source"].read()]
    assert "operator" in sources


def test_the_catalog_keeps_runs_and_event_tables_in_postgresql(postgres, facility, queue, catalog):
    if isinstance(postgres, str):
        missing_service(postgres)
    result = queue.run("count", ["eels"], num=3)
    assert result.ok, result.message
    run = complete_run(catalog, result.run_uids[0])
    assert run["primary"]["eels-spectrum"].read().shape[0] == 3
    # the run's node is a row of the catalog's own table in PostgreSQL
    assert postgres.query(f"select count(*) from nodes where key = '{result.run_uids[0]}'") == "1"


def _wait_for_state(queue, want: str, timeout: float = 180.0, item_uid=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = queue.status()
        if status.get("re_state") == want and (
            item_uid is None or status.get("running_item_uid") == item_uid
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"the RunEngine is not {want} after {timeout} s: {queue.status()}")


def _interventions(run) -> list[dict]:
    table = run["interventions"].read()
    columns = {name.split("-", 1)[1]: table[name].values for name in table.data_vars}
    rows = [{k: v[i] for k, v in columns.items()} for i in range(len(columns["kind"]))]
    for row in rows:
        for key in ("kind", "who", "after"):
            row[key] = str(row[key])
    return rows


def test_a_remote_operator_pauses_redirects_and_aborts_a_running_plan(queue, catalog):
    """Free mode, as at the console: pause (the remote Ctrl-C), change the acquisition, the
    scalarizer and the mode, resume; the plan then asks for approval; abort. Every act is in
    the run with the remote operator's name, and nothing waits any more."""
    hand = RemoteControl(queue, who="remote-ops")
    uid = queue.submit(
        "adaptive_eels", "scan_engine", "eels_points", "dkl", "band:20:30",
        agent_kwargs={"n_seed": 2, "window": 8}, steps=30, maps_every=0, control="free",
    )  # fmt: skip
    _wait_for_state(queue, "running", item_uid=uid)
    hand.pause()  # deferred: at the end of the current step
    _wait_for_state(queue, "paused", item_uid=uid)
    hand.set_acquisition("ucb", beta=4.0)
    hand.set_scalarizer("band:5:15")
    hand.set_mode("approve")
    hand.resume()
    asked = hand.wait_for_decision(timeout=180)
    assert asked["mode"] == "approve"
    assert asked["pending"]
    hand.abort()
    result = queue.follow(uid, timeout=120)
    queue.discard(result)  # an aborted plan goes back to the queue: not to run again here
    assert result.exit_status == "aborted", result.message
    assert hand.status()["waiting"] is False  # the aborted plan asks nothing any more

    run = complete_run(catalog, result.run_uids[0])
    assert run.metadata["stop"]["exit_status"] == "abort"
    acts = {row["kind"]: row for row in _interventions(run) if row["who"] == "remote-ops"}
    assert {"set_acquisition", "set_scalarizer", "set_mode"} <= set(acts)
    assert json.loads(acts["set_acquisition"]["after"])["beta"] == 4.0
    assert json.loads(acts["set_scalarizer"]["after"]) == "band:5:15"
    assert json.loads(acts["set_mode"]["after"]) == "approve"


def test_a_remote_operator_picks_the_logstar_pareto_point(queue, catalog):
    hand = RemoteControl(queue, who="remote-ops")
    uid = queue.submit(
        "logstar", "scan_engine", agent_kwargs={"lattice": "graphene", "budget": 8, "n_initial": 6},
        control="approve",
    )  # fmt: skip
    shown = hand.wait_for_decision(timeout=240)
    assert shown["front"] is not None
    pick = len(shown["front"]["front"]) - 1
    hand.pick_front(index=pick)
    hand.resume()
    result = queue.follow(uid, timeout=300)
    assert result.ok, result.message

    run = complete_run(catalog, result.run_uids[0])
    picks = [row for row in _interventions(run) if row["kind"] == "pick_front"]
    assert [row["who"] for row in picks] == ["remote-ops"]
    assert json.loads(picks[0]["after"])["index"] == pick
    chosen = run["logstar_front"]["logstar_front-chosen"].read()
    assert [i for i, flag in enumerate(chosen) if flag] == [pick]


def test_a_queued_command_that_fails_says_why_and_leaves_nothing_queued(queue):
    """`ophyd-stem run ... --queue`: a plan that fails in the worker (a scalarizer name no one
    knows) ends the command with status 4 and the re-manager's reason; the queueserver's copy
    of the failed plan is taken off the queue, so it does not run first at the next start."""
    command = [sys.executable, "-m", "ophyd_stem.app.cli", "run", "dkl", "--steps", "2"]
    command += ["--scalarizer", "bnd:20:30", "--queue", queue.address]
    shell = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert shell.returncode == 4, shell.stdout + shell.stderr
    assert "adaptive_eels failed" in shell.stderr
    assert "known: auto, band" in shell.stderr
    assert queue.status()["items_in_queue"] == 0
