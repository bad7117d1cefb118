# Every target sets up what it needs: the virtualenv, the package with its dev extras, system packages.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rig-installed
BENCH  ?= benches/sim.yaml
RESULTS ?= results

# CHECK:PACKAGE pairs for tools/ensure-system-packages (Debian/Ubuntu package names).
SYSTEM_PACKAGES := gcc:gcc /usr/include/mbedtls/ssl.h:libmbedtls-dev /usr/sbin/sshd:openssh-server \
                   /usr/sbin/mosquitto:mosquitto /usr/sbin/ser2net:ser2net

.PHONY: help setup system-deps test lint typecheck unit bench bench-parse bench-uart bench-matrix \
        nightly gate report clean

help:
	@echo "make bench   run the HIL matrix on the default (simulated) bench"
	@echo "make test    run the rig's own checks: ruff, mypy, pytest"
	@echo "make bench-parse | bench-uart | bench-matrix   benchmarks that print figures"
	@echo "make nightly | gate VARIANT=name | report      the nightly run, the release gate, the HTML report"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(STAMP) system-deps

system-deps:
	@tools/ensure-system-packages $(SYSTEM_PACKAGES)

lint: $(STAMP)
	$(BIN)/ruff check rig tests $(wildcard tests_hil) conftest.py
	$(BIN)/ruff format --check rig tests $(wildcard tests_hil) conftest.py

typecheck: $(STAMP)
	$(BIN)/mypy rig

unit: setup
	$(BIN)/pytest tests

test: lint typecheck unit

bench: setup
	@echo "make bench: the simulated bench (rig sim) is not part of this version yet;" >&2
	@echo "            nothing was run. Use 'make test' for the rig's own checks." >&2
	@exit 1

bench-parse: setup
	$(BIN)/python tests/benchmarks/parse.py

bench-uart: setup
	$(BIN)/python tests/benchmarks/uart.py

bench-matrix: setup
	$(BIN)/python tests/benchmarks/matrix.py --bench $(BENCH)

clean:
	rm -rf build results .pytest_cache .mypy_cache .ruff_cache
