# Set-up, demo and tests. Every target builds .venv from the lock when it is missing or
# stale; nothing is installed globally.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
LOCKS := requirements.txt requirements-dev.txt include/lab/pyproject.toml plugins/site_recovery/pyproject.toml

.PHONY: setup demo test bench stack lock clean

setup: $(STAMP)

$(STAMP): $(LOCKS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (found %d.%d); set PYTHON=/path/to/python3.11" % sys.version_info[:2])'
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e include/lab
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e plugins/site_recovery
	@touch $(STAMP)

# Azurite (Microsoft's Azure Storage emulator) from the npm registry, pinned by tools/azurite/package-lock.json:
# the reports' Blob store of the distributed stack and of its tests.
AZURITE := tools/azurite/node_modules/.installed

$(AZURITE): tools/azurite/package.json tools/azurite/package-lock.json
	@command -v npm >/dev/null || (echo "The distributed stack needs Node.js and npm (for Azurite)" >&2; exit 1)
	npm ci --prefix tools/azurite --no-audit --no-fund --loglevel=error
	@touch $(AZURITE)

demo: $(STAMP)
	$(VENV)/bin/python tools/demo.py

test: $(STAMP) $(AZURITE)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)
	$(VENV)/bin/python -m pytest

bench: $(STAMP) $(AZURITE)
	$(VENV)/bin/python bench/run.py

# Airflow distributed (Celery workers, PostgreSQL, Redis, two triggerers, reports in Azurite) against the lab.
stack: $(STAMP) $(AZURITE)
	$(VENV)/bin/python tools/stack.py

# Refresh the lock after editing requirements.in (see README, "Refreshing the lock").
lock:
	$(PYTHON) -m venv /tmp/asr-dr-lock && /tmp/asr-dr-lock/bin/pip install --quiet uv
	/tmp/asr-dr-lock/bin/uv pip compile requirements.in --python-version 3.11 -o requirements.txt
	/tmp/asr-dr-lock/bin/uv pip compile requirements-dev.in --python-version 3.11 -o requirements-dev.txt

clean:
	rm -rf $(VENV) .demo .stack tools/azurite/node_modules
