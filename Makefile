# pubsubd — two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= config.example.yaml

.PHONY: install debian-deps npm-deps run test bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

## Real peers tests run against: Prosody for federation; Profanity and Poezio in tmux, Gajim on
## a virtual X display (typed into with xdotool, photographed with imagemagick) and converse.js
## in Chromium as real clients. An entry is a command, or command:package where the Debian
## package is named otherwise.
DEBIAN_PEERS := prosody profanity tmux chromium node:nodejs npm
DEBIAN_GUI_PEERS := gajim Xvfb:xvfb xdotool import:imagemagick dbus-daemon:dbus
debian-deps:
	@missing=""; for entry in $(DEBIAN_PEERS) $(DEBIAN_GUI_PEERS); do \
	  bin=$${entry%%:*}; pkg=$${entry#*:}; \
	  command -v $$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (interop tests with real peers)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
	      || echo "could not install$$missing: their interop tests will be skipped"; \
	  else echo "not installed:$$missing: their interop tests will be skipped"; fi; fi

## Real clients from npm (converse.js, and playwright-core to drive Chromium), pinned by each
## folder's package-lock.json.
NPM_CLIENTS := tests/clients/conversejs
NPM_STAMPS  := $(NPM_CLIENTS:%=%/node_modules/.installed)
npm-deps: $(NPM_STAMPS)
%/node_modules/.installed: %/package.json %/package-lock.json | debian-deps
	@if command -v npm >/dev/null 2>&1; then \
	  echo "installing the npm packages of $*"; \
	  (cd $* && npm ci --no-audit --no-fund --loglevel=error) && touch $@ \
	    || echo "could not install the npm packages of $*: its client tests will be skipped"; \
	else echo "npm is not installed: the client tests in $* will be skipped"; fi

## Start the server with the example configuration (SQLite and a self-signed certificate under ./var/).
run: install
	$(PY) -m pubsubd run --config $(CONFIG)

## Run the whole test suite.
test: install debian-deps npm-deps
	$(PY) -m pytest -q -p no:cacheprovider

## Benchmarks against Prosody and ejabberd (installs them with apt-get, and py-spy for the
## profiles); writes bench/RESULTS.md and bench/profiles/.
bench: install debian-deps
	@command -v ejabberdctl >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ejabberd >/dev/null; } || \
	  echo "could not install ejabberd: the bench skips it"
	@$(PY) -m pip install -q py-spy || echo "no py-spy: the bench runs without profiles"
	$(PY) -m bench.run --profile bench/profiles

lint: install
	$(PY) -m pip install -q ruff mypy
	$(VENV)/bin/ruff check pubsubd feeds tests
	$(VENV)/bin/mypy pubsubd feeds

clean:
	rm -rf $(VENV) var .pytest_cache
