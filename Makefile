# `make run` and `make test` work on a machine with only Python 3.11.
# The orchestration lives in devstack/; this file only keeps the
# virtualenv up to date with the pinned requirements.
#
#   make run                     HOST, PORT, REDIS_URL, DATABASE_URL, ... from the environment
#   make test PYTEST_ARGS="-x tests/routing"
#   make lint                    ruff (lint and format) and mypy; make test runs it first

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python

# tests/gateway/test_js_sdk.py drives the official OpenAI JavaScript SDK, pinned by
# tests/js/package-lock.json and installed again only when that changes. Without
# node and npm nothing is installed and that test skips itself, saying why.
JS_DIR := tests/js
ifneq ($(shell command -v node && command -v npm),)
JS_SDK := $(JS_DIR)/node_modules/.installed
endif

.PHONY: run test lint

run: $(VENV)/.installed-runtime
	$(VPY) -m devstack run

test: lint $(VENV)/.installed-dev $(JS_SDK) chromium
	$(VPY) -m devstack test -- $(PYTEST_ARGS)

# Style and types, configured in pyproject.toml: CI fails on them as on a test.
lint: $(VENV)/.installed-dev
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .
	$(VPY) -m mypy

# The playground's browser tests (tests/playground/test_browser.py) drive Debian's
# chromium. Missing, it is installed when make runs as root with apt-get; else,
# or if that fails, those tests skip themselves, saying why.
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update && apt-get install -y chromium || echo "Installing chromium failed: the browser tests will be skipped."; \
		else \
			echo "chromium is missing and cannot be installed here (needs root and apt-get): the browser tests will be skipped."; \
		fi; \
	}

# The stamps are rebuilt, and pip re-run, only when a requirements file changes.
$(VENV)/.installed-runtime: requirements.txt | $(VPY)
	$(VPY) -m pip install -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VPY)
	$(VPY) -m pip install -r requirements-dev.txt
	touch $@

$(VPY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Switchyard needs Python 3.11 or later: run with PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# A failed install (no network) leaves no stamp: the JavaScript SDK test skips and the rest runs.
$(JS_DIR)/node_modules/.installed: $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	npm ci --prefix $(JS_DIR) --no-audit --no-fund && touch $@ || echo "npm ci failed: the JavaScript SDK test will be skipped."
