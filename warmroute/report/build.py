"""The pipeline's report: checkpoints judged on held-out seeds, and tables and plots a person reads at a glance.

Why checkpoints on held-out seeds: a training iteration's metrics come from the *sampled* policy on *training*
seeds, while the heuristics are deterministic and evaluated on held-out seeds; drawn together, a warm start looks
5% worse than its teacher when on the same seeds it is equal. :func:`checkpoint_curves` evaluates every saved
checkpoint on the held-out seeds of the heuristics, so the learning curves and the heuristic lines are a paired
comparison; training-episode curves are drawn apart and labelled as such.

:func:`write_report` reads a pipeline directory (:class:`~warmroute.artifacts.run_dir.PipelineDir`) and writes
``report/report.md``, ``report/report.json`` (the same numbers, machine-readable, plus library versions) and the
PNGs of :mod:`warmroute.report.plots`. docs/report.md explains every table and plot.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from ray.rllib.core.rl_module.rl_module import RLModule
from tqdm.auto import tqdm

from envs.evaluation.evaluate import HeuristicPolicy, evaluate_policy, load_latencies
from envs.routers.heuristics import is_router
from envs.vidur_env import VidurEnvConfig
from rllib_ext import metrics as M
from rllib_ext.policy_io import CheckpointPolicy
from rllib_ext.train_config import TrainConfig
from warmroute.artifacts.atomic import staged_dir
from warmroute.artifacts.metadata import ArtifactError, library_versions, read_metadata
from warmroute.artifacts.run_dir import PipelineDir, PolicyDir, RunDir, checkpoint_iteration, checkpoint_module
from warmroute.report import plots
from warmroute.report.compare import load_progress, plot_learning_curves, summarize_run
from warmroute.report.markdown import render_markdown

RUN_LABELS = ("cold", "warm")
REACH_TOLERANCE = 0.01
"""A run "reaches" the teacher once a checkpoint's mean e2e latency is within this fraction of the teacher's."""
REPORT_FORMAT_VERSION = 1
"""Layout version of report.json (its keys), independent of the artefacts' ``METADATA_FORMAT_VERSION``."""
# Comparison-table columns: result key, header, format ("%": a fraction shown as a percentage).
COLUMNS = (
    ("mean_e2e_s", "mean e2e (s)", ".3f"),
    ("p50_e2e_s", "p50 e2e (s)", ".3f"),
    ("p99_e2e_s", "p99 e2e (s)", ".3f"),
    ("mean_ttft_s", "mean TTFT (s)", ".3f"),
    ("p90_ttft_s", "p90 TTFT (s)", ".3f"),
    ("p99_ttft_s", "p99 TTFT (s)", ".3f"),
    ("throughput_rps", "throughput (req/s)", ".2f"),
    ("balance_score", "balance", ".3f"),
)
CACHE_COLUMNS = (("cache_hit_rate", "cache hit rate", "%"),)
SLO_COLUMNS = (("slo_attainment", "SLO attainment", "%"), ("goodput_rps", "goodput (req/s)", ".2f"))


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """One decision is one tiny forward pass: handing it to several threads costs more than it saves (measured
    0.25 ms per call with 1 thread vs 3.7 ms with 2 on a loaded 2-core machine; curves 27% faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def checkpoint_curves(
    run_dir: Path, env: VidurEnvConfig, seeds: list[int], greedy: bool = False, *, progress: tqdm | None = None
) -> list[dict[str, Any]]:
    """Every complete checkpoint of a training run evaluated on ``seeds``, oldest first: one row per checkpoint
    with ``iteration``, ``env_steps`` (from ``progress.jsonl``; 0 for iteration 0) and ``evaluate_policy``'s metrics.

    Ray-free: each checkpoint's RLModule is loaded directly, no algorithm is built.
    """
    run = RunDir(run_dir)
    meta = read_metadata(run.path, RunDir.KIND, "run")
    env.layout.check_compatible(meta["layout"], source=f"run {run.path}")
    steps_at = {0: 0, **{row["iteration"]: row[M.ENV_STEPS] for row in load_progress(run.path)}}
    checkpoints = run.complete_checkpoints()
    if not checkpoints:
        raise ArtifactError(f"run {run.path}: no complete checkpoint under {run.checkpoints.name}/")
    rows = []
    with _one_torch_thread():
        for checkpoint in checkpoints:
            iteration = checkpoint_iteration(checkpoint)
            if iteration not in steps_at:
                raise ArtifactError(f"run {run.path}: {checkpoint.name} has no row in {run.progress.name}")
            module = RLModule.from_checkpoint(str(checkpoint_module(checkpoint).absolute()))
            module.eval()
            policy = CheckpointPolicy.from_module(module, f"{run.path.name}/{checkpoint.name}", greedy=greedy)
            metrics = evaluate_policy(policy, env, seeds, progress)
            rows.append({"iteration": iteration, "env_steps": int(steps_at[iteration]), "checkpoint": checkpoint.name, **metrics})
    return rows


def policy_label(name: str) -> str:
    """A short display name: ``.../warm/policy`` -> ``warm PPO``, ``.../bc`` -> ``BC clone``; others unchanged."""
    base, greedy = name.removesuffix(" (greedy)"), name.endswith(" (greedy)")
    parts = Path(base).parts
    if is_router(base) or not parts:
        return name
    label = {("cold", "policy"): "cold PPO", ("warm", "policy"): "warm PPO"}.get(tuple(parts[-2:]))
    label = label or ("BC clone" if parts[-1] == "bc" else base)
    return label + (" (greedy)" if greedy else "")


def _read_json(pipe: PipelineDir, path: Path) -> Any:
    if not path.is_file():
        raise ArtifactError(
            f"{{flag:pipeline}} {pipe.path}: no {path.name}; run `warmroute pipeline {{flag:output}} {pipe.path}` to finish it"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{{flag:pipeline}} {path}: corrupted JSON (line {exc.lineno}); re-run its pipeline stage") from exc


def _read_latencies(pipe: PipelineDir) -> dict[str, dict[str, Any]]:
    try:
        return load_latencies(pipe.latencies)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ArtifactError(
            f"{{flag:pipeline}} {pipe.latencies}: unreadable ({type(exc).__name__}); re-run the evaluation stage"
        ) from exc


def _field(data: Any, key: str, path: Path, what: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise ArtifactError(f"{{flag:pipeline}} {path}: no '{key}'; not {what} (re-run its pipeline stage)")
    return data[key]


def _teachers(config: dict[str, Any], warm: TrainConfig | None) -> list[str]:
    """The teacher(s) named in pipeline.json, else those recorded in the warm start's BC policy."""
    teacher = config.get("teacher") or []
    names = teacher.split(",") if isinstance(teacher, str) else list(teacher)
    clone = warm.kl.pretrained_actor_path if warm is not None else None
    if not names and clone and PolicyDir(clone).metadata.is_file():
        names = list(read_metadata(clone, PolicyDir.KIND, "{flag:pipeline}").get("teachers", []))
    return [name for name in names if name]


def heuristic_lines(results: dict[str, dict[str, Any]], seeds: list[int], env: VidurEnvConfig) -> dict[str, float]:
    """Mean e2e latency of every evaluated heuristic on ``seeds`` (the curves' seeds): taken from the evaluation
    when it used exactly these seeds, else re-run here (heuristics are deterministic and fast)."""
    lines = {}
    for name, result in results.items():
        if is_router(name):
            same = list(result.get("seeds", [])) == list(seeds)
            evaluated = result if same else evaluate_policy(HeuristicPolicy(name, env.layout), env, seeds)
            lines[name] = evaluated["mean_e2e_s"]
    return lines


def _headline(curves: dict[str, list[dict[str, Any]]], lines: dict[str, float], teacher: str | None) -> dict[str, Any]:
    best = min(lines, key=lines.get) if lines else None
    summary: dict[str, Any] = {"teacher": teacher, "best_heuristic": best, "reach_tolerance": REACH_TOLERANCE}
    for label, rows in curves.items():
        first, last = rows[0]["mean_e2e_s"], rows[-1]["mean_e2e_s"]
        run: dict[str, Any] = {"iteration0_mean_e2e_s": first, "final_mean_e2e_s": last, "final_env_steps": rows[-1]["env_steps"]}
        if teacher in lines:
            goal = lines[teacher] * (1 + REACH_TOLERANCE)
            run["iteration0_vs_teacher"] = first / lines[teacher] - 1
            run["steps_to_teacher"] = next((r["env_steps"] for r in rows if r["mean_e2e_s"] <= goal), None)
        if best is not None:
            run["final_vs_best_heuristic"] = last / lines[best] - 1
        summary[label] = run
    return summary


def _columns(results: dict[str, dict[str, Any]], env: VidurEnvConfig) -> tuple[tuple[str, str, str], ...]:
    columns = COLUMNS
    if env.workload.has_prefix or any(r.get("cache_hit_rate", 0) > 0 for r in results.values()):
        columns += CACHE_COLUMNS
    if all("slo_attainment" in r for r in results.values()):
        columns += SLO_COLUMNS
    return columns


PLOT_CAPTIONS = {
    "ttft_timeline.png": "Every request's time to first token in one held-out window: the best router vs the learned ones",
    "learning_curves.png": "Held-out learning curves: checkpoints and heuristics on the same held-out seeds",
    "training_curves.png": "Training episodes (sampled policy, training seeds): not comparable with the heuristic lines",
    "latency_cdf.png": "Latency CDF per policy on the held-out seeds",
    "action_distribution.png": "Share of requests per replica over training",
    "schedules.png": "KL-to-reference and entropy coefficients over training",
}


def timeline_panels(results: dict[str, dict[str, Any]], labels: dict[str, str]) -> list[tuple[str, str]]:
    """Policies of the TTFT timeline: the router with the lowest p90 TTFT, then warm and cold PPO (greedy, else
    sampled), each as ``(name, title)``."""
    routers = [name for name in results if is_router(name)]
    panels = []
    if routers:
        best = min(routers, key=lambda name: results[name]["p90_ttft_s"])
        panels.append((best, f"best router by p90 TTFT: {best}"))
    by_label = {label: name for name, label in labels.items()}
    for run in ("warm PPO", "cold PPO"):
        name = by_label.get(f"{run} (greedy)") or by_label.get(run)
        if name is not None:
            panels.append((name, labels[name]))
    return panels


def write_report(pipeline_dir: Path) -> Path:
    """Write ``report/`` of a pipeline directory (replacing an old one only once the new one is complete)."""
    pipe = PipelineDir(pipeline_dir)
    if not pipe.path.is_dir():
        raise ArtifactError(f"{{flag:pipeline}} {pipe.path}: no such directory")
    config = _read_json(pipe, pipe.config) if pipe.config.is_file() else {}
    evaluation, curves_file = _read_json(pipe, pipe.evaluation), _read_json(pipe, pipe.curves)
    evaluate_json, curves_json = "the output of `warmroute evaluate --json`", "written by checkpoint_curves"
    env = VidurEnvConfig.from_dict(_field(evaluation, "env_config", pipe.evaluation, evaluate_json))
    results: dict[str, dict[str, Any]] = _field(evaluation, "policies", pipe.evaluation, evaluate_json)
    runs = _field(curves_file, "runs", pipe.curves, curves_json)
    curves: dict[str, list[dict[str, Any]]] = {k: v for k, v in runs.items() if v}
    labels = [label for label in RUN_LABELS if pipe.run(label).path.is_dir()]
    progress = {label: load_progress(pipe.run(label).path) for label in labels}
    train_configs = {label: TrainConfig.from_run(pipe.run(label).path, flag="{flag:pipeline}") for label in labels}
    for label, cfg in train_configs.items():  # the runs must route the fleet the evaluation describes
        env.layout.check_compatible(cfg.env.layout.to_dict(), source=f"{{flag:pipeline}} {pipe.run(label).path}")
    seeds = list(_field(curves_file, "seeds", pipe.curves, curves_json))
    lines = heuristic_lines(results, seeds, env)
    teachers = [t for t in _teachers(config, train_configs.get("warm")) if t in lines]
    columns = _columns(results, env)
    with_slo = columns[-len(SLO_COLUMNS) :] == SLO_COLUMNS
    order = sorted(results, key=lambda n: -results[n]["slo_attainment"] if with_slo else results[n]["mean_e2e_s"])
    report: dict[str, Any] = {
        "format_version": REPORT_FORMAT_VERSION,
        "workload": env.workload.to_dict(),
        "seeds": {"evaluation": next(iter(results.values()), {}).get("seeds", []), "curves": seeds},
        "headline": _headline(curves, lines, teachers[0] if teachers else None),
        "heuristic_lines": lines,
        "comparison": {
            "columns": [list(c) for c in columns],
            "order": order,
            "labels": {name: policy_label(name) for name in results},
            "policies": {n: {k: results[n].get(k) for k, _, _ in (*columns, ("action_distribution", "", ""))} for n in order},
        },
        "buckets": {label: summarize_run(rows) for label, rows in progress.items()},
        "curves": curves,
        "plots": {},
        "configuration": {"pipeline": config, "runs": {label: cfg.to_dict() for label, cfg in train_configs.items()}},
        "versions": {**library_versions(), "matplotlib": version("matplotlib")},
    }
    best = report["headline"]["best_heuristic"]
    roles = {**({best: "best heuristic"} if best else {}), **{t: "teacher" for t in teachers}}
    latencies = _read_latencies(pipe) if pipe.latencies.is_file() else None
    panels = [p for p in timeline_panels(results, report["comparison"]["labels"]) if latencies and p[0] in latencies]
    timeline_ok = len(panels) > 1 and all("cached_tokens" in latencies[name] for name, _ in panels)
    with staged_dir(pipe.report) as tmp:
        made = [
            plots.ttft_timeline(latencies, panels, tmp / "ttft_timeline.png") if timeline_ok else None,
            plots.heldout_curves(curves, lines, roles, len(seeds), tmp / "learning_curves.png") if curves else None,
            plot_learning_curves(progress, tmp / "training_curves.png") if progress else None,
            plots.latency_cdf(latencies, report["comparison"]["labels"], roles, tmp / "latency_cdf.png") if latencies else None,
            plots.action_distribution(progress, curves, env.workload.devices, tmp / "action_distribution.png")
            if progress or curves
            else None,
            plots.schedules(train_configs, progress, tmp / "schedules.png") if train_configs else None,
        ]
        report["plots"] = {p.name: PLOT_CAPTIONS[p.name] for p in made if p is not None}
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
        (tmp / "report.md").write_text(render_markdown(report, env))
    return pipe.report / "report.md"
