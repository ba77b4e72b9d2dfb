# Two commands on a fresh machine: `make run` (venv, pinned deps, the main job) and `make test`.
# `make lint` (ruff check + format check) and `make test-fast` (tests not marked slow) are the quick checks.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_TOOLS := pytest==9.2.0 ruff==0.17.6

.PHONY: install run test test-fast lint bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt $(DEV_TOOLS)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The warm-start pipeline on the default workload, small enough to finish in under 10 minutes on 2 cores
# (docs/pipeline.md): teacher -> demonstrations -> behaviour cloning -> warm- and cold-start PPO -> evaluation on
# held-out seeds -> report. A second `make run` reuses the finished stages (and resumes a stopped PPO run).
RUN_DIR ?= runs/quickstart
BUDGET ?= small
WR := $(VENV)/bin/warmroute

run: install
	$(WR) pipeline --workload default --budget $(BUDGET) --output $(RUN_DIR)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) benchmarks/env_throughput.py

clean:
	rm -rf $(VENV) results runs .pytest_cache
