# The live figure of adaptive and LoG* runs, and `control` (the operator's hand on them:
# adaptive_eels(..., control=control); see docs/replay-and-control.md).
from ophyd_stem.app.session import configure_views

configure_views(session, get_ipython().user_ns)
