# The two commands of the README: `make up` and `make test`. Both install what is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
# pip keeps its downloads in the user's cache directory (~/.cache/pip), so a second run is fast.
STAMP := $(VENV)/.installed

.PHONY: up test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

up: $(STAMP)
	$(VENV)/bin/pat up

test: $(STAMP)
	scripts/system-deps.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest tests -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	scripts/system-deps.sh bench
	$(PY) bench/smtp_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
