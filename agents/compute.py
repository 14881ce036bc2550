"""Fan-out of agent work: in this process, or over a ``dask.distributed`` cluster.

Some agent work is a list of independent jobs: the members of an ensemble, the windows of a
LoG* sliding-window optimisation, a batch of forensics or counterfactual replays. Functions
that do such work take ``compute=`` and hand the jobs to :func:`fan_out`:

=========================  ===============================================================
``None`` (default)         in this process, one job after the other (as before)
``"local"``                a ``LocalCluster`` on this machine: one worker process per core,
                           one thread each (made on first use, kept for the process)
``"local:N"``              the same with N worker processes
``"tcp://host:8786"``      an existing cluster's scheduler (any address dask takes:
                           ``tcp://``, ``tls://``, ``ucx://``, ``inproc://``)
a ``distributed.Client``   used as it is
=========================  ===============================================================

The strings are JSON-able, so ``compute`` travels through queueserver like any agent
setting. A job gives the same result wherever it runs, as long as it runs with the same
torch threads (jobs set theirs explicitly; see docs/decisions/0010-cpu-threads.md). On
workers with GPUs, jobs that take ``device="auto"`` use the worker's GPU (one per worker:
start workers with ``CUDA_VISIBLE_DEVICES`` set, as dask-cuda does).

Nothing here is a scheduler: dask places, runs and retries the jobs. dask is imported only
when a cluster is asked for.

Example (the second line starts a cluster of two worker processes, seconds: the test suite
does not run it):
    >>> from agents.compute import fan_out
    >>> fan_out(pow, [1, 2, 3], shared={"exp": 2})                    # in this process
    [1, 4, 9]
    >>> fan_out(pow, [1, 2, 3], compute="local:2", shared={"exp": 2})  # doctest: +SKIP
    [1, 4, 9]
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["check_compute", "close_compute", "fan_out", "get_client", "local_cluster"]

_LOCAL = re.compile(r"^local(:(\d+))?$")
_ADDRESS = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
_LOCK = threading.Lock()
#: clients made here from a compute string, by that string (closed at exit)
_CLIENTS: dict[str, Any] = {}


def check_compute(compute: Any) -> Any:
    """Validate a compute setting without importing dask; strings come back normalised.

    Returns:
        ``None`` for in-process work, ``"local:N"`` (N = the cores here when not given),
        an address string, or the ``distributed.Client`` given.

    Raises:
        ValueError: a string that is neither ``local[:N]`` nor a scheduler address.
    """
    if compute is None:
        return None
    if not isinstance(compute, str):
        if hasattr(compute, "submit") and hasattr(compute, "gather"):
            return compute  # a distributed.Client (or something that acts like one)
        raise ValueError(f"compute must be None, 'local[:N]', an address or a Client: {compute!r}")
    text = compute.strip()
    if text.lower() in ("", "none", "in-process"):
        return None
    match = _LOCAL.match(text.lower())
    if match:
        n = int(match.group(2)) if match.group(2) else _cores()
        if n < 1:
            raise ValueError(f"a local cluster needs at least one worker: {compute!r}")
        return f"local:{n}"
    if _ADDRESS.match(text):
        return text
    raise ValueError(
        f"compute must be 'local', 'local:N' or a scheduler address such as "
        f"tcp://scheduler:8786; got {compute!r}"
    )


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows
        return os.cpu_count() or 1


def local_cluster(n_workers: int) -> Any:
    """A ``LocalCluster`` as the agents want it: worker processes with one thread each.

    Two settings differ from dask's defaults, both measured here:

    - dask starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; setting it at all turns
      off glibc's adaptive mmap threshold, so every large tensor torch allocates is a fresh
      mmap and page faults: a training step took 2.4x the CPU time. Workers start without it.
    - the scheduler's HTTP server (health and metrics, even without a dashboard) takes a
      free port instead of 8787, where two clusters would collide.

    Example (starts two worker processes: not run by the test suite):
        >>> import distributed                                  # doctest: +SKIP
        >>> client = distributed.Client(local_cluster(2))       # doctest: +SKIP
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(
            n_workers=int(n_workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        )


def get_client(compute: Any) -> Any:
    """The ``distributed.Client`` for a compute setting; ``None`` for in-process work.

    ``"local[:N]"`` starts a :func:`local_cluster` once per process and setting; an address
    connects to that scheduler once.
    Both are closed when the process exits, or by :func:`close_compute`.

    Raises:
        ValueError: a malformed setting.
        OSError: the scheduler does not answer (dask's own error, with its address).
    """
    spec = check_compute(compute)
    if spec is None or not isinstance(spec, str):
        return spec
    with _LOCK:
        client = _CLIENTS.get(spec)
        if client is not None and client.status == "running":
            return client
        from distributed import Client

        if spec.startswith("local:"):
            client = Client(local_cluster(int(spec.split(":")[1])), set_as_default=False)
        else:
            client = Client(spec, set_as_default=False)
        _CLIENTS[spec] = client
        return client


def close_compute() -> None:
    """Close the clients (and local clusters) :func:`get_client` made."""
    with _LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()


atexit.register(close_compute)


def fan_out(
    func: Callable[..., Any],
    items: Iterable[Any],
    *,
    compute: Any = None,
    shared: Mapping[str, Any] | None = None,
    on_done: Callable[[int], None] | None = None,
) -> list[Any]:
    """``[func(item, **shared) for item in items]``, here or on a cluster; results in order.

    Args:
        func: a module-level function (workers import it by name).
        items: one job per item.
        compute: see the module docstring.
        shared: keyword arguments every job gets (training data, an image): sent to each
            worker once, not once per job.
        on_done: called with the item's index as each job finishes (a progress bar).

    Raises:
        whatever a job raised (the other jobs are cancelled).

    Example:
        >>> done = []
        >>> fan_out(round, [1.26, 2.71], shared={"ndigits": 1}, on_done=done.append)
        [1.3, 2.7]
        >>> done                                     # the index of each job as it finished
        [0, 1]
    """
    items = list(items)
    shared = dict(shared or {})
    client = get_client(compute)
    if client is None:
        results = []
        for i, item in enumerate(items):
            results.append(func(item, **shared))
            if on_done is not None:
                on_done(i)
        return results
    from distributed import as_completed

    scattered = {k: client.scatter(v, broadcast=True, hash=False) for k, v in shared.items()}
    futures = [client.submit(func, item, pure=False, **scattered) for item in items]
    index = {f.key: i for i, f in enumerate(futures)}
    try:
        for future in as_completed(futures, loop=client.loop):
            if future.status == "error":
                future.result()  # raises the job's exception here
            if on_done is not None:
                on_done(index[future.key])
        return client.gather(futures)
    finally:
        client.cancel(futures + list(scattered.values()))
