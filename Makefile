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

# The warm-start pipeline on the default workload, small enough to finish in a few minutes on 2 cores:
# demonstrations (2 Ray env runners) -> behaviour cloning -> warm-start PPO -> evaluation on held-out seeds.
RUN_DIR ?= runs/quickstart
WR := $(VENV)/bin/warmroute

run: install
	rm -rf $(RUN_DIR)
	$(WR) collect-demos --workload default --policy least_outstanding --steps 6000 --epsilon 0.1 --num-env-runners 2 --output $(RUN_DIR)/demos
	$(WR) pretrain --demo $(RUN_DIR)/demos --output $(RUN_DIR)/bc
	$(WR) train --workload default --enable-warm-start --pretrained-actor-path $(RUN_DIR)/bc --iterations 6 --num-env-runners 2 --critic-warmup-steps 2048 --warmup-steps 4096 --kl-ref-decay-steps 12000 --output $(RUN_DIR)/warm
	$(WR) evaluate --workload default --policy round_robin,random,lor,least_outstanding,least_work,power_of_two,speed_aware,$(RUN_DIR)/bc,$(RUN_DIR)/warm/policy --episodes 2 --json $(RUN_DIR)/evaluate.json

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
