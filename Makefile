# selsa-d2: `make demo` and `make test` do all set-up on a fresh machine.
VENV        ?= .venv
PYTHON      := $(VENV)/bin/python
# Python 3.10 is required by the pinned Detectron2 wheel (cp310 only); pyenv users get it from
# .python-version.
BOOTSTRAP_PY ?= $(or $(shell command -v python3.10 2>/dev/null),$(lastword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10)),python3)
STAMP       := $(VENV)/.selsa-d2-installed
PYTEST_ARGS ?=

.PHONY: setup test lint format demo clean-demo

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PYTHON) || $(BOOTSTRAP_PY) -m venv $(VENV)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 10), "selsa-d2 needs Python 3.10 for the pinned sal-detectron2 wheel (found %s); see README" % sys.version.split()[0]'
	$(PYTHON) -m pip install -q -r requirements.txt
	$(PYTHON) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

test: setup
	$(PYTHON) -m pytest -q $(PYTEST_ARGS) tests

# ruff (settings in pyproject.toml): lint and format check; `make format` rewrites the tree.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: setup
	$(PYTHON) tools/run_demo.py

clean-demo:
	rm -rf output/demo datasets/synthetic_vid
