# speke-packager: `make demo` runs the main job, `make test` runs every check.
# Both install what they need (idempotent): Python venv + packages, Debian packages, npm players.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: setup system node demo test lint typecheck unit bench clean

setup: $(STAMP) system node

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian packages: Chromium (headless playback tests), openssl (independent AES-128 check).
system:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium openssl fonts-liberation >/dev/null; \
	fi

# Players for the browser tests, pinned by package-lock.json (no CDN at run time).
node: node_modules/.installed-stamp
node_modules/.installed-stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check speke_packager tests fixtures benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

test: setup lint typecheck
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

demo: setup
	$(BIN)/speke-packager demo

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
