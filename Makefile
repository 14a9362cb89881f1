# Two entry points (see README): `make run` (the platform demo) and `make test`.
# Every target creates .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact versions of everything installed (pip and setuptools, the build backend, included):
# `make lock` writes it (see README, "Dependencies").
LOCK := constraints.txt
PIN := -c $(LOCK) --build-constraint $(LOCK)

.PHONY: run demo sandbox-tools simulate test test-hours lint setup lock clean

# A new lock or pyproject.toml rebuilds .venv from scratch, so it holds exactly what is pinned.
$(STAMP): pyproject.toml $(LOCK)
	$(PY) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet --upgrade pip -c $(LOCK)
	$(BIN)/pip install --quiet --upgrade setuptools $(PIN)
	$(BIN)/pip install --quiet $(PIN) -e '.[dev]'
	@# everything installed must be pinned: a dependency missing from the lock is an error
	@unpinned=$$($(BIN)/pip freeze --all --exclude-editable | grep -vxFf $(LOCK)); \
	if [ -n "$$unpinned" ]; then \
	  echo "not pinned in $(LOCK) (run make lock): $$unpinned" >&2; exit 1; fi
	touch $(STAMP)

setup: $(STAMP)

# Regenerate the lock: install from pyproject.toml alone (newest versions it allows) into a
# clean temporary venv and record what it got. Then review the diff and run the tests.
lock:
	rm -rf .lock-venv
	$(PY) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip setuptools
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	{ echo "# Exact versions of everything 'pip install -e .[dev]' installs, pip and the build"; \
	  echo "# backend (setuptools) included: the Makefile installs with -c and --build-constraint"; \
	  echo "# on this file. Written by 'make lock' ($$(.lock-venv/bin/python -V), $$(uname -sm))."; \
	  .lock-venv/bin/pip freeze --all --exclude-editable; } > $(LOCK)
	rm -rf .lock-venv

run: demo

# The demo's jobs run sandboxed (docs/security.md): as root, install Debian's bubblewrap if it
# is missing; otherwise say how (`make run DEMO_FLAGS=--unsafe-shared-user` runs them unsandboxed).
sandbox-tools:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && apt-get install -y -q --no-install-recommends bubblewrap; \
	  else echo "the demo runs jobs in bubblewrap as root: install Debian's bubblewrap and run as root," \
	    "or run 'make run DEMO_FLAGS=--unsafe-shared-user' (dangerous: jobs run as you)" >&2; fi; }

demo: $(STAMP) sandbox-tools
	$(BIN)/suanwang demo $(DEMO_FLAGS)

simulate: $(STAMP)
	$(BIN)/suanwang simulate --scenario china --policy all --out report

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# playwright-core for the console's browser tests (tests/console), from package-lock.json
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

# On two processes (pytest-xdist): most tests wait on servers and browsers, so two halve the
# suite's time on two cores; a file's tests stay on one process. The tests of real Slurm
# testbeds (marked slurm, tests/conftest.py) then run in one process, one at a time. Each
# part lists its slowest tests: where the suite's time goes.
# XDIST= runs everything in one process.
XDIST ?= -n 2 --dist loadfile
test: lint node_modules/.package-lock.json
	$(BIN)/pytest -q $(XDIST) -m "not slurm" --durations=25
	$(BIN)/pytest -q -m slurm --durations=15
	$(MAKE) --no-print-directory test-hours

# The tests whose answers depend on the date and the hour, again with the clock moved to four
# fixed instants (pytest --clock-at: time-machine, in this process; the clock ticks on from
# there). 20:10 UTC is 04:10 the next day in China, and the first instant crosses a year there.
# Whatever the hour CI runs at, these must pass. On SQLite (the PostgreSQL half is deselected,
# not skipped: the main run above covers it at the real hour), to keep CI short.
CLOCKS := 2026-12-31T20:10:00Z 2027-03-01T03:10:00Z 2026-06-15T09:10:00Z 2026-11-30T14:10:00Z
TIME_TESTS := $(addprefix tests/server/test_server_,deferral.py trading_live.py \
	trading_rating.py one_engine.py billing.py billing_quotas.py billing_reservations.py \
	usage_report.py centers.py metrics.py clock.py)
test-hours: $(STAMP)
	@for at in $(CLOCKS); do echo "== the clock at $$at"; \
	  $(BIN)/pytest -q -p no:cacheprovider $(XDIST) --clock-at $$at -k "not postgresql" $(TIME_TESTS) \
	  || exit 1; done

clean:
	rm -rf $(VENV) .lock-venv report
