# Two entry points (see README): `make run` (the platform demo) and `make test`.
# Every target creates .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo simulate test lint setup clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: demo

demo: $(STAMP)
	$(BIN)/suanwang demo

simulate: $(STAMP)
	$(BIN)/suanwang simulate --scenario china --policy all --out report

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# playwright-core for the console's browser tests (tests/console), from package-lock.json
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

test: lint node_modules/.package-lock.json
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) report
