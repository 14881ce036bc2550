"""The application layer: the ``ophyd-stem`` command and the console session.

It wires devices, plans, agents and the catalog together, like ``profile_collection``; it is
the one part of ``ophyd_stem`` allowed to import ``plans`` and ``agents`` (see
docs/decisions/0002-application-layer.md).
"""
