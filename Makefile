# pod5-reactor: every target creates the venv it needs on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test lint fmt demo screenshots torture torture-power crash-states load bench fleet-trial fleet-walltime clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/reactor demo --flow-cells 4

# The dashboard's screenshots in docs/screenshots/ (shown in the README), taken in Debian's
# Chromium from a real simulated host (four flow cells, engines, a poison file): about 45 s.
screenshots: $(STAMP)
	$(BIN)/python -m tests.system.screenshots --out docs/screenshots

# Crash torture: kill -9 the server every round of a live run, then prove
# exactly-once. The figures go to $(TORTURE_JSON) (docs/operations.md's table is filled from it).
# HOSTILE=N adds a hostile engine that mishandles one batch in N (pass/ a link to INPUTDIR,
# a link leading out, its folder removed, a late DONE): `make torture ROUNDS=50 HOSTILE=3`.
ROUNDS       ?= 500
SEED         ?= 1
HOSTILE      ?= 0
TORTURE_JSON ?= $(VENV)/torture.json
TORTURE_ARGS ?=
torture: $(STAMP)
	$(BIN)/python -m tests.system.torture --rounds $(ROUNDS) --seed $(SEED) --hostile-every $(HOSTILE) --json $(TORTURE_JSON) $(TORTURE_ARGS)

# Power-cut torture: the run folders on a FUSE filesystem that keeps only what was
# fsynced; every round kills every process and cuts the power, then proves exactly-once.
# Needs fuse3 and /dev/fuse (and root, or a user allowed to mount FUSE filesystems).
POWER_ROUNDS ?= 200
POWER_JSON   ?= $(VENV)/torture-power.json
torture-power: $(STAMP)
	$(BIN)/python -m tests.system.power_torture --rounds $(POWER_ROUNDS) --seed $(SEED) --json $(POWER_JSON) $(TORTURE_ARGS)

# Crash states in-process: a recorded run cut at every point, strictly (only what was
# fsynced) and keeping a random part of the rest, seed after seed; each state recovered,
# its answers checked and the run driven to its end with every read exactly once.
# No FUSE needed. `make test` checks about 2,300 of them; this checks $(STATES).
# MinKNOW's output layout: `make crash-states CRASH_ARGS="--layout minknow"`.
STATES     ?= 20000
CRASH_ARGS ?=
crash-states: $(STAMP)
	$(BIN)/python -m tests.system.crash_states --states $(STATES) --seed $(SEED) $(CRASH_ARGS)

# Load: 64 engines at once for 60 s while 10,000 files arrive; per-verb latency
# table on stdout, figures in $(LOAD_JSON). Exit 0 only with no error, no file lost or duplicated.
LOAD_JSON ?= $(VENV)/load.json
LOAD_ARGS ?=
load: $(STAMP)
	$(BIN)/python -m tests.system.load --engines 64 --seconds 60 --files 10000 --json $(LOAD_JSON) $(LOAD_ARGS)

# Benchmarks: restart, ingest latency, API and memory, each beside its floor or
# ceiling measured in the same run. Table on stdout, figures in $(BENCH_JSON). The trees of
# up to 10^6 hardlinked files are built once under $(VENV)/bench-data and reused
# (BENCH_ARGS=--fresh rebuilds them; --quick for tiny sizes).
BENCH_JSON ?= $(VENV)/bench.json
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m tests.bench --json $(BENCH_JSON) $(BENCH_ARGS)

# The fleet on a simulated run, beside a fixed fleet of max_engines: engines over time
# against the backlog, and the engine time each holds. Starts its own single-node Slurm
# (needs root and Debian's slurm-wlm and munge, as `make test` does). Figures in $(FLEET_JSON).
FLEET_JSON ?= $(VENV)/fleet-trial.json
FLEET_ARGS ?=
fleet-trial: $(STAMP)
	$(BIN)/python -m tests.system.fleet_trial --json $(FLEET_JSON) $(FLEET_ARGS)

# A real Slurm time limit (minutes): an engine signalled before it hands its batch back
# and is replaced; outside `make test` for its length.
fleet-walltime: $(STAMP)
	$(BIN)/pytest -m walltime tests/system/test_fleet_walltime.py

lint: $(STAMP)
	$(BIN)/ruff check reactor tests
	$(BIN)/ruff format --check reactor tests
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format reactor tests
	$(BIN)/ruff check --fix reactor tests

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
