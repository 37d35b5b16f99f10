# Two entry points (see README.md):
#   make demo   -- the main job: EMT data -> train a Gaunt potential (3 min) -> RMSE -> MD, then the tour of
#                  the math and products, `gaunt check` and `gaunt bench --quick`
#   make test   -- the default test suite (creates its own virtual environment)
# Both build .venv with pip from pyproject.toml on first use; nothing needs installing by hand.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test test-slow clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m gaunt.cli quickstart --work_dir runs/quickstart
	$(PY) -m gaunt.cli demo
	$(PY) -m gaunt.cli check
	$(PY) -m gaunt.cli bench --quick --out runs/bench-quick

test: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m pytest -q

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
