# Two commands: `make demo` (quick reproduction of each method family) and `make test`.
# Both create .venv with the newest CPython >= 3.12 on the machine (.ci/find-python).
PYTHON ?= $(shell .ci/find-python)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tailjax-installed

.PHONY: demo test test-all docs pyepo-env

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m benchmarks quick

# PyEPO itself (Python 3.11, CPU torch) for tests/dfl/test_pyepo_equivalence.py; the script
# prints why and exits 0 where it cannot be built, and those tests then skip.
pyepo-env:
	bash tests/dfl/make_pyepo_env.sh || { echo "PyEPO environment not built: its tests skip"; rm -rf .venv-pyepo; }

test: $(STAMP) pyepo-env
	$(PY) -m pytest -q -m "not slow" -n 2 --dist worksteal --durations=15

test-all: $(STAMP) pyepo-env
	$(PY) -m pytest -q -n 2 --dist worksteal

$(VENV)/.tailjax-docs: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,docs]'
	touch $@

docs: $(VENV)/.tailjax-docs
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
