"""What a sweep leaves behind: a console line per finished trial, ``results.csv`` / ``results.md`` (one row per trial)
and ``best/``, the policy of the trial with the best held-out score, ready for ``warmroute evaluate --policy``."""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import ResultGrid

from rllib_ext import metrics as M
from warmroute.artifacts.atomic import staged_dir

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
BEST_DIR = "best"
POLICY_DIR = "policy"  # inside a trial's final checkpoint (written by tuning.sweep.train_trial)


def _status(metrics: dict[str, Any], error: bool) -> str:
    if error:
        return "error"
    if M.EVAL_SCORE in metrics:
        return "completed"
    return "stopped early" if metrics else "not started"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


class TrialProgress(tune.Callback):
    """One console line per finished (completed, stopped or failed) trial."""

    def __init__(self, keys: list[str], log: Callable[[str], None] = print) -> None:
        self.keys = keys
        self.log = log
        self.done = 0

    def _line(self, trial: Any, error: bool) -> None:
        self.done += 1
        result = trial.last_result or {}
        score = result.get(M.TUNE_SCORE)
        held_out = result.get(M.EVAL_SCORE)
        settings = " ".join(f"{k}={_fmt(_plain(trial.config.get(k)))}" for k in self.keys)
        self.log(
            f"trial {self.done} {trial.trial_id} {_status(result, error)} at iteration {result.get('training_iteration', 0)}: "
            f"score {_fmt(score)} held-out {_fmt(held_out)} | {settings}"
        )

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._line(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._line(trial, error=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trial_rows(grid: ResultGrid, keys: list[str]) -> list[dict[str, Any]]:
    """One row per trial: its settings, final training score, held-out score, env steps and status."""
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        rows.append(
            {
                "trial": metrics.get("trial_id", Path(result.path).name),
                "status": _status(metrics, result.error is not None),
                **{key: _plain(result.config.get(key)) for key in keys},
                "iterations": metrics.get("training_iteration", 0),
                "env_steps": metrics.get(M.ENV_STEPS, 0),
                "score_s": metrics.get(M.TUNE_SCORE),
                "held_out_s": metrics.get(M.EVAL_SCORE),
                "held_out_p99_e2e_s": metrics.get(M.EVAL_PREFIX + "p99_e2e_s"),
                "checkpoint": result.checkpoint.path if result.checkpoint else None,
            }
        )
    return sorted(rows, key=lambda r: (r["held_out_s"] is None, r["held_out_s"] or math.inf, r["score_s"] or math.inf))


def write_tables(rows: list[dict[str, Any]], output: Path, title: str) -> None:
    columns = [c for c in rows[0] if c != "checkpoint"] if rows else []
    with open(output / RESULTS_CSV, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in columns) + " |" for row in rows]
    (output / RESULTS_MD).write_text("\n".join(lines) + "\n")


def export_best(rows: list[dict[str, Any]], output: Path) -> dict[str, Any] | None:
    """Copy the best evaluated trial's exported policy to ``output/best`` (atomically); None if no trial finished."""
    evaluated = [r for r in rows if r["held_out_s"] is not None and r["checkpoint"]]
    if not evaluated:
        return None
    best = min(evaluated, key=lambda r: r["held_out_s"])
    with staged_dir(output / BEST_DIR) as staging:
        shutil.copytree(Path(best["checkpoint"]) / POLICY_DIR, staging, dirs_exist_ok=True)
    return best
