# Two commands: `make demo` and `make test`. Each sets up what it needs on first use:
# a virtualenv in .venv (Python 3.13, as the app runs on Flex) and Azurite from npm in node_modules.

# python3.13 on PATH, else pyenv's (its shim needs a selected version; the interpreter itself does not).
PYTHON ?= $(shell command -v python3.13 >/dev/null 2>&1 && python3.13 -V >/dev/null 2>&1 && command -v python3.13 \
	|| ls -d $$HOME/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null | tail -1)
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# checkov (tests/test_infra.py) lives in its own venv: it pins packaging<24, which pytest 9 cannot share.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# The real Azure CLI (tests/az/, `python -m sandbox az-setup`), pinned, in its own venv too.
AZ_VENV := .venv-az
AZ_STAMP := $(AZ_VENV)/.installed
# Debian's Chromium for tests/test_health_report.py, driven by playwright-core from npm: no browser is downloaded.
CHROMIUM := /usr/bin/chromium

.PHONY: setup test lint demo bench sandbox clean

# The installs are independent: run them side by side (CI's clean clone spends most of its set-up here).
setup:
	$(MAKE) --no-print-directory -j4 $(PY_STAMP) $(NODE_STAMP) $(CHECKOV_STAMP) $(AZ_STAMP) $(CHROMIUM)

$(PY_STAMP): requirements.txt requirements-dev.txt requirements-cli.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

$(AZ_STAMP): requirements-az.txt
	test -x $(AZ_VENV)/bin/python || $(PYTHON) -m venv $(AZ_VENV)
	$(AZ_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-az.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	touch $@

# apt needs root (as on these machines and CI); the recommended packages bring the fonts the screenshot needs.
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

lint: $(PY_STAMP)
	$(PY) -m ruff check .

test: setup lint
	$(PY) -m pytest -n 3

demo: $(PY_STAMP) $(NODE_STAMP)
	$(PY) -m sandbox.demo

bench: $(PY_STAMP) $(NODE_STAMP)
	$(PY) benchmarks/run.py

sandbox: $(PY_STAMP) $(NODE_STAMP)
	$(PY) -m sandbox serve

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(AZ_VENV) node_modules .pytest_cache .ruff_cache
