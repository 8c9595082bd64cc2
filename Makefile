# Set-up, run and test. Every target installs what it needs into .venv first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi

.PHONY: run test migrate venv clean browser-deps

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-oracle.txt
	@$(PY) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PY) -m venv $(VENV); \
	  else echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"; exit 1; fi; }
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements-oracle.txt
	@touch $@

migrate: venv
	$(BIN)/flask db upgrade

# The service on 127.0.0.1:8080 (SQLite in instance/, sandbox SBP), with every provider's worker
# beside it in one process; the worker is stopped when gunicorn exits.
run: migrate
	@$(BIN)/flask --app wsgi worker run --provider all & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT; \
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian's Chromium for the console's browser tests (Playwright drives /usr/bin/chromium; no browser download).
browser-deps:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null; }

include deploy/deploy.mk
include bench/bench.mk

clean:
	rm -rf $(VENV) instance/webhook.db*
