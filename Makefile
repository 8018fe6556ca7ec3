# whyslow — every target installs what it needs first, so each works as the first command on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PANEL := grafana_panel
PYTEST_ARGS ?=

.PHONY: install install-bench system-deps proto panel test test-py demo bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

## install: Python virtual environment with the package and its dev tools, plus generated gRPC stubs
install: $(STAMP) proto

install-bench: install
	$(PY) -m pip install -q -e '.[dev,bench]'

## proto: generate the whyslow.v1 gRPC stubs from plugin/proto (reproducible: pinned grpcio-tools in the venv)
proto: $(STAMP)
	@if [ -f plugin/proto/whyslow/v1/whyslow.proto ]; then $(PY) -m plugin.grpc_build; fi

## system-deps: Debian packages the tests need (headless chromium for the panel browser test)
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian) for the browser test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

## panel: install npm deps, typecheck, lint, test and build the Grafana panel plugin
panel:
	@if [ -f $(PANEL)/package.json ]; then cd $(PANEL) && npm ci --no-audit --no-fund --loglevel=error && npm run typecheck && npm run lint && npm run test:ci && npm run build; fi

## test: everything — lint, Python tests (engine, collector, backend, deploy files, browser test of the panel)
test: install system-deps panel lint
	$(PY) -m pytest $(PYTEST_ARGS)

## test-py: Python tests only, no panel build (quick local loop)
test-py: install
	$(PY) -m pytest $(PYTEST_ARGS)

## demo: the whole story in one command
demo: install panel
	$(VENV)/bin/whyslow demo $(DEMO_ARGS)

## bench: performance and accuracy benchmarks (long); writes benchmarks/README.md
bench: install-bench
	$(PY) -m benchmarks.run_all

## lint: ruff on everything, mypy on the three packages
lint: install
	$(VENV)/bin/ruff check rca_engine collector_processor plugin tests benchmarks
	$(VENV)/bin/mypy rca_engine collector_processor plugin

clean:
	rm -rf $(VENV) $(PANEL)/node_modules $(PANEL)/dist build *.egg-info
