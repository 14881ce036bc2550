"""Agents by name (agents.registry): what queued plans ask for, loaded only when built."""

import subprocess
import sys

import numpy as np
import pytest

from agents.registry import AGENTS, agent_entry, agent_factory, make_agent, register_agent


def test_the_project_agents_are_registered():
    assert {"dkl", "edge", "logstar", "ensemble"} <= set(AGENTS)
    assert AGENTS["dkl"].needs_image
    assert not AGENTS["logstar"].needs_image


def test_registering_a_new_agent_is_one_call_and_it_loads_when_built():
    class Counter:
        def __init__(self, image, start=0):
            self.shape, self.start = np.shape(image), start

    register_agent("counter_test", Counter, "counts")
    try:
        agent = agent_factory("counter_test", {"start": 3})(np.zeros((4, 5)))
        assert (agent.shape, agent.start) == ((4, 5), 3)
        with pytest.raises(ValueError, match="already registered"):
            register_agent("counter_test", "agents.dkl:DKLAgent")
    finally:
        del AGENTS["counter_test"]


@pytest.mark.parametrize(
    ("name", "factory", "message"),
    [
        ("DKL", "agents.dkl:DKLAgent", "lower-case"),
        ("bandit", "agents.bandit.BanditAgent", "module:attribute"),
    ],
)
def test_bad_registrations_are_refused(name, factory, message):
    with pytest.raises(ValueError, match=message):
        register_agent(name, factory)


def test_unknown_names_and_wrong_settings_say_what_is_known():
    known = "known agents: bandit, dkl, edge, ensemble, hypotheses, latent, "
    with pytest.raises(ValueError, match=known):
        agent_entry("dlk")
    with pytest.raises(ValueError, match=r"it takes \[.*'budget'"):
        make_agent("edge", np.eye(16), budgte=3)
    with pytest.raises(ValueError, match="made from a survey image"):
        make_agent("edge")
    with pytest.raises(ValueError, match="takes no survey image"):
        make_agent("logstar", np.eye(16))
    with pytest.raises(ValueError, match="dict"):
        agent_factory("edge", ["budget", 3])


def test_the_registry_loads_no_agent_module_until_one_is_built():
    code = (
        "import sys, agents.registry, plans; "
        "loaded = [m for m in ('agents.dkl', 'agents.edges', 'agents.logstar', "
        "'agents.ensemble', 'torch') if m in sys.modules]; print(loaded); "
        "sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_agent_module_import_cut_short_by_another_thread_is_tried_again(
    tmp_path, monkeypatch, caplog
):
    # the module fails its first import the way Python's _DeadlockError does (a RuntimeError
    # raised inside the import, the module dropped from sys.modules), then imports
    tries = tmp_path / "tries"
    (tmp_path / "cut_short_agent.py").write_text(
        "import pathlib\n"
        f"tries = pathlib.Path({str(tries)!r})\n"
        "tries.write_text(tries.read_text() + 'x' if tries.exists() else 'x')\n"
        "if len(tries.read_text()) == 1:\n"
        "    raise RuntimeError(\"deadlock detected by _ModuleLock('pandas') at 1\")\n"
        "class Agent:\n"
        "    def __init__(self, image):\n"
        "        self.shape = image.shape\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    register_agent("cut_short_test", "cut_short_agent:Agent")
    try:
        agent = agent_factory("cut_short_test", {})(np.zeros((3, 2)))
        assert agent.shape == (3, 2)
        assert tries.read_text() == "xx"
        assert "cut short" in caplog.text
    finally:
        del AGENTS["cut_short_test"]
        sys.modules.pop("cut_short_agent", None)


def test_other_errors_while_importing_an_agent_are_not_retried(tmp_path, monkeypatch):
    (tmp_path / "broken_agent.py").write_text("raise RuntimeError('no detector here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    register_agent("broken_test", "broken_agent:Agent")
    try:
        with pytest.raises(RuntimeError, match="no detector here"):
            agent_factory("broken_test", {})(np.zeros((3, 2)))
    finally:
        del AGENTS["broken_test"]
