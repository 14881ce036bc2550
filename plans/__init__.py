"""Bluesky plans for STEM-EELS with ophyd-stem devices.

Plans never import the ML stack: adaptive plans take their agent as an argument, so the
queueserver (and anyone without torch) can import this package.
"""

from .adaptive import adaptive_eels, edge_eels
from .basic import spectrum_image, survey
from .control import OperatorControl
from .dcnn import dcnn
from .logstar import logstar
from .stubs import (
    acquire_spectra_at_points,
    grid_positions,
    read_survey_image,
    record,
    record_table,
)

__all__ = [
    "OperatorControl",
    "acquire_spectra_at_points",
    "adaptive_eels",
    "dcnn",
    "edge_eels",
    "grid_positions",
    "logstar",
    "read_survey_image",
    "record",
    "record_table",
    "spectrum_image",
    "survey",
]
