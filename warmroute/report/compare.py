"""Cold vs warm (or any runs) from their own logs: routing quality by env-step bucket, and learning curves.

Each training run appends one JSON row per iteration to ``progress.jsonl``; this module reads nothing else, so it
works on runs copied off a cluster. Buckets: the first iteration (what the initial policy did: for a warm start,
the cloned teacher before any policy update), *early* (iterations ending in the first third of the run's env
steps) and *late* (the last third).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rllib_ext import metrics as M
from warmroute.artifacts.metadata import ArtifactError
from warmroute.artifacts.run_dir import RunDir


def load_progress(run_dir: str | Path) -> list[dict[str, Any]]:
    path = RunDir(run_dir).progress
    if not path.is_file():
        raise ArtifactError(f"{{flag:runs}} {run_dir}: no {path.name}; is this a `warmroute train` output directory?")
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{{flag:runs}} {path}: corrupted line {exc.lineno}") from exc
    if not rows:
        raise ArtifactError(f"{{flag:runs}} {run_dir}: {path.name} is empty (no finished iteration)")
    return rows


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if key in r and np.isfinite(r[key])]
    return float(np.mean(values)) if values else None


def buckets(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    total = rows[-1][M.ENV_STEPS]
    return {
        "first iteration": rows[:1],
        "early (<=1/3)": [r for r in rows if r[M.ENV_STEPS] <= total / 3] or rows[:1],
        "late (>=2/3)": [r for r in rows if r[M.ENV_STEPS] >= 2 * total / 3] or rows[-1:],
    }


def summarize_run(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per bucket: env-step range, mean latency, throughput and action distribution (means over iterations)."""
    replicas = sorted(int(k.rsplit("_", 1)[1]) for k in rows[-1] if k.startswith("env/action_distribution/"))
    table = {}
    for name, selected in buckets(rows).items():
        table[name] = {
            "env_steps": (selected[0][M.ENV_STEPS], selected[-1][M.ENV_STEPS]),
            "mean_e2e_s": _mean(selected, M.MEAN_E2E),
            "throughput_rps": _mean(selected, M.THROUGHPUT),
            "balance_score": _mean(selected, M.BALANCE),
            "action_distribution": [_mean(selected, M.ACTION_FRACTION.format(i)) for i in replicas],
        }
    return table


def first_step_reaching(rows: list[dict[str, Any]], latency_s: float) -> int | None:
    """Env steps at the first iteration whose mean training-episode latency is at or below ``latency_s``."""
    for row in rows:
        if row.get(M.MEAN_E2E, float("inf")) <= latency_s:
            return int(row[M.ENV_STEPS])
    return None


def format_comparison(runs: dict[str, list[dict[str, Any]]]) -> str:
    header = f"{'run':<14}{'bucket':<18}{'env steps':>18}{'mean e2e s':>12}{'req/s':>8}{'balance':>9}  action distribution"
    lines = [header, "-" * (len(header) + 12)]
    for name, rows in runs.items():
        for bucket, s in summarize_run(rows).items():
            steps = (
                f"{s['env_steps'][0]}-{s['env_steps'][1]}" if s["env_steps"][0] != s["env_steps"][1] else str(s["env_steps"][0])
            )
            dist = "[" + " ".join("-" if f is None else f"{f:.2f}" for f in s["action_distribution"]) + "]"
            cell = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
            lines.append(
                f"{name[-14:]:<14}{bucket:<18}{steps:>18}{cell(s['mean_e2e_s'], '.3f'):>12}"
                f"{cell(s['throughput_rps'], '.2f'):>8}{cell(s['balance_score'], '.3f'):>9}  {dist}"
            )
    return "\n".join(lines)


def plot_learning_curves(
    runs: dict[str, list[dict[str, Any]]], path: str | Path, reference: dict[str, float] | None = None
) -> Path:
    """Mean training-episode latency against env steps, one line per run (``reference``: horizontal lines).

    Training episodes are the *sampled* policy on *training* seeds, so a line drawn against a deterministic
    heuristic on other seeds misleads; the title says so and points to the report's held-out curves
    (``warmroute.report.build.checkpoint_curves``), which evaluate checkpoints on the heuristics' seeds.
    """
    from matplotlib.figure import Figure  # a Figure object: no pyplot state, no global backend switch

    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for name, rows in runs.items():
        points = [(r[M.ENV_STEPS], r[M.MEAN_E2E]) for r in rows if M.MEAN_E2E in r]
        if points:
            ax.plot(*zip(*points), marker=".", label=f"{name} (training episodes)")
    for label, value in (reference or {}).items():
        ax.axhline(value, linestyle="--", linewidth=1, label=label, color="gray")
    ax.set_xlabel("env steps (routing decisions)")
    ax.set_ylabel("mean end-to-end latency (s)")
    ax.set_title(
        "Training episodes: sampled policy on training seeds (noisy; not a held-out comparison)\n"
        "held-out curves: `warmroute report` learning_curves.png",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return Path(path)
