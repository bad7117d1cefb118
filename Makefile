# Every target sets up what it needs: the virtualenv, the package with its dev extras, system packages.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rig-installed
BENCH  ?= benches/sim.yaml
RESULTS ?= results

# CHECK:PACKAGE pairs for tools/ensure-system-packages (Debian/Ubuntu package names).
SYSTEM_PACKAGES := gcc:gcc /usr/include/mbedtls/ssl.h:libmbedtls-dev /usr/sbin/sshd:openssh-server \
                   /usr/sbin/mosquitto:mosquitto /usr/sbin/ser2net:ser2net tcpdump:tcpdump chromium:chromium npm:npm

.PHONY: help setup system-deps test lint typecheck unit bench bench-parse bench-diagnose bench-uart bench-matrix bench-drivers bench-wire bench-pool \
        nightly gate report clean

help:
	@echo "make bench   run the HIL matrix on the default (simulated) bench; BENCHES=N: on a pool of N simulated benches"
	@echo "make test    run the rig's own checks: ruff, mypy, pytest"
	@echo "make bench-parse | bench-diagnose | bench-uart | bench-matrix | bench-drivers | bench-wire | bench-pool   benchmarks that print figures"
	@echo "make nightly | gate VARIANT=name BENCH=file | report   the nightly run, the release gate, the HTML report"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# labgrid's client and coordinator, in an environment of their own: its package brings pyserial-labgrid,
# a fork that installs over pyserial's `serial` package the rig's UART driver is built on.
LABGRID := build/labgrid/bin/labgrid-client
$(LABGRID):
	mkdir -p build
	$(PYTHON) -m venv build/labgrid
	build/labgrid/bin/pip install --quiet labgrid

setup: $(STAMP) system-deps $(LABGRID)

system-deps:
	@tools/ensure-system-packages $(SYSTEM_PACKAGES)

lint: $(STAMP)
	$(BIN)/ruff check rig tests $(wildcard tests_hil) conftest.py
	$(BIN)/ruff format --check rig tests $(wildcard tests_hil) conftest.py
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy rig

unit: setup
	$(BIN)/pytest tests

test: lint typecheck unit

# The HIL suite. The session brings up a provided bench (the simulated one) when it is down and stops
# it at the end; evidence goes to $(RESULTS)/<run-id>/, allure results to $(RESULTS)/allure-results.
HIL := $(BIN)/pytest tests_hil -p no:cacheprovider --bench $(BENCH) --results $(RESULTS) \
       --alluredir $(RESULTS)/allure-results
ALLURE := build/node_modules/.bin/allure

# BENCHES=N: the same matrix over a pool of N simulated benches (one pytest-xdist worker each), started
# in $(POOL_DIR) before the run and stopped after it.
POOL_DIR ?= .rig-sim/pool
HIL_POOL := $(BIN)/pytest tests_hil -p no:cacheprovider --results $(RESULTS) --alluredir $(RESULTS)/allure-results

bench: setup
ifeq ($(BENCHES),)
	$(HIL) --clean-alluredir $(PYTEST_ARGS)
else
	$(BIN)/rig sim pool up $(BENCHES) --dir $(POOL_DIR)
	$(HIL_POOL) --clean-alluredir -n $(BENCHES) --bench $(POOL_DIR)/pool.yaml $(PYTEST_ARGS); \
	  status=$$?; $(BIN)/rig sim pool down --dir $(POOL_DIR); exit $$status
endif

# The nightly's report is generated whatever the run's verdict (the run's exit status is kept); its
# allure history ($(RESULTS)/allure-history.jsonl, beside the cleaned allure results) carries over.
nightly: setup
	$(HIL) --clean-alluredir -m nightly --repeat $(or $(REPEAT),3) $(PYTEST_ARGS); \
	status=$$?; $(MAKE) --no-print-directory report RESULTS=$(RESULTS); exit $$status

gate: setup
	@test -n "$(VARIANT)" || { echo "usage: make gate VARIANT=<name in firmware_configs/> BENCH=benches/<real bench>.yaml" >&2; exit 2; }
	$(BIN)/rig gate $(VARIANT) --bench $(BENCH) --results $(RESULTS) --repeat $(or $(REPEAT),5) $(GATE_ARGS)

# Allure 3 from npm (no Java) into build/; the HTML report into $(RESULTS)/report. allurerc.mjs keeps
# the report's history in $(RESULTS)/allure-history.jsonl (each report appends its run) and reads the
# run's categories.
$(ALLURE):
	mkdir -p build
	npm install --prefix build --no-audit --no-fund allure@3

report: $(ALLURE)
	@test -d $(RESULTS)/allure-results || { echo "no $(RESULTS)/allure-results: run make bench or make nightly first" >&2; exit 2; }
	RESULTS=$(RESULTS) ALLURE_RESULTS=$(RESULTS)/allure-results \
	    $(ALLURE) generate $(RESULTS)/allure-results --config allurerc.mjs --output $(RESULTS)/report
	@echo "report: $(RESULTS)/report/index.html"

bench-parse: setup
	$(BIN)/python -m tests.benchmarks.parse

bench-diagnose: setup
	$(BIN)/python -m tests.benchmarks.diagnose

bench-uart: setup
	$(BIN)/python tests/benchmarks/uart.py

bench-matrix: setup
	$(BIN)/python tests/benchmarks/matrix.py --bench $(BENCH)

bench-drivers: setup
	$(BIN)/python tests/benchmarks/drivers.py

bench-wire: setup
	$(BIN)/python tests/benchmarks/wire.py

bench-pool: setup
	$(BIN)/python tests/benchmarks/pool.py

clean:
	rm -rf build results .pytest_cache .mypy_cache .ruff_cache
