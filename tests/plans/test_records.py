"""Computed values (decisions, tables) become schema-valid streams, described once per run."""

from __future__ import annotations

import bluesky.preprocessors as bpp
import numpy as np
import pytest

from ophyd_stem import Record, Table
from plans.stubs import record, record_table


def test_records_and_tables_make_one_descriptor_per_stream(RE):
    decisions = Record("decision", units={"x": "px"})
    atoms = Table("atoms", units={"x": "px"})

    @bpp.run_decorator()
    def plan():
        for step in range(3):
            yield from record(
                decisions, "decisions", x=float(step), step=step, report={"best": step}
            )
        yield from record_table(atoms, x=np.arange(5.0), cluster=np.arange(5))
        yield from record_table(atoms, x=np.arange(2.0), cluster=np.arange(2))

    RE(plan())
    descriptors = [d for n, d in RE.documents if n == "descriptor"]
    assert sorted(d["name"] for d in descriptors) == ["atoms", "decisions"]
    decision_keys = next(d for d in descriptors if d["name"] == "decisions")["data_keys"]
    assert decision_keys["decision-x"]["units"] == "px"
    assert decision_keys["decision-report"]["dtype"] == "string"
    events = [d for n, d in RE.documents if n == "event"]
    assert [e["data"]["decision-step"] for e in events] == [0, 1, 2]
    assert events[2]["data"]["decision-report"] == '{"best": 2}'
    pages = [d for n, d in RE.documents if n == "event_page"]
    assert [len(p["seq_num"]) for p in pages] == [5, 2]
    assert pages[1]["seq_num"] == [6, 7]


def test_changing_fields_within_a_run_is_refused():
    decisions = Record("decision")
    decisions.load(x=1.0)
    with pytest.raises(ValueError, match="differ from this run"):
        decisions.load(x=1.0, y=2.0)
    table = Table("atoms")
    with pytest.raises(ValueError, match="different lengths"):
        table.load(x=[1, 2], y=[1])
