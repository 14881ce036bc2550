"""Export to HyperSpy and NeXus, read back with rosettasciio: calibrated axes, metadata, and
the spectra in register with the survey (a spectrum taken on survey pixel (i, j) has that
pixel's coordinates in nm)."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import numpy as np
import pytest
from bluesky import RunEngine

from ophyd_stem.app.analysis.export import ExportError, export_run
from ophyd_stem.catalog import CatalogSettings, CatalogWriter, EmbeddedServer, open_catalog
from ophyd_stem.sim import twin_microscope

pytestmark = pytest.mark.slow

SIZE = 40


@pytest.fixture(scope="module")
def catalog_runs(tmp_path_factory):
    """A catalog with a full-field grid, a grid over a region, and EELS at scattered points."""
    import plans
    from plans.stubs import acquire_spectra_at_points, read_survey_image

    settings = CatalogSettings(tmp_path_factory.mktemp("export") / "data")
    server = EmbeddedServer.start(settings)
    writer = CatalogWriter(server.uri, server.api_key, settings=settings)
    RE = RunEngine({})
    RE.subscribe(writer)
    microscope = twin_microscope("nanowire", mode="local", assets_dir=settings.assets_dir)
    scan, points = microscope.scan, microscope.eels_points
    # as a session does: the instrument's description in every start document
    RE.md["instrument"] = {
        k: v for k, v in microscope.metadata()["instrument"].items() if k != "limits"
    }
    try:
        RE(bps.mv(scan.width, SIZE, scan.height, SIZE, microscope.eels.exposure, 0.02))
        (full,) = RE(plans.spectrum_image(scan, points, 4, 5))
        (region,) = RE(plans.spectrum_image(scan, points, 3, 3, region=(6, 9, 30, 33)))

        def at_points():
            import bluesky.preprocessors as bpp

            @bpp.stage_decorator([scan])
            @bpp.run_decorator(md={"plan_name": "points"})
            def inner():
                yield from read_survey_image(scan)
                xy = np.array([[3.0, 7.0], [21.5, 11.0], [37.0, 30.0]])
                yield from acquire_spectra_at_points(points, xy)

            return (yield from inner())

        (scattered,) = RE(at_points())
        (survey_only,) = RE(plans.survey(scan))
        assert writer.flush(timeout=120)
    finally:
        writer.close()
        microscope.sim_bridge.close()
    catalog = open_catalog(server.uri, server.api_key)
    yield catalog, {"full": full, "region": region, "points": scattered, "survey": survey_only}
    catalog.context.close()
    server.stop()


def read_hspy(path):
    from rsciio.hspy import file_reader

    (signal,) = file_reader(str(path))
    return signal


def pixel_of(nm, axis):
    """The survey pixel index at ``nm`` along a HyperSpy axis (offset = first centre)."""
    return (nm - axis["offset"]) / axis["scale"]


def test_a_spectrum_image_lands_on_the_survey_pixels_it_was_measured_on(catalog_runs, tmp_path):
    catalog, uids = catalog_runs
    for name in ("full", "region"):
        survey_file, eels_file = export_run(catalog[uids[name]], tmp_path / name)
        survey, eels = read_hspy(survey_file), read_hspy(eels_file)
        assert survey["metadata"]["Signal"]["signal_type"] == ""  # Signal2D
        assert [a["navigate"] for a in survey["axes"]] == [False, False]
        assert [a["units"] for a in survey["axes"]] == ["nm", "nm"]
        assert eels["metadata"]["Signal"]["signal_type"] == "EELS"  # EELSSpectrum
        y_axis, x_axis, energy = eels["axes"]
        assert (y_axis["units"], x_axis["units"], energy["units"]) == ("nm", "nm", "eV")
        rows, cols = eels["data"].shape[:2]
        positions = eels["original_metadata"]["ophyd_stem"]["positions_px"]
        px_x = np.asarray(positions["x"]).reshape(rows, cols)
        px_y = np.asarray(positions["y"]).reshape(rows, cols)
        for i in range(rows):
            for j in range(cols):
                x_nm = x_axis["offset"] + j * x_axis["scale"]
                y_nm = y_axis["offset"] + i * y_axis["scale"]
                # spectrum (i, j) sits on the survey pixel its beam position names
                assert pixel_of(x_nm, survey["axes"][1]) == pytest.approx(px_x[i, j])
                assert pixel_of(y_nm, survey["axes"][0]) == pytest.approx(px_y[i, j])
        if name == "full":  # spectrum (0, 0) on survey pixel (0, 0), exactly
            assert (x_axis["offset"], y_axis["offset"]) == (0.0, 0.0)
            assert (survey["axes"][1]["offset"], survey["axes"][0]["offset"]) == (0.0, 0.0)
        else:
            assert pixel_of(x_axis["offset"], survey["axes"][1]) == pytest.approx(6)
            assert pixel_of(y_axis["offset"], survey["axes"][0]) == pytest.approx(9)


def test_calibration_and_acquisition_metadata_travel_with_the_files(catalog_runs, tmp_path):
    catalog, uids = catalog_runs
    run = catalog[uids["full"]]
    survey_file, eels_file = export_run(run, tmp_path)
    survey, eels = read_hspy(survey_file), read_hspy(eels_file)
    config = {}
    for obj in run["primary"].metadata["configuration"].values():
        config.update(obj["data"])
    energy = eels["axes"][-1]
    assert energy["offset"] == pytest.approx(config["eels-energy_offset"])
    assert energy["scale"] == pytest.approx(config["eels-dispersion"] * config["eels-binning"])
    tem = eels["metadata"]["Acquisition_instrument"]["TEM"]
    high_tension = run.metadata["start"]["instrument"]["high_tension_kv"]
    assert tem["beam_energy"] == pytest.approx(high_tension)
    assert tem["Detector"]["EELS"]["exposure"] == pytest.approx(0.02)
    survey_tem = survey["metadata"]["Acquisition_instrument"]["TEM"]
    assert survey_tem["dwell_time"] > 0
    pixel = run["survey"].metadata["configuration"]["scan"]["data"]["scan-pixel_size"]
    assert survey["axes"][0]["scale"] == pytest.approx(pixel)
    np.testing.assert_array_equal(survey["data"], np.asarray(run["survey"]["scan-haadf"].read())[0])
    np.testing.assert_array_equal(
        eels["data"].reshape(-1, eels["data"].shape[-1]), run["primary"]["eels-spectrum"].read()
    )
    assert eels["original_metadata"]["ophyd_stem"]["run_uid"] == uids["full"]


def test_points_keep_their_positions_and_nexus_holds_every_signal(catalog_runs, tmp_path):
    from rsciio.nexus import file_reader as read_nexus

    catalog, uids = catalog_runs
    survey_file, eels_file = export_run(catalog[uids["points"]], tmp_path)
    survey, eels = read_hspy(survey_file), read_hspy(eels_file)
    assert eels["data"].shape[0] == 3
    assert [a["name"] for a in eels["axes"]] == ["point", "Energy loss"]
    ophyd_stem = eels["original_metadata"]["ophyd_stem"]
    pixel = survey["axes"][0]["scale"]
    np.testing.assert_allclose(ophyd_stem["positions_px"]["x"], [3.0, 21.5, 37.0])
    np.testing.assert_allclose(ophyd_stem["positions_nm"]["y"], np.array([7.0, 11.0, 30.0]) * pixel)

    (nexus_file,) = export_run(catalog[uids["full"]], tmp_path / "nx", "nexus")
    assert nexus_file.suffix == ".nxs"
    signals = read_nexus(str(nexus_file), nxdata_only=True)
    kinds = sorted(s["metadata"]["Signal"]["signal_type"] for s in signals)
    assert kinds == ["", "EELS"]
    (spectra,) = [s for s in signals if s["metadata"]["Signal"]["signal_type"] == "EELS"]
    assert spectra["data"].shape == (4, 5, 2048)
    assert [a["units"] for a in spectra["axes"]] == ["nm", "nm", "eV"]


def test_a_survey_only_run_exports_its_image_and_bad_requests_say_why(catalog_runs, tmp_path):
    catalog, uids = catalog_runs
    (survey_file,) = export_run(catalog[uids["survey"]], tmp_path)
    assert read_hspy(survey_file)["data"].shape == (SIZE, SIZE)
    with pytest.raises(ValueError, match="format 'tiff'"):
        export_run(catalog[uids["survey"]], tmp_path, "tiff")

    class Empty:
        def __init__(self):
            self.metadata = {"start": {"uid": "0123456789", "scan_id": 1}}

        def __contains__(self, key):
            return False

    with pytest.raises(ExportError, match="no survey image and no spectra"):
        export_run(Empty(), tmp_path)


def test_the_light_clients_export_the_same_bytes(catalog_runs, tmp_path):
    """``ophyd-stem export`` reads through the snapshot clients (``show``'s, quicker to
    start): the files are byte for byte those of bluesky-tiled-plugins' run clients."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from ophyd_stem.app.analysis.export import read_ahead

    catalog, uids = catalog_runs
    uri, key = catalog.uri, catalog.context.api_key
    # the command, in a process of its own: the files, and what it had to import
    probe = (
        "import sys; from ophyd_stem.app.cli import main; "
        f"code = main(['export', {uids['full']!r}, '--out', {str(tmp_path / 'command')!r}, "
        f"'--catalog', {uri!r}, '--api-key', {key!r}]); "
        "print(sorted(m for m in ('bluesky_tiled_plugins', 'dask', 'xarray') "
        "if m in sys.modules)); sys.exit(code)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPHYD_STEM_CONFIG"}
    env["OPHYD_STEM_CONFIG"] = str(tmp_path / "no-config.toml")
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    *files, imported = result.stdout.split("\n")[:-1]
    assert imported == "[]"  # no bluesky-tiled-plugins, dask or xarray: a second quicker
    expected = export_run(catalog[uids["full"]], tmp_path / "reference")
    assert [Path(f).name for f in files] == [p.name for p in expected]
    for ours, theirs in zip(files, expected):
        assert Path(ours).read_bytes() == theirs.read_bytes(), ours

    light = open_catalog(uri, key, snapshot=True)
    try:
        for name in ("full", "points"):
            run = light[uids[name]]
            assert type(run).__name__ == "SnapshotRun"
            read_ahead(run)
            for fmt in ("hspy", "nexus"):
                expected = export_run(catalog[uids[name]], tmp_path / "full" / name, fmt)
                written = export_run(run, tmp_path / "light" / name, fmt)
                assert [p.name for p in written] == [p.name for p in expected]
                for ours, theirs in zip(written, expected):
                    assert ours.read_bytes() == theirs.read_bytes(), ours.name
    finally:
        light.context.close()
