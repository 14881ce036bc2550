# plans (this project), bp, bps, and the project's plans by name (survey, spectrum_image...).
from ophyd_stem.app.session import configure_plans

configure_plans(session, get_ipython().user_ns)
