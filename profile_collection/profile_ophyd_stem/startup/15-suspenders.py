# Pause the RunEngine when the bridge stops answering; resume when it is back.
from ophyd_stem.app.session import configure_suspenders

configure_suspenders(session)
