"""Bluesky plans for STEM-EELS with ophyd-stem devices.

Plans never import the ML stack: adaptive plans take their agent by registered name (built
when the plan runs, :mod:`agents.registry`) or as an argument, so the queueserver (and anyone
without torch) can import this package. Every argument of every plan can be JSON: devices by
name, agents and scalarizers by name with keyword arguments, the operator's control by mode.

The complete plans (each opens and closes one run) are listed in :data:`PLANS`; the pieces
they are built of (``record``, ``read_survey_image``, ``acquire_spectra_at_points``...) are
plan stubs in :mod:`plans.stubs`, not offered for running alone.
"""

from .adaptive import adaptive_eels, edge_eels
from .basic import spectrum_image, survey
from .control import OperatorControl
from .dcnn import dcnn
from .drift import drift_corrected_edge_eels
from .latent import latent_eels
from .logstar import logstar
from .operator import CONTROL_FUNCTIONS, shared_control

#: the complete plans, by the names the console and the queueserver offer
PLANS = {
    plan.__name__: plan
    for plan in (
        survey,
        spectrum_image,
        edge_eels,
        adaptive_eels,
        logstar,
        dcnn,
        drift_corrected_edge_eels,
        latent_eels,
    )
}

__all__ = [
    "CONTROL_FUNCTIONS",
    "PLANS",
    "OperatorControl",
    "adaptive_eels",
    "dcnn",
    "drift_corrected_edge_eels",
    "edge_eels",
    "latent_eels",
    "logstar",
    "shared_control",
    "spectrum_image",
    "survey",
]
