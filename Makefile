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

## Real peers some tests run against (Prosody for federation, Profanity in tmux as a real
## client); installed when missing, if we can. In CI (CI=true) a peer that cannot be installed
## is an error: its tests would not run.
DEBIAN_PEERS := prosody profanity tmux
debian-deps:
	@missing=""; for p in $(DEBIAN_PEERS); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$missing (interop tests with real peers)"; \
	  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; then exit 0; fi; \
	  echo "could not install$$missing" >&2; \
	else echo "not installed:$$missing (and apt-get cannot run here)" >&2; fi; \
	if [ -n "$${CI:-}" ]; then echo "CI: the interop tests need$$missing" >&2; exit 1; fi; \
	echo "make test will fail their interop tests (plain pytest skips them, see -rs)" >&2

## Start the server with the example configuration (SQLite and a self-signed certificate under ./var/).
run: install
	$(PY) -m pubsubd run --config $(CONFIG)

## Run the whole test suite. Interop tests fail (not skip) when their real peer is missing;
## -rs lists every skip with its reason, --durations shows the slowest tests. Two workers, each
## taking whole files: a module's shared server starts once, and the Prosody test keeps the one
## fixed address it needs to itself.
PYTEST_ARGS ?=
test: install debian-deps
	PUBSUBD_REQUIRE_PEERS=1 $(PY) -m pytest -q -p no:cacheprovider -rs --durations=20 \
	  -n 2 --dist loadfile $(PYTEST_ARGS)

## Benchmarks against Prosody (installs it with apt-get); writes bench/RESULTS.md.
bench: install debian-deps
	$(PY) -m bench.run

## ruff and mypy, pinned: a new release's new rules must not turn a green tree red overnight.
LINT_TOOLS := ruff==0.17.6 mypy==2.4.1
lint: install
	$(PY) -m pip install -q $(LINT_TOOLS)
	$(VENV)/bin/ruff check pubsubd feeds tests bench
	$(VENV)/bin/mypy pubsubd feeds

clean:
	rm -rf $(VENV) var .pytest_cache
