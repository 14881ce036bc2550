"""The survey plan alone: its images are frames of the survey field, and (through this
folder's conftest) BestEffortCallback replays its run without an error, drawing nothing
for a stream of images, and every number it records has units."""

from __future__ import annotations

import bluesky.plan_stubs as bps

import plans
from ophyd_stem.sim import twin_microscope


def test_a_survey_run_records_its_images_as_frames(RE, tmp_path):
    microscope = twin_microscope("graphene", mode="local", assets_dir=tmp_path)
    try:
        RE(bps.mv(microscope.scan.width, 24, microscope.scan.height, 16))
        RE(plans.survey(microscope.scan, num=2))
    finally:
        microscope.sim_bridge.close()
    (start,) = [doc for name, doc in RE.documents if name == "start"]
    (descriptor,) = [doc for name, doc in RE.documents if name == "descriptor"]
    assert start["plan_name"] == "survey"
    assert descriptor["name"] == "primary"
    assert descriptor["data_keys"]["scan-haadf"]["shape"] == [16, 24]
    assert descriptor["data_keys"]["scan-haadf"]["units"] == "counts"
    (resource,) = [
        doc
        for name, doc in RE.documents
        if name == "stream_resource" and doc["data_key"] == "scan-haadf"
    ]
    frames = sum(
        doc["indices"]["stop"] - doc["indices"]["start"]
        for name, doc in RE.documents
        if name == "stream_datum" and doc["stream_resource"] == resource["uid"]
    )
    assert frames == 2
