"""Phase 2: (warm-start) PPO training as a function, so the CLI, Tune trials and Ray Jobs all call the same code.

``train(cfg, output)`` builds the algorithm, loads the behaviour-cloned actor into the learner *and* every env
runner (``restore_from_path`` on the learner's module component) and refuses to start unless both reproduce the
clone's saved action probabilities. It then trains, writing per iteration: a console line, a row of
``progress.jsonl`` (read by ``warmroute compare``), TensorBoard scalars (own ``SummaryWriter``: outside Tune,
RLlib writes none) and periodic RLlib checkpoints; at the end it exports the policy (``policy/``) in the same
format as a BC policy, so ``warmroute evaluate`` takes either. ``resume`` continues a run from its latest
checkpoint; schedules follow the restored lifetime env-step count.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME
from tensorboardX import SummaryWriter

from envs.evaluation import HeuristicPolicy, evaluate_policy, evaluation_seeds
from envs.heuristics import is_router
from envs.vidur_env import VidurRoutingEnv
from rllib_ext import metrics as M
from rllib_ext.adaptive import AdaptiveState, AdaptiveWarmupController
from rllib_ext.artifacts import ArtifactError, read_metadata, require_fresh_output, write_metadata
from rllib_ext.compare import PROGRESS_FILE
from rllib_ext.policy_io import MODULE_DIR, POLICY_KIND, PROBE_FILE, action_probabilities, save_policy
from rllib_ext.ray_runtime import ensure_ray
from rllib_ext.train_config import TrainConfig, build_ppo_config, default_model_config

RUN_KIND = "training_run"
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
POLICY_DIR = "policy"
ADAPTIVE_FILE = "adaptive_state.json"
MODULE_COMPONENT = "learner_group/learner/rl_module/default_policy"
PROBE_ATOL = 1e-5


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _probs_of_learner(learner: Any, obs: np.ndarray) -> np.ndarray:
    return action_probabilities(learner.module["default_policy"].unwrapped(), obs)


def _probs_of_runner(runner: Any, obs: np.ndarray) -> np.ndarray:
    return action_probabilities(runner.module, obs)


def verify_loaded_actor(algo: Algorithm, policy_dir: Path) -> float:
    """Max abs probability gap between the BC probe and every learner and env-runner copy; raise if it is off."""
    probe = np.load(policy_dir / PROBE_FILE, allow_pickle=False)
    copies = algo.learner_group.foreach_learner(partial(_probs_of_learner, obs=probe["obs"]))
    copies = [c.get() if hasattr(c, "get") else c for c in copies]
    copies += algo.env_runner_group.foreach_env_runner(partial(_probs_of_runner, obs=probe["obs"]))
    gap = max(float(np.abs(np.asarray(p) - probe["probs"]).max()) for p in copies)
    if gap > PROBE_ATOL:
        raise ArtifactError(f"--pretrained-actor-path {policy_dir}: the loaded actor does not reproduce the BC policy "
                            f"(max prob gap {gap:.2e} over {len(copies)} copies); refusing to train")
    return gap


def _row(result: dict[str, Any], iteration: int, steps_this_iteration: int, wall_s: float, warmup_steps: int) -> dict[str, Any]:
    """One flat row of progress.jsonl / TensorBoard from an RLlib result dict."""
    runners = result.get("env_runners", {})
    learner = result.get("learners", {}).get("default_policy", {})
    steps = int(result.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, runners.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)))
    row: dict[str, Any] = {"iteration": iteration, M.ENV_STEPS: steps, M.ENV_STEPS_PER_S: steps_this_iteration / max(wall_s, 1e-9)}
    for key, value in runners.items():  # absent or NaN when no episode finished during the iteration
        if isinstance(key, str) and key.startswith("env/") and np.isscalar(value) and np.isfinite(value):
            row[key] = float(value)
    if "episode_return_mean" in runners and np.isfinite(runners["episode_return_mean"]):
        row[M.EPISODE_RETURN] = float(runners["episode_return_mean"])
        if steps <= warmup_steps:
            row[M.REWARD_WARMUP] = row[M.EPISODE_RETURN]
    for key, value in learner.items():
        if np.isscalar(value) and np.isfinite(value):
            row[key if "/" in key else f"learner/{key}"] = float(value)
    if "learner/entropy" in row:
        row[M.ENTROPY] = row["learner/entropy"]
    return row


def _console_line(row: dict[str, Any], total: int) -> str:
    def fmt(key: str, spec: str) -> str:
        return format(row[key], spec) if key in row else "-"

    return (f"iter {row['iteration']:>3}/{total} | steps {row[M.ENV_STEPS]:>7} | e2e {fmt(M.MEAN_E2E, '.3f')}s "
            f"p99 {fmt(M.P99_E2E, '.2f')}s | ttft {fmt(M.MEAN_TTFT, '.3f')}s | balance {fmt(M.BALANCE, '.3f')} | "
            f"kl_ref {fmt(M.KL_REF, '.4f')} coef {fmt(M.KL_COEF, '.3f')} | entropy {fmt(M.ENTROPY, '.3f')} "
            f"coef {fmt(M.ENTROPY_COEF, '.3f')} | {fmt(M.ENV_STEPS_PER_S, '.0f')} steps/s")


def _reference(cfg: TrainConfig) -> tuple[dict[str, Any], str | None, Path | None]:
    """Model config, reference-module path and policy dir: the BC checkpoint's when warm-starting."""
    if not cfg.kl.enable_warm_start:
        return default_model_config(cfg), None, None
    policy_dir = Path(cfg.kl.pretrained_actor_path).absolute()
    meta = read_metadata(policy_dir, POLICY_KIND, "--pretrained-actor-path")
    cfg.env.layout.check_compatible(meta["layout"], source=f"--pretrained-actor-path {policy_dir}")
    return meta["model_config"], str(policy_dir / MODULE_DIR), policy_dir


def _teacher_latency(cfg: TrainConfig, policy_dir: Path | None) -> float:
    """Mean latency of the best of the clone's teachers (or of least_outstanding) on two held-out seeds."""
    teachers = ["least_outstanding"]
    if policy_dir is not None:
        teachers = [t for t in read_metadata(policy_dir, POLICY_KIND, "--pretrained-actor-path").get("teachers", []) if is_router(t)] or teachers
    seeds = evaluation_seeds(cfg.env.workload.seed, 2)
    return min(evaluate_policy(HeuristicPolicy(t, cfg.env.layout), cfg.env, seeds)["mean_e2e_s"] for t in teachers)


def _probe_observations(cfg: TrainConfig, count: int = 64) -> np.ndarray:
    env = VidurRoutingEnv(cfg.env)
    policy = HeuristicPolicy("least_outstanding", cfg.env.layout)
    obs, _ = env.reset(seed=cfg.seed)
    rows = [obs]
    while len(rows) < count:
        obs, _, done, _, _ = env.step(policy.act(obs))
        rows.append(obs if not done else env.reset()[0])
    return np.stack(rows)


def _latest_checkpoint(output: Path) -> Path:
    """The newest complete checkpoint (``adaptive_state.json`` is written last, so it marks completion)."""
    checkpoints = sorted((p for p in (output / CHECKPOINTS_DIR).glob("iter_*") if (p / ADAPTIVE_FILE).is_file()),
                         key=lambda p: int(p.name.split("_")[1]))
    if not checkpoints:
        raise ArtifactError(f"--resume {output}: no checkpoints under {CHECKPOINTS_DIR}/; nothing to resume")
    return checkpoints[-1]


def _print_now(line: str) -> None:
    print(line, flush=True)  # visible at once under Ray Jobs and when piped to a file


def _save_checkpoint(algo: Algorithm, out: Path, iteration: int, adaptive_state: AdaptiveState) -> Path:
    checkpoint = out / CHECKPOINTS_DIR / f"iter_{iteration:04d}"
    algo.save_to_path(str(checkpoint.absolute()))
    (checkpoint / ADAPTIVE_FILE).write_text(json.dumps(adaptive_state.to_dict()))  # written last: marks completion
    return checkpoint


def _set_adaptive_state(learner: Any, state: dict[str, int]) -> None:
    learner.set_adaptive_state(**state)


def _lifetime_steps(algo: Algorithm) -> int:
    return int(algo.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0))


def _truncate_progress(output: Path, last_iteration: int) -> None:
    path = output / PROGRESS_FILE
    if path.is_file():
        rows = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["iteration"] <= last_iteration]
        path.write_text("".join(row + "\n" for row in rows))


def train(cfg: TrainConfig, output: str | Path, *, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = _print_now) -> dict[str, Any]:
    """Train (or resume) a run in ``output``; return the final row of metrics and the exported policy path."""
    out = Path(output)
    if resume:
        saved = read_metadata(out, RUN_KIND, "--resume")
        try:
            cfg = TrainConfig.from_dict({**saved["config"], "iterations": max(cfg.iterations, saved["config"]["iterations"])})
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"--resume {out}: metadata.json does not hold a training config of this version ({exc})") from exc
        checkpoint = _latest_checkpoint(out)
    else:
        require_fresh_output(out)
    cfg.validate()
    model_config, reference_path, policy_dir = _reference(cfg)
    ensure_ray()
    seed_everything(cfg.seed)
    if resume:
        algo = Algorithm.from_checkpoint(str(checkpoint.absolute()))
        start = int(checkpoint.name.split("_")[1])
        adaptive_state = AdaptiveState(**json.loads((checkpoint / ADAPTIVE_FILE).read_text()))
        algo.learner_group.foreach_learner(partial(_set_adaptive_state, state=adaptive_state.to_dict()))
        _truncate_progress(out, start)  # iterations after the checkpoint are re-run
        log(f"resumed {out} from {checkpoint.name} at {_lifetime_steps(algo)} env steps")
    else:
        algo = build_ppo_config(cfg, model_config, reference_path).build_algo()
        start, adaptive_state = 0, AdaptiveState()
        if policy_dir is not None:
            algo.restore_from_path(str(policy_dir / MODULE_DIR), component=MODULE_COMPONENT)
            # restore_from_path pushes the weights to remote env runners fire-and-forget (timeout 0): measured here,
            # some runners kept their random weights. Sync once more and wait for it before verifying every copy.
            algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group, inference_only=True,
                                               timeout_seconds=120)
            try:
                gap = verify_loaded_actor(algo, policy_dir)
            except ArtifactError:
                algo.stop()
                raise
            log(f"warm start: loaded {policy_dir} into the learner and {algo.env_runner_group.num_remote_env_runners()} "
                f"env runners (max prob gap to BC probe {gap:.1e})")
        out.mkdir(parents=True, exist_ok=True)
        write_metadata(out, RUN_KIND, config=cfg.to_dict(), model_config=model_config, layout=cfg.env.layout.to_dict())
        _save_checkpoint(algo, out, 0, adaptive_state)  # the policy before any update (warm: the verified clone)
    controller = None
    if cfg.kl.adaptive_warmup:
        controller = AdaptiveWarmupController(cfg.kl.warmup_steps, cfg.kl.adaptive_balance_threshold,
                                              cfg.kl.adaptive_kl_speedup, _teacher_latency(cfg, policy_dir), adaptive_state)
        log(repr(controller))
    writer = SummaryWriter(str(out / TENSORBOARD_DIR))
    row: dict[str, Any] = {}
    previous_steps = _lifetime_steps(algo) if resume else 0
    try:
        for iteration in range(start + 1, cfg.iterations + 1):
            t0 = time.perf_counter()
            result = algo.train()
            steps = int(result.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, previous_steps))
            row = _row(result, iteration, steps - previous_steps, time.perf_counter() - t0,
                       cfg.kl.warmup_steps + adaptive_state.extra_warmup_steps)
            if controller is not None:
                adaptive_state = controller.update(steps, steps - previous_steps, row.get(M.BALANCE), row.get(M.MEAN_E2E))
                algo.learner_group.foreach_learner(partial(_set_adaptive_state, state=adaptive_state.to_dict()))
                row.update({"adaptive/" + k: v for k, v in adaptive_state.to_dict().items()})
            previous_steps = steps
            for key, value in row.items():
                if key != "iteration":
                    writer.add_scalar(key, value, global_step=steps)
            writer.flush()
            with open(out / PROGRESS_FILE, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            if progress:
                log(_console_line(row, cfg.iterations))
            if iteration % cfg.checkpoint_every == 0 or iteration == cfg.iterations:
                _save_checkpoint(algo, out, iteration, adaptive_state)
        final = _latest_checkpoint(out)
        module = RLModule.from_checkpoint(str((final / MODULE_COMPONENT).absolute()))
        export = out / POLICY_DIR
        if export.exists():
            for path in export.rglob("*"):
                if path.is_file():
                    path.unlink()
        export.mkdir(exist_ok=True)
        save_policy(module, export, cfg.env.layout, probe_obs=_probe_observations(cfg), source="ppo",
                    env_config=cfg.env.to_dict(), warm_start=cfg.kl.enable_warm_start, run_dir=str(out.absolute()),
                    checkpoint=final.name, env_steps=int(row.get(M.ENV_STEPS, previous_steps)))
    except BaseException:
        if not resume and not any(p.name != "iter_0000" for p in (out / CHECKPOINTS_DIR).glob("iter_*")):
            writer.close()
            shutil.rmtree(out, ignore_errors=True)  # nothing trained yet: leave no half-made run behind
        raise
    finally:
        writer.close()
        algo.stop()
    return {"final": row, "policy": str(export)}
