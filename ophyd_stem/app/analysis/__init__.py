"""Looking back at runs: replay, forensics, counterfactuals and the run report.

:mod:`.replay` (documents into callbacks, a run as an instrument to measure again),
:mod:`.forensics` (the agent re-run on what it measured: same decisions?),
:mod:`.counterfactual` (what another agent would have chosen), :mod:`.report`
(``ophyd-stem show``: the summary, its figures and an HTML page).
The modules import the ML stack only when a function needs it.
"""
