"""Every plan is queueable: the queueserver's own code lists, validates and prepares each one
from JSON arguments (devices, agents and scalarizers by name), and the prepared plan runs.

These use bluesky-queueserver's functions on the console's namespace without Redis; the
queue itself, with a real re-manager, is tested in tests/facility/.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import plans
from ophyd_stem.app.session import console_devices, standard_plans
from ophyd_stem.sim import twin_microscope

profile_ops = pytest.importorskip("bluesky_queueserver.manager.profile_ops")

PERMISSIONS = (
    Path(__file__).resolve().parents[2]
    / "profile_collection/profile_ophyd_stem/startup/user_group_permissions.yaml"
)
STUBS = ("record", "record_table", "read_survey_image", "acquire_spectra_at_points")


@pytest.fixture
def namespace(RE, tmp_path):
    """What the startup files put in the worker's namespace (the twin in-process)."""
    microscope = twin_microscope("nanoparticles", mode="local", assets_dir=tmp_path, seed=2)
    ns = {
        "RE": RE,
        **console_devices(microscope),
        **standard_plans(),
        **plans.PLANS,
        **plans.CONTROL_FUNCTIONS,
    }
    yield ns
    microscope.sim_bridge.close()


@pytest.fixture
def queue(namespace):
    existing_plans, existing_devices, in_ns_plans, in_ns_devices = (
        profile_ops.existing_plans_and_devices_from_nspace(nspace=namespace)
    )
    allowed_plans, allowed_devices = profile_ops.load_allowed_plans_and_devices(
        existing_plans=existing_plans,
        existing_devices=existing_devices,
        user_group_permissions=profile_ops.load_user_group_permissions(str(PERMISSIONS)),
    )

    class Queue:
        plans = allowed_plans["primary"]
        devices = allowed_devices["primary"]

        @staticmethod
        def validate(name, *args, **kwargs):
            item = {"name": name, "args": list(args), "kwargs": kwargs, "user_group": "primary"}
            # JSON in, as from a remote client
            item = json.loads(json.dumps(item))
            ok, message = profile_ops.validate_plan(
                item, allowed_plans=Queue.plans, allowed_devices=Queue.devices
            )
            return ok, message, item

        @staticmethod
        def prepare(name, *args, **kwargs):
            ok, message, item = Queue.validate(name, *args, **kwargs)
            assert ok, message
            prepared = profile_ops.prepare_plan(
                item,
                plans_in_nspace=in_ns_plans,
                devices_in_nspace=in_ns_devices,
                allowed_plans=allowed_plans,
                allowed_devices=allowed_devices,
                nspace=namespace,
            )
            return prepared["callable"](*prepared["args"], **prepared["kwargs"]), prepared

    return Queue


def test_standard_and_project_plans_are_allowed_and_stubs_are_not(queue):
    for name in ("count", "scan", "rel_scan", "grid_scan", "list_scan", "mv", "mvr"):
        assert name in queue.plans, name
    for name in plans.PLANS:
        assert name in queue.plans, name
    assert not [name for name in STUBS if name in queue.plans]
    assert {"stem", "scan_engine", "eels", "eels_points"} <= set(queue.devices)


def test_bluesky_plans_star_import_clobbers_no_device(namespace):
    before = dict(namespace)
    exec("from bluesky.plans import *", namespace)
    assert namespace["scan_engine"] is before["scan_engine"]
    # nothing of the session's is replaced: devices, project plans, control functions (the
    # standard plans themselves may come back as Bluesky's own, which run in the console)
    changed = [
        name for name, value in before.items()
        if namespace[name] is not value and name not in standard_plans()
    ]  # fmt: skip
    assert changed == []


D, X, Y = ["eels"], "stem.beam.x", "stem.beam.y"


@pytest.mark.parametrize(
    ("name", "args", "kwargs"),
    [
        ("count", [D], {"num": 2}),
        ("scan", [D, X, 10, 12, Y, 10, 12], {"num": 2}),
        ("rel_scan", [D, X, -1, 1], {"num": 2}),
        ("grid_scan", [D, X, 10, 12, 2, Y, 10, 12, 2], {}),
        ("rel_grid_scan", [D, X, -1, 1, 2, Y, -1, 1, 2], {}),
        ("inner_product_scan", [D, 2, X, 10, 12, Y, 10, 12], {}),
        ("list_scan", [D, X, [10, 11, 12], Y, [10, 11, 12]], {}),
        ("rel_list_scan", [D, X, [-1, 0, 1]], {}),
        ("list_grid_scan", [D, X, [10, 11], Y, [10, 11]], {}),
        ("log_scan", [D, X, 1, 1.5, 3], {}),
        ("spiral_square", [D, X, Y, 10, 10, 2, 2, 2, 2], {}),
        ("x2x_scan", [D, X, Y, 10, 12, 2], {}),
        ("tune_centroid", [D, "eels-intensity", X, 10, 12, 0.5], {"num": 3}),
        ("mv", [X, 11, Y, 11], {}),
        ("mvr", [X, 1], {}),
    ],
)  # fmt: skip
def test_standard_plans_run_from_json_as_a_facility_writes_them(RE, queue, name, args, kwargs):
    """Bluesky's standard plans with their usual arguments, as JSON from a remote client
    (devices and their components by name): validated, prepared and run."""
    plan, _ = queue.prepare(name, *args, **kwargs)
    RE(plan)
    if name not in ("mv", "mvr"):
        starts = [d for n, d in RE.documents if n == "start"]
        assert [d["plan_name"] for d in starts] == [name]
        assert [d for n, d in RE.documents if n == "stop"][-1]["exit_status"] == "success"


def test_wrong_arguments_are_refused_at_submission(queue):
    ok, message, _ = queue.validate("adaptive_eels", "scan_engine", "eels_points")
    assert not ok
    assert "agent" in message
    ok, message, _ = queue.validate(
        "adaptive_eels", "scan_engine", "eels_points", agent="dkl", scalarizer="band:20:30",
        control="sometimes",
    )  # fmt: skip
    assert not ok
    assert "control" in message
    ok, message, _ = queue.validate("survey", "no_such_device")
    assert not ok


def test_survey_and_spectrum_image_run_from_json(RE, queue, namespace):
    plan, prepared = queue.prepare("survey", "scan_engine", num=1)
    assert prepared["args"][0] is namespace["scan_engine"]  # the name became the device
    RE(plan)
    plan, _ = queue.prepare("spectrum_image", "scan_engine", "eels_points", 2, 3)
    RE(plan)
    starts = [d for n, d in RE.documents if n == "start"]
    assert [d["plan_name"] for d in starts] == ["survey", "spectrum_image"]
    assert sum(1 for n, d in RE.documents if n == "event_page") >= 1


def test_adaptive_plan_from_json_builds_its_agent_by_name(RE, queue):
    plan, _ = queue.prepare(
        "adaptive_eels",
        "scan_engine",
        "eels_points",
        agent="dkl",
        agent_kwargs={"n_seed": 2, "window": 8, "train_iters": 10},
        scalarizer="band:20:30",
        steps=3,
        maps_every=0,
    )
    RE(plan)
    start = next(d for n, d in RE.documents if n == "start")
    assert start["plan_args"]["agent"] == "dkl"
    assert start["plan_args"]["agent_kwargs"]["window"] == 8
    assert start["plan_args"]["scalarizer"] == "band:20:30"
    decisions = [d for n, d in RE.documents if n == "descriptor" and d["name"] == "decisions"]
    assert decisions


def test_edge_plan_from_json_with_a_scalarizer(RE, queue):
    plan, _ = queue.prepare(
        "edge_eels", "scan_engine", "eels_points", agent_kwargs={"budget": 5},
        scalarizer="band:20:30",
    )  # fmt: skip
    RE(plan)
    start = next(d for n, d in RE.documents if n == "start")
    assert start["plan_args"]["agent"] == "edge"
    values = [
        d["data"]["decision-value"]
        for n, d in RE.documents
        if n == "event" and "decision-value" in d["data"]
    ]
    assert len(values) == 5
    assert np.all(np.isfinite(values))


def test_bandit_and_drift_corrected_plans_from_json(RE, queue):
    plan, _ = queue.prepare(
        "adaptive_eels", "scan_engine", "eels_points", "bandit", "band:20:30",
        agent_kwargs={"n_arms": 3, "arms": "tiles"}, steps=2, maps_every=0,
    )  # fmt: skip
    RE(plan)
    plan, _ = queue.prepare(
        "drift_corrected_edge_eels", "scan_engine", "eels_points", budget=4, every_points=2
    )
    RE(plan)
    starts = [d for n, d in RE.documents if n == "start"]
    assert [d["plan_name"] for d in starts] == ["adaptive_eels", "drift_corrected_edge_eels"]
    assert starts[0]["plan_args"]["agent"] == "bandit"
    assert [d for n, d in RE.documents if n == "stop"][-1]["exit_status"] == "success"


def test_latent_plan_from_json(RE, queue):
    plan, _ = queue.prepare(
        "latent_eels", "scan_engine", "eels_points", agent_kwargs={"n_clusters": 3, "epochs": 2},
        n_eels=3, scalarizer="band:20:30", zero_loss=True,
    )  # fmt: skip
    RE(plan)
    start = next(d for n, d in RE.documents if n == "start")
    assert start["plan_args"]["agent"] == "latent"
    assert start["zero_loss"]["mode"] == "on"
    assert [d for n, d in RE.documents if n == "stop"][-1]["exit_status"] == "success"


def test_a_named_agent_or_scalarizer_that_is_wrong_fails_the_plan_with_a_clear_error():
    from agents.registry import make_agent
    from plans import adaptive_eels

    # plans are generators: the names are checked at the first step, before any run opens
    with pytest.raises(ValueError, match=r"known agents: .*dkl"):
        next(adaptive_eels(object(), object(), "dlk", "band:20:30"))
    with pytest.raises(ValueError, match=r"known: .*band"):
        next(adaptive_eels(object(), object(), "dkl", "bnd:20:30"))
    with pytest.raises(ValueError, match="made before the run"):
        next(adaptive_eels(object(), object(), "logstar", "band:20:30"))
    # a setting the agent does not take: named with what it does take, when it is built
    with pytest.raises(ValueError, match="window"):
        make_agent("dkl", np.zeros((16, 16)), wndow=8)


@pytest.mark.parametrize("name", sorted(plans.PLANS))
def test_queue_annotations_pass_the_queueservers_own_checks(name):
    from bluesky_queueserver import parameter_annotation_decorator

    plan = plans.PLANS[name]
    annotation = getattr(plan, "_custom_parameter_annotation_", None)
    if annotation is not None:  # raises on a malformed annotation or an unknown parameter
        parameter_annotation_decorator(annotation)(plan)


@pytest.mark.parametrize(
    "command",
    ["grid --zero-loss off", "latent", "zlp", "drift", "physics", "physics --hypotheses step,peak",
     "bandit", "bandit --arms latent"],
)  # fmt: skip
def test_the_commands_queue_items_pass_the_queueservers_validation(queue, command):
    """`ophyd-stem run COMMAND --queue` submits these items: each must validate as sent."""
    from ophyd_stem.app import workflows  # noqa: F401  (registers the seed's workflows)
    from ophyd_stem.app.cli import build_parser
    from ophyd_stem.app.registry import PLANS

    args = build_parser().parse_args(["run", *command.split()])
    items = PLANS[command.split()[0]].queue_items(args)
    assert items[-1][0] in plans.PLANS
    for name, plan_args, kwargs in items:
        ok, message, _ = queue.validate(name, *plan_args, **kwargs)
        assert ok, f"{name}: {message}"
