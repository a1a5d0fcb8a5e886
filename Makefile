# Thin targets: one command each; knobs are make variables turned into flags.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint servers-perf clean

install: $(STAMP)

# Re-runs pip only when pyproject.toml changed: quick and idempotent otherwise.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' && touch $(STAMP)

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

# wrk against each reference server, next to nginx and bare apps (issue 2's performance check).
servers-perf: install
	$(PY) -m benchmarks.serverperf $(if $(DURATION),--duration $(DURATION)) $(if $(CONNECTIONS),--connections $(CONNECTIONS))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
