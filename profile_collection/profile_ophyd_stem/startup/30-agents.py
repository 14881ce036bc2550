# ML agents; torch is imported only when an agent is first used.
from ophyd_stem.app.session import configure_agents

configure_agents(session, get_ipython().user_ns)
_where = session.config.bridge or f"digital twin ({session.config.sample})"
print(f"ophyd-stem console: {_where}, catalog {session.catalog_uri}. Try: RE(bp.count([eels]))")
