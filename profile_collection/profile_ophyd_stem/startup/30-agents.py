# ML agents; torch is imported only when an agent is first used.
from ophyd_stem.app.session import configure_agents

configure_agents(session, get_ipython().user_ns)
print(f"ophyd-stem console: {session.config.bridge or 'digital twin (' + session.config.sample + ')'}"
      f", catalog {session.catalog_uri}. Try: RE(bp.count([eels]))")
