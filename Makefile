# pubsubd — two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= config.example.yaml

.PHONY: install debian-deps npm-deps run test test-postgres screenshots fuzz bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

## Real peers tests run against: Prosody for federation; Profanity and Poezio in tmux, Gajim on
## a virtual X display (typed into with xdotool, photographed with imagemagick) and converse.js
## in Chromium as real clients. An entry is a command, or command:package where the Debian
## package is named otherwise, or an absolute path (a glob) for a program Debian keeps off the
## PATH, like PostgreSQL's server (the storage tests start a throw-away cluster). Installed
## when missing; in CI (CI=true) a peer that cannot be installed is an error: its tests would
## not run.
DEBIAN_PEERS := prosody ejabberdctl:ejabberd profanity poezio tmux chromium node:nodejs npm \
  /usr/lib/postgresql/*/bin/pg_ctl:postgresql
DEBIAN_GUI_PEERS := gajim Xvfb:xvfb xdotool import:imagemagick dbus-daemon:dbus
debian-deps:
	@missing=""; for entry in $(DEBIAN_PEERS) $(DEBIAN_GUI_PEERS); do \
	  bin=$${entry%%:*}; pkg=$${entry#*:}; \
	  case $$bin in /*) found=$$(ls $$bin 2>/dev/null);; *) found=$$(command -v $$bin);; esac; \
	  [ -n "$$found" ] || missing="$$missing $$pkg"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$missing (interop tests with real peers)"; \
	  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; then exit 0; fi; \
	  echo "could not install$$missing" >&2; \
	else echo "not installed:$$missing (and apt-get cannot run here)" >&2; fi; \
	if [ -n "$${CI:-}" ]; then echo "CI: the interop tests need$$missing" >&2; exit 1; fi; \
	echo "make test will fail their interop tests (plain pytest skips them, see -rs)" >&2

## Real clients from npm (converse.js, and playwright-core to drive Chromium), pinned by each
## folder's package-lock.json.
NPM_CLIENTS := tests/clients/conversejs
NPM_STAMPS  := $(NPM_CLIENTS:%=%/node_modules/.installed)
npm-deps: $(NPM_STAMPS)
%/node_modules/.installed: %/package.json %/package-lock.json | debian-deps
	@if command -v npm >/dev/null 2>&1; then \
	  echo "installing the npm packages of $*"; \
	  if (cd $* && npm ci --no-audit --no-fund --loglevel=error); then touch $@; \
	  else echo "could not install the npm packages of $*" >&2; [ -z "$${CI:-}" ] || exit 1; fi; \
	else echo "npm is not installed: the client tests in $* cannot run" >&2; [ -z "$${CI:-}" ] || exit 1; fi

## Start the server with the example configuration (SQLite and a self-signed certificate under ./var/).
run: install
	$(PY) -m pubsubd run --config $(CONFIG)

## Run the whole test suite. Interop tests fail (not skip) when their real peer is missing;
## -rs lists every skip with its reason, --durations shows the slowest tests. Two workers, each
## taking whole files: a module's shared server starts once, and the Prosody test keeps the one
## fixed address it needs to itself.
PYTEST_ARGS ?=
test: install debian-deps npm-deps
	PUBSUBD_REQUIRE_PEERS=1 $(PY) -m pytest -q -p no:cacheprovider -rs --durations=20 \
	  -n 2 --dist loadfile $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-postgres

## The storage-heavy integration tests again, every server on PostgreSQL (a fresh database of
## a throw-away cluster each, see tests/pg.py); make test runs this after the whole suite.
PG_INTEGRATION := $(addprefix tests/integration/,test_pubsub_service.py test_pubsub_delivery_timing.py \
  test_feeds_subscribe.py test_im_messaging.py test_im_roster_presence.py test_mam.py \
  test_muc.py test_muc_rooms.py test_private_storage.py test_http_upload.py \
  test_feeds_websub_push.py test_core_lifecycle.py test_smoke.py)
test-postgres: install debian-deps
	PUBSUBD_REQUIRE_PEERS=1 PUBSUBD_TEST_STORAGE=postgres $(PY) -m pytest -q -p no:cacheprovider \
	  -rs -n 2 --dist loadfile $(PG_INTEGRATION)

## Pictures of each real client showing a feed, for docs/: the client tests save them there.
screenshots: install debian-deps npm-deps
	PUBSUBD_SCREENSHOT_DIR=docs $(PY) -m pytest -q -p no:cacheprovider tests/integration/test_client_*.py

## Fuzz the parsers (stream, SASL, JIDs, data forms, feeds) with many more inputs than the
## short run inside `make test`; FUZZ_EXAMPLES inputs per target bound the time (~5 min).
FUZZ_EXAMPLES ?= 20000
fuzz: install
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_REPORT=fuzz-report.json \
	  $(PY) -m pytest -q -p no:cacheprovider -s tests/fuzz

## Benchmarks against Prosody and ejabberd (installs them with apt-get, and py-spy for the
## profiles), with pubsubd on SQLite and on PostgreSQL side by side; writes bench/RESULTS.md
## and bench/profiles/.
bench: install debian-deps
	@command -v ejabberdctl >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ejabberd >/dev/null; } || \
	  echo "could not install ejabberd: the bench skips it"
	@$(PY) -m pip install -q py-spy || echo "no py-spy: the bench runs without profiles"
	$(PY) -m bench.run --profile bench/profiles

## ruff and mypy, pinned: a new release's new rules must not turn a green tree red overnight.
LINT_TOOLS := ruff==0.17.6 mypy==2.4.1
lint: install
	$(PY) -m pip install -q $(LINT_TOOLS)
	$(VENV)/bin/ruff check pubsubd feeds tests bench
	$(VENV)/bin/mypy pubsubd feeds bench

clean:
	rm -rf $(VENV) var .pytest_cache
