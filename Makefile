# Two commands: `make demo` (quick reproduction of each method family) and `make test`.
# Both create .venv with the newest CPython >= 3.12 on the machine (.ci/find-python).
PYTHON ?= $(shell .ci/find-python)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tailjax-installed

.PHONY: demo test test-all docs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m benchmarks quick

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n 2 --dist loadfile

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

$(VENV)/.tailjax-docs: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,docs]'
	touch $@

docs: $(VENV)/.tailjax-docs
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
