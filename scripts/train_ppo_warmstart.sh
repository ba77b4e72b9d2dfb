#!/usr/bin/env bash
# One-click warm-start PPO: `warmroute pipeline` (teacher -> demonstrations -> behaviour cloning -> warm- and
# cold-start PPO -> evaluation on held-out seeds -> report), resumable: run it again to continue where it stopped.
#
# Run:
#   scripts/train_ppo_warmstart.sh                                   # default workload, --budget full
#   WORKLOAD=heterogeneous BUDGET=small scripts/train_ppo_warmstart.sh
#   scripts/train_ppo_warmstart.sh --teacher least_work --iterations 60   # any other pipeline flag is passed on
# Environment: WORKLOAD (default), BUDGET (full), OUTPUT (runs/warmstart-$WORKLOAD-$BUDGET), PYTHON (.venv/bin/python).
# Expect: the budgets' measured wall times are in docs/pipeline.md; outputs (report/, TensorBoard logs) in $OUTPUT.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOAD="${WORKLOAD:-default}"
BUDGET="${BUDGET:-full}"
OUTPUT="${OUTPUT:-runs/warmstart-$WORKLOAD-$BUDGET}"
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" -m warmroute.cli pipeline --workload "$WORKLOAD" --budget "$BUDGET" --output "$OUTPUT" "$@"
