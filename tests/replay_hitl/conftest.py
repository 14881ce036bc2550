"""Fixtures for replay, forensics and human-in-the-loop tests: a real embedded catalog in a
temporary data directory, real RunEngines writing to it through the CatalogWriter, and the
twin in-process. Recorded runs are made once per session (small DKL settings keep it fast).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import pytest
from bluesky import RunEngine
from bluesky.utils import Msg, RunEngineInterrupted
from event_model import DocumentNames, schema_validators

from ophyd_stem.catalog import CatalogSettings, CatalogWriter, EmbeddedServer, open_catalog
from ophyd_stem.sim import twin_microscope

SIZE = 64  # survey image side: small, so that each test's agent work stays cheap


@pytest.fixture(scope="session")
def catalog_env(tmp_path_factory):
    """An embedded Tiled catalog of our own (stopped at the end) and one writer to it."""
    data_dir = tmp_path_factory.mktemp("replay-hitl") / "data"
    settings = CatalogSettings(data_dir=data_dir).ensure_dirs()
    server = EmbeddedServer.start(settings, stop_at_exit=False)
    writer = CatalogWriter.to_embedded(settings)
    catalog = open_catalog(settings=settings)
    try:
        yield SimpleNamespace(
            settings=settings, server=server, writer=writer, catalog=catalog, data_dir=data_dir
        )
    finally:
        writer.close(timeout=30)
        catalog.context.close()
        server.stop()


def new_engine(writer) -> RunEngine:
    """A real RunEngine: documents validated, kept in ``engine.documents``, and written."""
    engine = RunEngine({})
    engine.documents = []

    def keep(name, doc):
        schema_validators[DocumentNames(name)].validate(doc)
        engine.documents.append((name, doc))

    engine.subscribe(keep)
    engine.subscribe(writer)
    return engine


@pytest.fixture
def RE(catalog_env):
    engine = new_engine(catalog_env.writer)
    yield engine
    if engine.state != "idle":
        engine.halt()


def microscope_for(RE, sample, assets_dir, seed):
    """The twin, in-process; its images go where the catalog server may read them."""
    microscope = twin_microscope(sample, mode="local", assets_dir=assets_dir, seed=seed)
    RE(bps.mv(microscope.scan.width, SIZE, microscope.scan.height, SIZE))
    return microscope


@pytest.fixture
def nanoparticles(RE, catalog_env):
    microscope = microscope_for(RE, "nanoparticles", catalog_env.settings.assets_dir, seed=2)
    yield microscope
    microscope.sim_bridge.close()


def dkl_factory(made: list, **options):
    """``make_agent`` for adaptive_eels: a small, fast DKL agent (kept in ``made``)."""
    from agents.dkl import DKLAgent

    # EI named, not the agent's default: the forensics tests compare it with other choices
    settings = {"window": 8, "n_seed": 3, "seed": 1, "train_iters": 30, "finetune_iters": 8}
    settings["acquisition"] = "ei"
    settings.update(options)

    def make(image):
        made.append(DKLAgent(image, **settings))
        return made[-1]

    return make


def run_until_idle_or_paused(call, *args):
    """``RE(...)``/``RE.resume()``: returns when the run ends or pauses (a pause may raise
    RunEngineInterrupted, as in the console)."""
    with contextlib.suppress(RunEngineInterrupted):
        call(*args)


def press_ctrl_c_once(plan, at_decision: int):
    """The plan as if the operator pressed Ctrl-C once while decision ``at_decision`` was
    being recorded: Bluesky's first Ctrl-C is a deferred pause (``request_pause(defer=True)``),
    so the RunEngine pauses at the next checkpoint, the end of that step."""
    seen = {"n": 0}

    def insert(msg):
        if msg.command == "create" and msg.kwargs.get("name") == "decisions":
            seen["n"] += 1
            if seen["n"] == at_decision:

                def head():
                    yield Msg("pause", None, defer=True)
                    return (yield msg)

                return head(), None
        return None, None

    return bpp.plan_mutator(plan, insert)


def stream_rows(documents, name):
    """Rows (data dicts) of one stream, events and event pages alike."""
    uids = {d["uid"] for n, d in documents if n == "descriptor" and d["name"] == name}
    rows = []
    for n, d in documents:
        if n == "event" and d["descriptor"] in uids:
            rows.append({**d["data"], "seq_num": d["seq_num"]})
        elif n == "event_page" and d["descriptor"] in uids:
            keys = list(d["data"])
            rows += [
                {**{k: d["data"][k][i] for k in keys}, "seq_num": d["seq_num"][i]}
                for i in range(len(d["seq_num"]))
            ]
    return rows


def uid_of(documents) -> str:
    return next(d["uid"] for n, d in documents if n == "start")


def stored(catalog_env, uid):
    """The run as the catalog holds it, after the writer caught up."""
    assert catalog_env.writer.flush(timeout=60), catalog_env.writer.status()
    return catalog_env.catalog[uid]


@pytest.fixture(scope="session")
def dkl_run(catalog_env):
    """A real DKL run (6 steps, free mode, no operator), written to the catalog."""
    from agents.scalarizers import get_scalarizer
    from plans import adaptive_eels

    engine = new_engine(catalog_env.writer)
    microscope = microscope_for(engine, "nanoparticles", catalog_env.settings.assets_dir, 2)
    made: list = []
    try:
        engine(
            adaptive_eels(
                microscope.scan,
                microscope.eels_points,
                dkl_factory(made),
                get_scalarizer("band:20:30"),
                steps=6,
                maps_every=3,
            )
        )
    finally:
        microscope.sim_bridge.close()
    uid = uid_of(engine.documents)
    return SimpleNamespace(
        uid=uid, documents=list(engine.documents), agent=made[0], run=stored(catalog_env, uid)
    )


@pytest.fixture(scope="session")
def edge_run(catalog_env):
    """A real edge-guided run on the nanowire, with a scalarizer, in the catalog."""
    from agents.edges import EdgeAgent
    from agents.scalarizers import get_scalarizer
    from plans import edge_eels

    engine = new_engine(catalog_env.writer)
    microscope = microscope_for(engine, "nanowire", catalog_env.settings.assets_dir, 0)
    try:
        engine(
            edge_eels(
                microscope.scan,
                microscope.eels_points,
                lambda image: EdgeAgent(image, budget=40),
                scalarizer=get_scalarizer("band:5:15"),
            )
        )
    finally:
        microscope.sim_bridge.close()
    uid = uid_of(engine.documents)
    return SimpleNamespace(uid=uid, documents=list(engine.documents), run=stored(catalog_env, uid))


def logstar_agent():
    from agents.logstar import LoGStarAgent

    return LoGStarAgent("graphene", budget=14, n_initial=8, seed=0)


def graphene(RE, assets_dir: Path):
    microscope = twin_microscope(
        "graphene", mode="local", assets_dir=assets_dir, noise_level=0.8, seed=3
    )
    RE(bps.mv(microscope.scan.width, SIZE, microscope.scan.height, SIZE))
    return microscope


@pytest.fixture(scope="session")
def logstar_run(catalog_env):
    """A LoG* run in approve mode with EELS at two atoms: the operator picks another point
    of the front than the agent did, then approves the EELS points."""
    from plans import OperatorControl, logstar

    engine = new_engine(catalog_env.writer)
    microscope = graphene(engine, catalog_env.settings.assets_dir)
    agent = logstar_agent()
    control = OperatorControl(mode="approve", operator="jane", notify=None)
    try:
        run_until_idle_or_paused(
            engine,
            logstar(
                microscope.scan,
                agent,
                control=control,
                eels_points=microscope.eels_points,
                n_eels=2,
            ),
        )
        assert engine.state == "paused", "the plan waits at the front"
        automatic, size = agent.choice.index, len(agent.front)
        pick = (automatic + 1) % size
        control.pick_front(index=pick)
        run_until_idle_or_paused(engine.resume)
        assert engine.state == "paused", "the plan waits before the EELS points"
        pending = control.pending
        control.approve()
        run_until_idle_or_paused(engine.resume)
        assert engine.state == "idle"
    finally:
        if engine.state != "idle":
            engine.halt()
        microscope.sim_bridge.close()
    uid = uid_of(engine.documents)
    return SimpleNamespace(
        uid=uid,
        documents=list(engine.documents),
        agent=agent,
        automatic=automatic,
        pick=pick,
        front_size=size,
        pending=pending,
        run=stored(catalog_env, uid),
    )
