# Plans by name: Bluesky's standard plans (count, scan, grid_scan, mv...) and this project's
# (survey, spectrum_image, edge_eels, adaptive_eels, logstar, dcnn); the modules bp, bps, plans.
from ophyd_stem.app.session import configure_plans

configure_plans(session, get_ipython().user_ns)
