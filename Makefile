# The two commands of the README: `make up` and `make test`. Both install what is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
# pip keeps its downloads in the user's cache directory (~/.cache/pip), so a second run is fast.
STAMP := $(VENV)/.installed
# caniemail's client-support data (npm package) for the HTML compatibility check; kept in the
# user's cache directory like pip's downloads. PAT_CANIEMAIL_DATA points elsewhere if needed.
CANIEMAIL_DIR ?= $(HOME)/.cache/pat/caniemail
CANIEMAIL_DATA := $(CANIEMAIL_DIR)/node_modules/caniemail/data/caniemail.json

.PHONY: up test lint bench clean caniemail

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(CANIEMAIL_DATA):
	command -v npm >/dev/null || scripts/system-deps.sh up
	npm install --silent --no-audit --no-fund --prefix $(CANIEMAIL_DIR) caniemail@2

caniemail: $(CANIEMAIL_DATA)

# `pat up` starts the spam engine itself (rspamd by default): the script installs it where missing.
up: $(STAMP) $(CANIEMAIL_DATA)
	scripts/system-deps.sh up
	$(VENV)/bin/pat up

test: $(STAMP) $(CANIEMAIL_DATA)
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
