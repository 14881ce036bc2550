# The microscope: the digital twin by default, a real DM bridge when $OPHYD_STEM_BRIDGE (or the
# config file) gives its address. Names: microscope, stem, scan_engine, eels, eels_points.
from ophyd_stem.app.session import configure_devices

configure_devices(session, get_ipython().user_ns)
