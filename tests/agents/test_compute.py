"""Fan-out of agent jobs: in-process, and on a real Dask LocalCluster."""

from __future__ import annotations

import os

import pytest

from agents.compute import check_compute, close_compute, fan_out, get_client


def test_compute_settings_are_checked_without_dask():
    cores = len(os.sched_getaffinity(0))
    assert check_compute(None) is None
    assert check_compute("none") is None
    assert check_compute("local") == f"local:{cores}"
    assert check_compute("LOCAL:3") == "local:3"
    assert check_compute("tcp://scheduler:8786") == "tcp://scheduler:8786"
    for bad in ("local:0", "scheduler:8786", "cluster", 8786):
        with pytest.raises(ValueError, match="local"):
            check_compute(bad)


def test_in_process_fan_out_keeps_order_and_shares_arguments():
    done = []
    assert fan_out(pow, [1, 2, 3], shared={"exp": 3}, on_done=done.append) == [1, 8, 27]
    assert done == [0, 1, 2]
    assert get_client(None) is None


def test_cluster_fan_out_matches_in_process(dask_client):
    # jobs must be importable on the workers: a builtin taking a keyword
    done = []
    digits = ["a", "ff", "10", "7"]
    here = fan_out(int, digits, shared={"base": 16})
    there = fan_out(int, digits, compute=dask_client, shared={"base": 16}, on_done=done.append)
    assert there == here == [10, 255, 16, 7]
    assert sorted(done) == [0, 1, 2, 3]


def test_a_failing_job_raises_its_own_error_and_the_cluster_keeps_working(dask_client):
    with pytest.raises(TypeError):
        fan_out(pow, [2, "x", 3], compute=dask_client, shared={"exp": 2})
    assert fan_out(pow, [2, 3], compute=dask_client, shared={"exp": 2}) == [4, 9]


def test_local_setting_starts_one_cluster_and_closes_it():
    try:
        client = get_client("local:1")
        assert get_client("local:1") is client  # made once per process
        assert len(client.scheduler_info()["workers"]) == 1
        assert fan_out(pow, [3], compute="local:1", shared={"exp": 2}) == [9]
    finally:
        close_compute()
    assert client.status in ("closed", "closing")
