# pubsubd — two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= config.example.yaml

.PHONY: install debian-deps run test bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

## Real peers some tests run against (Prosody for federation); installed when missing, if we can.
debian-deps:
	@command -v prosody >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing prosody (federation interop tests)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody >/dev/null; } \
	      || echo "could not install prosody: its interop tests will be skipped"; \
	  else echo "prosody not installed: its interop tests will be skipped"; fi; }

## Start the server with the example configuration (SQLite and a self-signed certificate under ./var/).
run: install
	$(PY) -m pubsubd run --config $(CONFIG)

## Run the whole test suite.
test: install debian-deps
	$(PY) -m pytest -q -p no:cacheprovider

## Benchmarks against Prosody (installs it with apt-get); writes bench/RESULTS.md.
bench: install debian-deps
	$(PY) -m bench.run

lint: install
	$(PY) -m pip install -q ruff mypy
	$(VENV)/bin/ruff check pubsubd feeds tests
	$(VENV)/bin/mypy pubsubd feeds

clean:
	rm -rf $(VENV) var .pytest_cache
