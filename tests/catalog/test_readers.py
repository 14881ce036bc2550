"""Runs read back in the tools Bluesky users already have: bluesky-tiled-plugins (v3),
databroker 2 (v2) and its v1 back-compatibility layer, and plain tiled clients, for a grid
run and an adaptive run of the project's own plans on the twin."""

from __future__ import annotations

import json
import warnings

import bluesky.plan_stubs as bps
import numpy as np
import pytest

from ophyd_stem import energy_axis_from_configuration
from ophyd_stem.catalog import _runs, open_catalog
from ophyd_stem.sim import twin_microscope

pytestmark = pytest.mark.slow

SIZE = 32
LONG_NOTE = "x" * 3000  # a report far past the 40 characters once declared for strings


class TinyAgent:
    """Random positions, maps of the image's shape, a long report: the streams an adaptive
    run records, without an ML agent's cost."""

    name = "tiny"

    def __init__(self, image, seed=0):
        self.shape = image.shape
        self.rng = np.random.default_rng(seed)
        self.values = []

    def suggest(self, n):
        h, w = self.shape
        return [
            {"x": float(self.rng.uniform(0, w - 1)), "y": float(self.rng.uniform(0, h - 1)),
             "source": "model", "acquisition": 0.5, "mean": 1.0, "std": 0.1}
            for _ in range(n)
        ]  # fmt: skip

    def ingest(self, x, y):
        self.values.extend(np.atleast_1d(y).tolist())

    def report(self):
        return {"n_measured": len(self.values), "note": LONG_NOTE}

    def predict_maps(self):
        return {"mean": np.zeros(self.shape, np.float32), "std": np.ones(self.shape, np.float32)}

    def config(self):
        return {"seed": 0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_server, shared_settings):
    """``(grid uid, adaptive uid, documents by uid)`` written through the CatalogWriter."""
    from bluesky import RunEngine

    import plans
    from agents.scalarizers import get_scalarizer
    from ophyd_stem.catalog import CatalogWriter

    RE = RunEngine({})
    documents: dict = {}
    RE.subscribe(lambda name, doc: documents.setdefault("all", []).append((name, doc)))
    writer = CatalogWriter(shared_server.uri, shared_server.api_key, settings=shared_settings)
    RE.subscribe(writer)
    microscope = twin_microscope(
        "nanoparticles", mode="local", assets_dir=shared_settings.assets_dir, seed=1
    )
    try:
        RE(bps.mv(microscope.scan.width, SIZE, microscope.scan.height, SIZE))
        (grid,) = RE(plans.spectrum_image(microscope.scan, microscope.eels_points, 3, 4))
        (adaptive,) = RE(
            plans.adaptive_eels(
                microscope.scan, microscope.eels_points, TinyAgent,
                get_scalarizer("band:20:30"), steps=3, batch=2, maps_every=3,
            )
        )  # fmt: skip
        assert writer.flush(timeout=120)
    finally:
        writer.close()
        microscope.sim_bridge.close()
    return grid, adaptive


def test_bluesky_tiled_plugins_reads_both_runs(runs, shared_server):
    grid, adaptive = runs
    catalog = open_catalog(shared_server.uri, shared_server.api_key)
    try:
        for uid, n in ((grid, 12), (adaptive, 6)):
            run = catalog[uid]
            assert run["primary"]["eels-spectrum"].read().shape == (n, 2048)
            dataset = run["primary"].read()
            assert dataset.sizes["time"] == n
            assert dataset["stem-beam-x"].attrs.get("units", "px") == "px"
            assert run["survey"]["scan-haadf"].read().shape == (1, SIZE, SIZE)  # (N, H, W)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "validating on the client"
                assert run.validate(fix_errors=False, raise_on_error=True)
        decisions = catalog[adaptive]["decisions"]
        reports = [json.loads(text) for text in decisions["decision-report"].read()]
        assert [r["n_measured"] for r in reports] == [2, 2, 4, 4, 6, 6]
        assert {r["note"] for r in reports} == {LONG_NOTE}  # strings come back whole
        keys = decisions.metadata["data_keys"]
        assert keys["decision-value"]["units"] == "counts"  # the band scalarizer's units
        assert keys["decision-acquisition"]["units"] == ""  # dimensionless, said so
        assert catalog[adaptive]["agent_maps"]["agent_maps-mean"].read().shape == (1, SIZE, SIZE)
    finally:
        catalog.context.close()


def test_databroker_v2_reads_both_runs_and_their_configuration(runs, shared_server):
    grid, adaptive = runs
    catalog = open_catalog(shared_server.uri, shared_server.api_key)
    try:
        for uid, n in ((grid, 12), (adaptive, 6)):
            run = catalog.v2[uid]
            assert run.primary.read()["eels-spectrum"].shape == (n, 2048)
            config = run["primary"]["config"]["eels_points"].read()
            calibration = {key: config[key].values[0] for key in config.data_vars}
            assert len(energy_axis_from_configuration(calibration)) == 2048
            assert float(run["survey"]["config"]["scan"].read()["scan-pixel_size"][0]) > 0
            names = [name for name, _ in run.documents()]
            assert names[0] == "start" and names[-1] == "stop"  # noqa: PT018
        assert catalog.v2[adaptive]["decisions"].read().sizes["time"] == 6
        # square maps: two axes of one size, each named on its own (no xarray warning)
        maps = catalog.v2[adaptive]["agent_maps"].read()["agent_maps-mean"]
        assert maps.shape == (1, SIZE, SIZE)
        assert len(set(maps.dims)) == 3
    finally:
        catalog.context.close()


def test_databroker_v1_reads_both_runs(runs, shared_server):
    grid, adaptive = runs
    catalog = open_catalog(shared_server.uri, shared_server.api_key)
    try:
        db = catalog.v1
        for uid, n in ((grid, 12), (adaptive, 6)):
            header = db[uid]
            assert set(header.stream_names) >= {"primary", "survey"}
            table = header.table()
            assert len(table) == n
            assert np.all(table["eels-intensity"] > 0)
            (image,) = header.data("scan-haadf", stream_name="survey", fill=True)
            assert np.asarray(image).shape == (SIZE, SIZE)
            assert header.config_data("eels_points")["primary"][0]["eels-channels"] == 2048
        assert len(db[adaptive].table("decisions")) == 6
    finally:
        catalog.context.close()


def test_plain_tiled_reads_both_runs(runs, shared_server):
    """No bluesky-tiled-plugins: tiled's own container, composite and array clients."""
    from tiled.client.container import DEFAULT_STRUCTURE_CLIENT_DISPATCH

    grid, adaptive = runs
    default = DEFAULT_STRUCTURE_CLIENT_DISPATCH["numpy"]
    plain = {key: default[key] for key in ("container", "composite", "array", "table")}
    catalog = _runs.connect(shared_server.uri, shared_server.api_key, structure_clients=plain)
    try:
        for uid, n in ((grid, 12), (adaptive, 6)):
            run = catalog[uid]
            assert run["primary"]["eels-spectrum"].read().shape == (n, 2048)
            assert run["primary"]["eels-intensity"].read().shape == (n,)
            assert run["survey"]["scan-haadf"].read().shape == (1, SIZE, SIZE)
            assert run.metadata["stop"]["exit_status"] == "success"
    finally:
        catalog.context.close()


def test_snapshot_clients_read_both_runs_as_the_full_clients_do(runs, shared_server):
    """``ophyd-stem show``'s light clients: the same columns (dtypes and 3,000-character
    strings included), times, configuration and data keys as bluesky-tiled-plugins' clients,
    runs found by uid prefix, scan id and -1, without importing bluesky-tiled-plugins, dask
    or pandas (a fresh interpreter says what it imported)."""
    import subprocess
    import sys

    from agents.run_streams import streams_from_tiled

    grid, adaptive = runs
    full = open_catalog(shared_server.uri, shared_server.api_key)
    light = open_catalog(shared_server.uri, shared_server.api_key, snapshot=True)
    try:
        for uid in (grid, adaptive):
            expected = streams_from_tiled(full[uid])
            run = light[uid[:8]]
            assert run.load() is run  # everything read at once, several requests at a time
            got = streams_from_tiled(run)
            assert got[:2] == expected[:2]  # start, stop
            assert list(got[2]) == list(expected[2])  # streams, in the same order
            for name, stream in expected[2].items():
                mine = got[2][name]
                assert list(mine.columns) == list(stream.columns), name
                for key, column in stream.columns.items():
                    assert mine.columns[key].dtype == column.dtype, (name, key)
                    np.testing.assert_array_equal(mine.columns[key], column, err_msg=key)
                np.testing.assert_array_equal(mine.time, stream.time)
                assert mine.data_keys == stream.data_keys
                assert mine.configuration.keys() == stream.configuration.keys()
        scan_id = full[adaptive].metadata["start"]["scan_id"]
        assert light[scan_id].metadata["start"]["uid"] == adaptive
        assert light[-1].metadata["start"]["uid"] == full[-1].metadata["start"]["uid"]
        with pytest.raises(ValueError, match="too short"):
            light[adaptive[:3]]
        with pytest.raises(KeyError):
            light["fffffffff"]
    finally:
        full.context.close()
        light.context.close()
    probe = (
        "import sys; from ophyd_stem.catalog import open_catalog; "
        "from agents.runs import unpack_run; "
        f"c = open_catalog({shared_server.uri!r}, {shared_server.api_key!r}, snapshot=True); "
        f"d = unpack_run(c[{adaptive!r}].load()); assert len(d.decisions['x']) == 6; "
        "print(sorted(m for m in ('bluesky_tiled_plugins', 'dask', 'pandas', 'xarray') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
