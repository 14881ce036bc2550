"""The workflows' runs go into the real catalog whole, and replay from it: a latent run (its
decisions once held the latent coordinates as a small array, which a catalog on SQLite keeps
in its event table and has no column type for: the run stayed in the spool)."""

from __future__ import annotations

import numpy as np

from agents.runs import unpack_run
from plans import latent_eels

from .conftest import stored


def test_a_latent_run_is_stored_and_forensics_holds_on_the_catalog_copy(
    RE, nanoparticles, catalog_env
):
    from ophyd_stem.app.analysis.forensics import forensics

    (uid,) = RE(latent_eels(nanoparticles.scan, nanoparticles.eels_points, n_eels=4,
                            agent_kwargs={"n_clusters": 3, "epochs": 3, "seed": 1},
                            scalarizer="band:20:30"))  # fmt: skip
    data = unpack_run(stored(catalog_env, uid))
    assert len(data.decisions["step"]) == 4
    assert {"z0", "z1"} <= set(data.decisions)  # the latent coordinates, one column each
    assert np.all(np.isfinite(data.decisions["z0"]))
    report = forensics(data)
    assert report.ok, report.text()
