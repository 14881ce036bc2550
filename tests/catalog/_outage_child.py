"""A session that loses its catalog mid-run and ends before the catalog returns.

Run by test_outage.py as ``python _outage_child.py DATA_DIR RESULT.npz``: it writes to the
catalog server of DATA_DIR (already running) by its address, as to a remote catalog (which
the writer cannot restart), SIGKILLs the server at the third point, finishes the run, saves
what it produced, and exits normally. Whatever the catalog did not get must be left in the
spool.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
from bluesky import RunEngine
from ophyd_async.core import StaticPathProvider, UUIDFilenameProvider, init_devices
from ophyd_async.sim import PatternGenerator, SimBlobDetector

from ophyd_stem.catalog import CatalogSettings, CatalogWriter, EmbeddedServer

KILL_AT_POINT = 3
POINTS = 6


def main() -> None:
    settings = CatalogSettings(sys.argv[1])
    result_path = Path(sys.argv[2])
    spec = importlib.util.spec_from_file_location(
        "catalog_conftest", Path(__file__).with_name("conftest.py")
    )
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)

    RE = RunEngine({})
    documents = []
    RE.subscribe(lambda name, doc: documents.append(name))
    server = EmbeddedServer.find(settings)
    assert server is not None
    assert not server.owned
    writer = CatalogWriter(
        server.uri, server.api_key, settings=settings, exit_timeout=1.0, retry_delay=(0.2, 1.0)
    )
    RE.subscribe(writer)
    with init_devices():
        det = SimBlobDetector(
            StaticPathProvider(UUIDFilenameProvider(), settings.assets_dir),
            PatternGenerator(sleep=helpers._no_wait),
        )
        eels = helpers.SimSpectrometer(seed=99)

    point = {"n": 0}

    def per_shot(detectors):
        point["n"] += 1
        if point["n"] == KILL_AT_POINT:
            # Once the catalog holds part of the run, it dies, for good.
            deadline = time.monotonic() + 120.0
            while writer.status().written < 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(server.pid, signal.SIGKILL)
        yield from bps.trigger_and_read(detectors)

    (uid,) = RE(bp.count([det, eels], num=POINTS, per_shot=per_shot), sample="outage")
    status = writer.status()
    np.savez(
        result_path,
        spectra=np.stack(eels.produced),
        info=json.dumps(
            {
                "uid": uid,
                "documents": len(documents),
                "written": status.written,
                "received": status.received,
            }
        ),
    )
    # Normal exit: the writer's exit hook gives the (dead) catalog one second, then leaves
    # the rest in the spool.


if __name__ == "__main__":
    main()
