# pubsubd — two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= config.example.yaml

.PHONY: install run test bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

## Start the server with the example configuration (SQLite and a self-signed certificate under ./var/).
run: install
	$(PY) -m pubsubd run --config $(CONFIG)

## Run the whole test suite.
test: install
	$(PY) -m pytest -q -p no:cacheprovider

## Benchmarks against Prosody (installs it with apt-get); writes bench/RESULTS.md.
bench: install
	$(PY) -m bench.run

lint: install
	$(PY) -m pip install -q ruff mypy
	$(VENV)/bin/ruff check pubsubd feeds tests
	$(VENV)/bin/mypy pubsubd feeds

clean:
	rm -rf $(VENV) var .pytest_cache
