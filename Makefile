# The two commands of the README. Both set everything up on a fresh machine first:
# a virtual environment in .venv, torch 2.13.0 (CPU build) *before* the project so that no
# install pulls the CUDA stack, then ophyd-stem with all its extras.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ophyd-stem-installed

.PHONY: demo test setup lint bench clean-venv

demo: $(STAMP)
	$(BIN)/ophyd-stem run grid

test: $(STAMP)
	$(BIN)/python -m pytest

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean-venv:
	rm -rf $(VENV)
