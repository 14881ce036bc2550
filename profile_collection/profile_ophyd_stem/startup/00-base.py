# RunEngine, BestEffortCallback, progress bar, catalog writer (embedded catalog unless
# $OPHYD_STEM_CATALOG or ~/.config/ophyd-stem/config.toml says otherwise).
from ophyd_stem.app.session import configure_base

session = configure_base(get_ipython().user_ns)
