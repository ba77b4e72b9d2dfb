"""The stages of ``warmroute pipeline``, each one call into the library that the single-step commands use.

Each stage function takes the run's :class:`Context` and whether to resume, writes its output under the pipeline
directory and returns a small JSON summary that ``pipeline.json`` keeps. Outputs that other commands read have
those commands' formats: ``demos/`` is a ``collect-demos`` dataset, ``bc/`` a ``pretrain`` policy, ``warm/`` and
``cold/`` ``train`` runs (TensorBoard logs included), ``evaluation.json`` is what ``evaluate --json`` writes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from tqdm.auto import tqdm

from envs.evaluation.evaluate import HeuristicPolicy, evaluate_policy, save_latencies
from envs.routers.cache_aware import CACHE_ROUTERS
from envs.routers.heuristics import ROUTERS, is_router
from envs.vidur_env import VidurEnvConfig
from rllib_ext.bc import pretrain
from rllib_ext.demos import collect_demos
from rllib_ext.policy_io import CheckpointPolicy
from rllib_ext.ray_runtime import ensure_ray
from rllib_ext.train import train
from warmroute.artifacts.atomic import write_json
from warmroute.artifacts.run_dir import PipelineDir
from warmroute.pipeline.config import OBJECTIVES, PipelineConfig
from warmroute.report.build import checkpoint_curves as run_curves
from warmroute.report.build import write_report

RUNS = ("warm", "cold")


@dataclass
class Context:
    """What every stage reads: the config, the directory, the state being recorded, the chosen teacher."""

    config: PipelineConfig
    pipeline: PipelineDir
    state: dict[str, Any]
    """``pipeline.json`` as it will be written (stages add ``teacher`` and ``policies``)."""
    teacher: str | None
    """The teacher router, once the teacher stage has run or been reused."""
    progress: bool
    log: Callable[[str], None]


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its work, its output, how to tell the output is complete, and what it depends on."""

    name: str
    """Shown in the banner and keyed in ``pipeline.json``."""
    run: Callable[[Context, bool], dict[str, Any]]
    """Does the work (``resume``: continue a stopped run); returns the JSON summary ``pipeline.json`` keeps."""
    output: Callable[[PipelineDir], Path | None]
    """Where the stage writes (None: the teacher stage only records its choice in ``pipeline.json``)."""
    marker: Callable[[PipelineDir], Path]
    """A file the stage writes last, so its presence means the output is complete."""
    settings: Callable[[PipelineConfig, str | None], dict[str, Any]]
    """The settings the output depends on besides the stages before it (given the chosen teacher). Names are the
    budget's fields (the CLI's flags); paths are left out, so a finished pipeline directory may be moved."""
    resumable: bool = False
    """A PPO run: when stopped after its first complete checkpoint it resumes from its latest one."""

    def settings_of(self, config: PipelineConfig, teacher: str | None) -> dict[str, Any]:
        """:attr:`settings` as plain JSON values (what ``pipeline.json`` stores and a re-run compares)."""
        return json.loads(json.dumps(self.settings(config, teacher)))

    def done(self, pipeline: PipelineDir) -> bool:
        """Whether the stage's output is still there."""
        return self.marker(pipeline).exists()

    def can_resume(self, pipeline: PipelineDir) -> bool:
        if not self.resumable:
            return False
        run = pipeline.run(self.name)
        return run.metadata.is_file() and bool(run.complete_checkpoints())

    def remove_output(self, pipeline: PipelineDir) -> None:
        """Delete what an unfinished or outdated run left behind (the library calls refuse to overwrite)."""
        path = self.output(pipeline)
        if path is not None and path.is_dir():
            shutil.rmtree(path)
        elif path is not None and path.exists():
            path.unlink()


def heuristic_names(config: PipelineConfig) -> list[str]:
    """Every heuristic router that applies: cache-aware ones on prefix workloads, plus an explicit ``--teacher``."""
    names = list(ROUTERS) + (list(CACHE_ROUTERS) if config.env.workload.has_prefix else [])
    return names + [config.teacher] if config.teacher and config.teacher not in names else names


@ray.remote(num_cpus=1)
def _evaluate_remote(
    policy: str, greedy: bool, env: VidurEnvConfig, seeds: list[int], per_request: bool
) -> tuple[str, dict[str, Any]]:
    """One policy on ``seeds`` in a Ray worker, built there: a router name or a saved policy directory."""
    layout = env.layout
    built = HeuristicPolicy(policy, layout) if is_router(policy) else CheckpointPolicy(policy, layout, greedy=greedy)
    return built.name, evaluate_policy(built, env, seeds, per_request=per_request)


def _evaluate_all(
    policies: Sequence[tuple[str, bool]],
    env: VidurEnvConfig,
    seeds: list[int],
    desc: str,
    progress: bool,
    per_request: bool = False,
) -> dict[str, dict[str, Any]]:
    """``evaluate_policy`` on the same seeds for every ``(router name or policy directory, greedy)``, one Ray task per
    policy so that every core evaluates. Each policy is seeded per episode, so the results are those of
    ``warmroute evaluate`` (which runs them one after the other); keys are the names it gives them."""
    ensure_ray()
    pending = [_evaluate_remote.remote(str(policy), greedy, env, seeds, per_request) for policy, greedy in policies]
    order = {ref: i for i, ref in enumerate(pending)}
    done: dict[int, tuple[str, dict[str, Any]]] = {}
    with tqdm(total=len(policies) * len(seeds), desc=desc, unit="episode", disable=not progress) as bar:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            done[order[ready[0]]] = name, result = ray.get(ready[0])
            bar.set_postfix_str(name)
            bar.update(len(seeds))
    return dict(done[i] for i in range(len(done)))


def choose_teacher(ctx: Context, resume: bool) -> dict[str, Any]:
    """``--teacher``, or the best heuristic by the reward's metric on validation seeds (never the test seeds)."""
    config = ctx.config
    if config.teacher is not None:
        result: dict[str, Any] = {"teacher": config.teacher, "chosen_by": "--teacher"}
    else:
        metric, best = OBJECTIVES[config.env.reward]
        policies = [(name, False) for name in heuristic_names(config)]
        scores = {
            name: r[metric]
            for name, r in _evaluate_all(policies, config.env, config.validation_seeds, "validation", ctx.progress).items()
        }
        teacher = best(scores, key=scores.__getitem__)
        result = {"teacher": teacher, "chosen_by": f"{best.__name__} {metric} on validation seeds", "validation": scores}
        ctx.log(f"  teacher: {teacher} ({metric} {scores[teacher]:.4g} on {len(config.validation_seeds)} validation seeds)")
    ctx.teacher = ctx.state["teacher"] = result["teacher"]
    return result


def demonstrations(ctx: Context, resume: bool) -> dict[str, Any]:
    assert ctx.teacher is not None
    return collect_demos(ctx.config.demo_config(ctx.teacher), ctx.pipeline.demos.path, progress=ctx.progress)


def behaviour_cloning(ctx: Context, resume: bool) -> dict[str, Any]:
    result = pretrain(ctx.pipeline.demos.path, ctx.pipeline.bc.path, ctx.config.bc_config(), progress=ctx.progress)
    ctx.log(f"  validation accuracy {result['validation']['accuracy']:.3f} (best epoch {result['best_epoch']})")
    return {"best_epoch": result["best_epoch"], "validation_accuracy": result["validation"]["accuracy"]}


def _ppo(label: str) -> Callable[[Context, bool], dict[str, Any]]:
    def stage(ctx: Context, resume: bool) -> dict[str, Any]:
        clone = ctx.pipeline.bc.path if label == "warm" else None
        run = ctx.pipeline.run(label)
        result = train(ctx.config.train_config(clone), run.path, resume=resume, progress=ctx.progress, log=ctx.log)
        return {"final": result["final"]}

    stage.__doc__ = f"{label}-start PPO into {label}/ (resumes from its latest checkpoint when stopped)."
    return stage


def evaluation(ctx: Context, resume: bool) -> dict[str, Any]:
    """Every heuristic, the clone, warm and cold PPO (sampled and greedy) on the held-out seeds (and held-out trace
    windows, when the pipeline has them)."""
    config, pipeline = ctx.config, ctx.pipeline
    saved = {"bc": pipeline.bc.path, "warm": pipeline.run("warm").policy.path, "cold": pipeline.run("cold").policy.path}
    heuristics = [(name, False) for name in heuristic_names(config)]
    learned = {
        f"{role}{'_greedy' if greedy else ''}": (str(path), greedy) for role, path in saved.items() for greedy in (False, True)
    }
    policies = [*heuristics, *learned.values()]
    results = _evaluate_all(policies, config.eval_env, config.test_seeds, "evaluate", ctx.progress, per_request=True)
    results = save_latencies(pipeline.latencies, results)  # per-request latencies for the report's CDF
    write_json(pipeline.evaluation, {"env_config": config.eval_env.to_dict(), "policies": results})
    names = list(results)  # in the order asked: heuristics first, then the learned policies
    ctx.state["policies"] = {
        "teacher": ctx.teacher,
        "heuristics": names[: len(heuristics)],
        **dict(zip(learned, names[len(heuristics) :])),
    }
    return {"policies": len(results)}


def checkpoint_curves(ctx: Context, resume: bool) -> dict[str, Any]:
    """Every checkpoint of both runs on the same held-out seeds (a prefix of the test seeds), one Ray task per run.

    The report draws the heuristics on these seeds too (re-evaluating them when they are not the test seeds)."""
    config, pipeline = ctx.config, ctx.pipeline
    ensure_ray()
    curves = ray.remote(num_cpus=1)(run_curves)
    refs = {label: curves.remote(pipeline.run(label).path, config.eval_env, config.curve_seeds) for label in RUNS}
    pending = list(refs.values())
    with tqdm(total=len(pending), desc="curves", unit="run", disable=not ctx.progress) as bar:
        while pending:
            _, pending = ray.wait(pending, num_returns=1)
            bar.update(1)
    runs = {label: ray.get(ref) for label, ref in refs.items()}
    write_json(pipeline.curves, {"seeds": config.curve_seeds, "runs": runs})
    return {"checkpoints": {label: len(rows) for label, rows in runs.items()}}


def report(ctx: Context, resume: bool) -> dict[str, Any]:
    path = write_report(ctx.pipeline.path)
    ctx.log(f"  report: {path}")
    return {"report": str(path)}


def _training(config: PipelineConfig) -> dict[str, Any]:
    b = config.budget
    training = {k: getattr(b, k) for k in ("iterations", "train_batch_size", "minibatch_size", "checkpoint_every")}
    return {**training, "num_env_runners": config.num_env_runners, "seed": config.seed}


def _held_out(config: PipelineConfig) -> dict[str, Any]:
    """Where the evaluation, the curves and the report are judged: the held-out trace windows, when set."""
    return {"held_out_trace_start": config.held_out_trace_start, "held_out_trace_windows": config.held_out_trace_windows}


def _teacher_settings(config: PipelineConfig, teacher: str | None) -> dict[str, Any]:
    """The env is the teacher stage's: every later stage depends on it through this one."""
    validation = None if config.teacher else config.budget.validation_episodes
    return {"env": config.env.to_dict(), "teacher": config.teacher, "validation_episodes": validation}


STAGES: tuple[Stage, ...] = (
    Stage("teacher", choose_teacher, output=lambda p: None, marker=lambda p: p.config, settings=_teacher_settings),
    Stage(
        "demos",
        demonstrations,
        output=lambda p: p.demos.path,
        marker=lambda p: p.demos.metadata,
        settings=lambda c, teacher: {
            "teacher": teacher,
            "demo_steps": c.budget.demo_steps,
            "num_env_runners": c.num_env_runners,
            "seed": c.seed,
        },
    ),
    Stage(
        "bc",
        behaviour_cloning,
        output=lambda p: p.bc.path,
        marker=lambda p: p.bc.metadata,
        settings=lambda c, _: {"bc_epochs": c.budget.bc_epochs, "seed": c.seed},
    ),
    Stage(
        "warm",
        _ppo("warm"),
        output=lambda p: p.run("warm").path,
        marker=lambda p: p.run("warm").policy.metadata,
        settings=lambda c, _: {
            **_training(c),
            **{k: getattr(c.budget, k) for k in ("kl_ref_decay_steps", "warmup_steps", "critic_warmup_steps")},
        },
        resumable=True,
    ),
    Stage(
        "cold",
        _ppo("cold"),
        output=lambda p: p.run("cold").path,
        marker=lambda p: p.run("cold").policy.metadata,
        settings=lambda c, _: {**_training(c), "warmup_steps": c.budget.warmup_steps},
        resumable=True,
    ),
    Stage(
        "evaluation",
        evaluation,
        output=lambda p: p.evaluation,
        marker=lambda p: p.evaluation,
        settings=lambda c, _: {"episodes": c.budget.episodes, **_held_out(c)},
    ),
    Stage(
        "curves",
        checkpoint_curves,
        output=lambda p: p.curves,
        marker=lambda p: p.curves,
        settings=lambda c, _: {"curve_episodes": c.budget.curve_episodes, **_held_out(c)},
    ),
    Stage("report", report, output=lambda p: p.report, marker=lambda p: p.report, settings=lambda c, _: {}),
)
"""The stages in the order they run; each runs after, and depends on, all those before it."""
