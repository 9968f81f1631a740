# pubsubd — two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= config.example.yaml

.PHONY: install debian-deps run test screenshots bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

## Real peers some tests run against (Prosody for federation, Profanity and Poezio in tmux as
## real clients); installed when missing, if we can.
DEBIAN_PEERS := prosody profanity poezio tmux
debian-deps:
	@missing=""; for p in $(DEBIAN_PEERS); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (interop tests with real peers)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
	      || echo "could not install$$missing: their interop tests will be skipped"; \
	  else echo "not installed:$$missing: their interop tests will be skipped"; fi; fi

## Start the server with the example configuration (SQLite and a self-signed certificate under ./var/).
run: install
	$(PY) -m pubsubd run --config $(CONFIG)

## Run the whole test suite.
test: install debian-deps
	$(PY) -m pytest -q -p no:cacheprovider

## Pictures of each real client showing a feed, for docs/: the client tests save them there.
screenshots: install debian-deps
	PUBSUBD_SCREENSHOT_DIR=docs $(PY) -m pytest -q -p no:cacheprovider tests/integration/test_client_*.py

## Benchmarks against Prosody (installs it with apt-get); writes bench/RESULTS.md.
bench: install debian-deps
	$(PY) -m bench.run

lint: install
	$(PY) -m pip install -q ruff mypy
	$(VENV)/bin/ruff check pubsubd feeds tests
	$(VENV)/bin/mypy pubsubd feeds

clean:
	rm -rf $(VENV) var .pytest_cache
