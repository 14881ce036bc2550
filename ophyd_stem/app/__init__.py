"""The application layer: the ``ophyd-stem`` command and the console session.

It wires devices, plans, agents and the catalog together, like ``profile_collection``; it is
the one part of ``ophyd_stem`` allowed to import ``plans`` and ``agents`` (see
docs/decisions/0002-application-layer.md).

Where each job is:

- **the command**: :mod:`.cli` (options), :mod:`.commands` (what each does), :mod:`.logs`;
  ``ophyd-stem run``'s plans: :mod:`.registry`, :mod:`.plan_options`, :mod:`.plan_builds`,
  :mod:`.run_summaries`, :mod:`.workflows`, :mod:`.correction_workflows`;
- **the session** (console and command alike): :mod:`.session` (with :mod:`.session_base`
  and :mod:`.session_devices`), :mod:`.config`, :mod:`.progress`;
- **facility mode** (docs/facility.md): :mod:`.facility` (``ophyd-stem serve``),
  :mod:`.facility_processes` (Redis, catalog, bridge, re-manager as processes),
  :mod:`.facility_catalog` (the catalog on PostgreSQL), :mod:`.queue` (the re-manager's
  client, the remote operator), :mod:`.queue_commands` (``run --queue``, ``control``);
- **run analysis**: :mod:`.analysis` (replay, forensics, counterfactuals, report, export);
- **live views**: :mod:`.views`;
- **the ensemble's training data**: :mod:`.training_data`, :mod:`.default_ensemble`.
"""
