# Two commands on a fresh machine: `make run` (venv, pinned deps, the main job) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e ".[test]" pytest==9.2.0
	touch $(STAMP)

run: install
	$(VENV)/bin/warmroute evaluate --workload default --policy round_robin,random,lor,least_outstanding,least_work,power_of_two,speed_aware --episodes 2 --json results/evaluate_default.json

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/env_throughput.py

clean:
	rm -rf $(VENV) results runs .pytest_cache
