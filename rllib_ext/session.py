"""One training session, in the steps that ``warmroute train`` (rllib_ext.train) and Tune trials (tuning.sweep) share.

* :func:`start_session` builds the algorithm and either restores a checkpoint (resume, a retried or PBT-exploited
  Tune trial: built from the *given* config, then restored, so new hyperparameters take effect) or loads the
  behaviour-cloned actor (:func:`load_warm_start`: the clone's safetensors weights, loaded and verified in the
  driver, go to every learner through ``LearnerGroup.set_state`` and on to the env runners; training is refused
  unless the learner *and* every env runner reproduce the clone's saved action probabilities).
* :func:`run_iterations` trains up to ``cfg.iterations``, runs the adaptive warm-up controller and calls a
  per-iteration hook with one flat row of metrics (the CLI writes files, a Tune trial reports).
* :func:`save_checkpoint` (an RLlib checkpoint plus the adaptive controller's state) and :func:`export_policy`
  (the same format as a BC policy, so ``warmroute evaluate`` takes either).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
from ray.rllib.core.learner.learner import ENTROPY_KEY
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, EPISODE_RETURN_MEAN, LEARNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

from envs.errors import WarmRouteError
from envs.evaluation.evaluate import HeuristicPolicy, evaluate_policy, evaluation_seeds
from envs.observation import ObservationLayout
from envs.routers.heuristics import is_router
from envs.vidur_env import VidurRoutingEnv
from rllib_ext import metrics as M
from rllib_ext.adaptive import AdaptiveState, AdaptiveWarmupController
from rllib_ext.policy_io import action_probabilities, load_policy, probe_batch, resized_model_config, save_policy
from rllib_ext.ray_runtime import ensure_ray
from rllib_ext.train_config import TrainConfig, build_ppo_config, default_model_config
from warmroute.artifacts.metadata import ArtifactError, read_metadata
from warmroute.artifacts.run_dir import PolicyDir, RunDir

PROBE_ATOL = 1e-5

IterationHook = Callable[["TrainingSession", dict[str, Any]], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainingSession:
    """A built algorithm and what the loop carries between iterations."""

    cfg: TrainConfig
    algo: Algorithm
    model_config: dict[str, Any]
    policy_dir: Path | None
    """The BC policy this run was warm-started from (None: cold start)."""
    iteration: int
    """Last finished training iteration (0: nothing trained yet)."""
    env_steps: int
    """Lifetime env steps sampled."""
    adaptive: AdaptiveState
    controller: AdaptiveWarmupController | None
    in_effect: dict[str, float]
    """Hyperparameters read back from the learner at start (see :func:`hyperparameters_in_effect`)."""


def _probs_of_learner(learner: Any, obs: np.ndarray) -> np.ndarray:
    return action_probabilities(_learner_module(learner), obs)


def _learner_module(learner: Any) -> RLModule:
    return learner.module[DEFAULT_MODULE_ID].unwrapped()


def _probs_of_runner(runner: Any, obs: np.ndarray) -> np.ndarray:
    return action_probabilities(runner.module, obs)


def _on_learners(algo: Algorithm, fn: Callable[[Any], Any]) -> list[Any]:
    return [r.get() if hasattr(r, "get") else r for r in algo.learner_group.foreach_learner(fn)]


def verify_loaded_actor(algo: Algorithm, policy_dir: Path, layout: ObservationLayout) -> float:
    """Max abs probability gap between the BC probe (re-laid out for ``layout``'s replica count) and every learner
    and env-runner copy; raise if it is off."""
    obs, probs = probe_batch(policy_dir, layout.num_replicas, layout.num_replica_features, "{flag:pretrained_actor_path}")
    copies = _on_learners(algo, partial(_probs_of_learner, obs=obs))
    copies += algo.env_runner_group.foreach_env_runner(partial(_probs_of_runner, obs=obs))
    gap = max(float(np.abs(np.asarray(p) - probs).max()) for p in copies)
    if gap > PROBE_ATOL:
        raise ArtifactError(
            f"{{flag:pretrained_actor_path}} {policy_dir}: the loaded actor does not reproduce the BC policy "
            f"(max prob gap {gap:.2e} over {len(copies)} copies); refusing to train"
        )
    return gap


def sync_env_runners(algo: Algorithm) -> None:
    """Push the learner's weights to every env runner and wait for it.

    ``restore_from_path`` sends them fire-and-forget (timeout 0): measured here, some runners kept their old (random)
    weights, so after a resume the first iteration sampled a random router and PPO updated on those samples. A
    learner's ``set_state`` reaches no env runner at all.
    """
    algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group, inference_only=True, timeout_seconds=120)


def env_runner_gap(algo: Algorithm, layout: ObservationLayout) -> float:
    """Max abs gap between the learner's action probabilities and every env runner's, on a fixed batch of states."""
    obs = np.random.default_rng(0).uniform(0.0, 1.0, size=(32, layout.dim)).astype(np.float32)
    (learner,) = _on_learners(algo, partial(_probs_of_learner, obs=obs))[:1]
    copies = algo.env_runner_group.foreach_env_runner(partial(_probs_of_runner, obs=obs))
    return max(float(np.abs(np.asarray(p) - learner).max()) for p in copies)


def reference(cfg: TrainConfig) -> tuple[dict[str, Any], str | None, Path | None]:
    """Model config, reference policy path and policy dir: the BC policy's when warm-starting.

    The clone is loaded and probe-checked here, in the driver and before Ray starts, so a damaged or foreign policy
    directory is refused in one line. A scorer clone made on another replica count is accepted: the model config
    takes this run's count (the weights do not depend on it) and the KL learner resizes the reference it loads.
    """
    if not cfg.kl.enable_warm_start:
        return default_model_config(cfg), None, None
    policy_dir = Path(cfg.kl.pretrained_actor_path).absolute()
    module, _ = load_policy(policy_dir, cfg.env.layout, "{flag:pretrained_actor_path}")
    model_config = resized_model_config(module.model_config, cfg.env.layout.num_replicas)
    return model_config, str(policy_dir), policy_dir


def _teacher_latency(cfg: TrainConfig, policy_dir: Path | None) -> float:
    """Mean latency of the best of the clone's teachers (or of least_outstanding) on two held-out seeds."""
    teachers = ["least_outstanding"]
    if policy_dir is not None:
        teachers = [
            t
            for t in read_metadata(policy_dir, PolicyDir.KIND, "{flag:pretrained_actor_path}").get("teachers", [])
            if is_router(t)
        ] or teachers
    seeds = evaluation_seeds(cfg.env.workload.seed, 2)
    return min(evaluate_policy(HeuristicPolicy(t, cfg.env.layout), cfg.env, seeds)["mean_e2e_s"] for t in teachers)


def _require_cpus(cfg: TrainConfig) -> None:
    """Env runners ask a fixed CPU each: refuse a run a local Ray can never place (it would wait forever). A cluster
    joined through ``RAY_ADDRESS`` is not checked: its autoscaler may add the CPUs."""
    if os.environ.get("RAY_ADDRESS"):
        return
    total = float(ray.cluster_resources().get("CPU", 0.0))
    need = cfg.num_env_runners * cfg.cpus_per_env_runner
    if need > total:
        raise WarmRouteError(
            f"{{flag:num_env_runners}} {cfg.num_env_runners} x {{flag:cpus_per_env_runner}} {cfg.cpus_per_env_runner:g} "
            f"needs {need:g} CPUs, the Ray cluster has {total:g}; lower either"
        )


def _set_adaptive_state(learner: Any, state: dict[str, int]) -> None:
    learner.set_adaptive_state(**state)


def _apply_configured_lr(learner: Any) -> None:
    """Set every optimizer's lr to the learner's configured value (ray-project/ray#62173).

    Restoring a learner loads the optimizer's ``param_groups`` from the checkpoint, lr included, so the first update
    after a restore runs with the *saved* lr: a PBT-perturbed lr would be silently ignored for an iteration.
    """
    lr = learner.config.get_config_for_module(DEFAULT_MODULE_ID).lr
    for _, optimizer in learner.get_optimizers_for_module(DEFAULT_MODULE_ID):
        for group in optimizer.param_groups:
            group["lr"] = lr


def _read_hyperparameters(learner: Any) -> dict[str, float]:
    (_, optimizer), *_ = learner.get_optimizers_for_module(DEFAULT_MODULE_ID)
    decay_steps = learner.config.learner_config_dict["kl_ref_decay_steps"]
    return {
        "lr": float(optimizer.param_groups[0]["lr"]),
        "kl_ref_coef_initial": float(learner.kl_schedule.value(0)),
        "kl_ref_coef_final": float(learner.kl_schedule.value(decay_steps)),
    }


def hyperparameters_in_effect(algo: Algorithm) -> dict[str, float]:
    """The lr of the learner's optimizer and the KL schedule's end points, read back from the (first) learner."""
    return _on_learners(algo, _read_hyperparameters)[0]


def load_warm_start(algo: Algorithm, policy_dir: Path, layout: ObservationLayout) -> float:
    """Load the BC actor into the learner and every env runner; return the verified max probability gap.

    The weights come from the policy's safetensors file through :func:`load_policy` (strict, probe-checked; never
    an RLlib pickle) and go to every learner with RLlib's ``LearnerGroup.set_state`` on the module component, then
    to the env runners. A scorer clone's tensors fit a module built for another replica count (same names and
    shapes); the probe check then proves it acts like the clone on ``layout``'s count.
    """
    module, _ = load_policy(policy_dir, layout, "{flag:pretrained_actor_path}")
    weights = {name: tensor.numpy() for name, tensor in module.state_dict().items()}
    algo.learner_group.set_state({COMPONENT_LEARNER: {COMPONENT_RL_MODULE: {DEFAULT_MODULE_ID: weights}}})
    sync_env_runners(algo)
    return verify_loaded_actor(algo, policy_dir, layout)


def save_checkpoint(session: TrainingSession, directory: Path) -> Path:
    session.algo.save_to_path(str(directory.absolute()))
    (directory / RunDir.ADAPTIVE_FILE).write_text(json.dumps(session.adaptive.to_dict()))  # written last: marks completion
    return directory


def lifetime_steps(algo: Algorithm) -> int:
    return int(algo.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0))


def start_session(cfg: TrainConfig, checkpoint: Path | None = None, log: Callable[[str], None] = print) -> TrainingSession:
    """Build ``cfg``'s algorithm; restore ``checkpoint`` if given (with ``cfg``'s hyperparameters), else warm-start."""
    model_config, reference_policy, policy_dir = reference(cfg)
    ensure_ray()
    _require_cpus(cfg)
    seed_everything(cfg.seed)
    # Built from cfg and then restored, not Algorithm.from_checkpoint: the latter would bring back the saved config,
    # so a Tune trial restarted with new (PBT-perturbed) hyperparameters would silently keep the old ones.
    algo = build_ppo_config(cfg, model_config, reference_policy).build_algo()
    adaptive = AdaptiveState()
    try:
        if checkpoint is not None:
            algo.restore_from_path(str(checkpoint.absolute()))
            adaptive = AdaptiveState(**json.loads((checkpoint / RunDir.ADAPTIVE_FILE).read_text()))
            algo.learner_group.foreach_learner(_apply_configured_lr)
            algo.learner_group.foreach_learner(partial(_set_adaptive_state, state=adaptive.to_dict()))
            sync_env_runners(algo)
            gap = env_runner_gap(algo, cfg.env.layout)
            if gap > PROBE_ATOL:
                raise ArtifactError(
                    f"{{flag:resume}} {checkpoint}: the env runners do not hold the restored weights (gap {gap:.1e})"
                )
            log(f"restored {checkpoint} at iteration {algo.iteration}, {lifetime_steps(algo)} env steps")
        elif policy_dir is not None:
            gap = load_warm_start(algo, policy_dir, cfg.env.layout)
            log(
                f"warm start: loaded {policy_dir} into the learner and {algo.env_runner_group.num_remote_env_runners()} "
                f"env runners (max prob gap to BC probe {gap:.1e})"
            )
        controller = None
        if cfg.kl.adaptive_warmup:
            controller = AdaptiveWarmupController(
                cfg.kl.warmup_steps,
                cfg.kl.adaptive_balance_threshold,
                cfg.kl.adaptive_kl_speedup,
                _teacher_latency(cfg, policy_dir),
                adaptive,
            )
            log(repr(controller))
        in_effect = hyperparameters_in_effect(algo)
    except BaseException:
        algo.stop()
        raise
    return TrainingSession(
        cfg, algo, model_config, policy_dir, algo.iteration, lifetime_steps(algo), adaptive, controller, in_effect
    )


def _row(result: dict[str, Any], iteration: int, steps_this_iteration: int, wall_s: float, warmup_steps: int) -> dict[str, Any]:
    """One flat row of progress.jsonl / TensorBoard / Tune from an RLlib result dict."""
    runners = result.get(ENV_RUNNER_RESULTS, {})
    learner = result.get(LEARNER_RESULTS, {}).get(DEFAULT_MODULE_ID, {})
    steps = int(result.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, runners.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)))
    row: dict[str, Any] = {
        "iteration": iteration,
        M.ENV_STEPS: steps,
        M.ENV_STEPS_PER_S: steps_this_iteration / max(wall_s, 1e-9),
    }
    for key, value in runners.items():  # absent or NaN when no episode finished during the iteration
        if isinstance(key, str) and key.startswith("env/") and np.isscalar(value) and np.isfinite(value):
            row[key] = float(value)
    if EPISODE_RETURN_MEAN in runners and np.isfinite(runners[EPISODE_RETURN_MEAN]):
        row[M.EPISODE_RETURN] = float(runners[EPISODE_RETURN_MEAN])
        if steps <= warmup_steps:
            row[M.REWARD_WARMUP] = row[M.EPISODE_RETURN]
    for key, value in learner.items():
        if np.isscalar(value) and np.isfinite(value):
            row[key if "/" in key else f"learner/{key}"] = float(value)
    if f"learner/{ENTROPY_KEY}" in row:
        row[M.ENTROPY] = row[f"learner/{ENTROPY_KEY}"]
    return row


def run_iterations(session: TrainingSession, on_iteration: IterationHook) -> dict[str, Any]:
    """Train until ``cfg.iterations``; after each iteration update the adaptive state and call ``on_iteration``."""
    cfg, algo = session.cfg, session.algo
    row: dict[str, Any] = {}
    while session.iteration < cfg.iterations:
        t0 = time.perf_counter()
        result = algo.train()
        steps = int(result.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, session.env_steps))
        session.iteration += 1
        row = _row(
            result,
            session.iteration,
            steps - session.env_steps,
            time.perf_counter() - t0,
            cfg.kl.warmup_steps + session.adaptive.extra_warmup_steps,
        )
        if session.controller is not None:
            session.adaptive = session.controller.update(
                steps, steps - session.env_steps, row.get(M.BALANCE), row.get(M.MEAN_E2E)
            )
            algo.learner_group.foreach_learner(partial(_set_adaptive_state, state=session.adaptive.to_dict()))
            row.update({"adaptive/" + k: v for k, v in session.adaptive.to_dict().items()})
        session.env_steps = steps
        on_iteration(session, row)
    return row


def _probe_observations(cfg: TrainConfig, count: int = 64) -> np.ndarray:
    env = VidurRoutingEnv(cfg.env)
    policy = HeuristicPolicy("least_outstanding", cfg.env.layout)
    obs, _ = env.reset(seed=cfg.seed)
    rows = [obs]
    while len(rows) < count:
        obs, _, done, _, _ = env.step(policy.act(obs))
        rows.append(obs if not done else env.reset()[0])
    return np.stack(rows)


def export_policy(session: TrainingSession, directory: Path, **provenance: Any) -> RLModule:
    """Write the learner's current module as a policy directory (module, probe batch, metadata)."""
    module = _on_learners(session.algo, _learner_module)[0]  # the full module (env runners hold inference-only copies)
    directory.mkdir(parents=True, exist_ok=True)
    save_policy(
        module,
        directory,
        session.cfg.env.layout,
        probe_obs=_probe_observations(session.cfg),
        source="ppo",
        env_config=session.cfg.env.to_dict(),
        warm_start=session.cfg.kl.enable_warm_start,
        env_steps=session.env_steps,
        iteration=session.iteration,
        **provenance,
    )
    return module
