"""Bluesky plans for STEM-EELS with ophyd-stem devices.

Plans never import the ML stack: adaptive plans take their agent as an argument, so the
queueserver (and anyone without torch) can import this package.
"""
