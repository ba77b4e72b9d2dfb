"""What runs inside one Tune trial: the trial function around the shared training session, its resources and score.

The trial is a function trainable (RLlib's ``examples/ray_tune/custom_experiment.py`` pattern) around the same
session as ``warmroute train`` (:mod:`rllib_ext.session`), so the BC load and its check, the adaptive controller and
the policy export all run inside it. Every result carries :data:`M.TUNE_SCORE`, the objective (mean e2e, or mean
TTFT with ``--reward ttft``) of the iteration's finished training episodes, carried forward when none finished, so
Tune's strict metric check, ASHA and Optuna always see a finite number. The last result adds the held-out
evaluation (:data:`M.EVAL_SCORE`), which picks the best trial.

Checkpoints are RLlib checkpoints plus the adaptive controller's state and the carried score (``trial_state.json``);
a restored trial (retry after a failure, PBT exploit) is rebuilt from *its* config and then restored, so perturbed
settings take effect (see :func:`rllib_ext.session.start_session`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ray import tune
from ray.rllib.algorithms.ppo import PPO
from ray.rllib.core.rl_module.rl_module import RLModule

from envs.evaluation.evaluate import evaluate_policy, evaluation_seeds
from rllib_ext import metrics as M
from rllib_ext.policy_io import CheckpointPolicy
from rllib_ext.session import TrainingSession, export_policy, reference, run_iterations, save_checkpoint, start_session
from rllib_ext.train_config import TrainConfig, build_ppo_config
from tuning.results import POLICY_DIR
from tuning.spaces import apply_params

TRIAL_STATE_FILE = "trial_state.json"


def objective(cfg: TrainConfig) -> str:
    """The routing metric the sweep minimises: the one the env's reward sums."""
    return M.MEAN_TTFT if cfg.env.reward == "ttft" else M.MEAN_E2E


def trial_resources(cfg: TrainConfig) -> tune.PlacementGroupFactory:
    model_config, reference_policy, _ = reference(cfg)
    notices = logging.getLogger("ray.rllib.algorithms.algorithm_config")
    level = notices.level
    notices.setLevel(logging.ERROR)  # its "new API stack" notice would turn one-line input errors into two lines
    try:
        return PPO.default_resource_request(build_ppo_config(cfg, model_config, reference_policy))
    finally:
        notices.setLevel(level)


def _evaluate(session: TrainingSession, module: RLModule, eval_episodes: int) -> dict[str, float]:
    policy = CheckpointPolicy.from_module(module, "trial")
    result = evaluate_policy(policy, session.cfg.env, evaluation_seeds(session.cfg.env.workload.seed, eval_episodes))
    metrics = {
        M.EVAL_PREFIX + k: float(result[k]) for k in ("mean_e2e_s", "p99_e2e_s", "mean_ttft_s", "p99_ttft_s", "balance_score")
    }
    metrics[M.EVAL_SCORE] = metrics[M.EVAL_PREFIX + objective(session.cfg).split("/", 1)[1]]
    return metrics


def train_trial(
    config: dict[str, Any],
    *,
    base: dict[str, Any],
    eval_episodes: int,
    checkpoint_every: int,
    on_iteration: Callable[[TrainingSession, dict[str, Any]], None] | None = None,
) -> None:
    """One Tune trial: ``base`` with the trial's ``config`` applied, trained and reported every iteration."""
    cfg = apply_params(TrainConfig.from_dict(base), config)
    key = objective(cfg)
    with ExitStack() as stack:
        restored = tune.get_checkpoint()
        directory = Path(stack.enter_context(restored.as_directory())) if restored else None
        score = json.loads((directory / TRIAL_STATE_FILE).read_text())["score"] if directory else None
        session = start_session(cfg, directory, log=lambda line: print(line, flush=True))
    state = {"score": score, "restored_from": session.iteration if directory else 0}
    in_effect = {M.IN_EFFECT_PREFIX + k: v for k, v in session.in_effect.items()}

    def report(session: TrainingSession, row: dict[str, Any]) -> None:
        state["score"] = row.get(key, state["score"])
        if state["score"] is None:  # SweepConfig.validate makes every iteration finish an episode
            raise RuntimeError(f"iteration {session.iteration} finished no episode: no {key} to report")
        metrics = {**row, M.TUNE_SCORE: state["score"], "restored_from_iteration": state["restored_from"], **in_effect}
        if on_iteration is not None:
            on_iteration(session, metrics)
        last = session.iteration == cfg.iterations
        if not last and session.iteration % checkpoint_every:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(session, Path(tmp))
            (Path(tmp) / TRIAL_STATE_FILE).write_text(json.dumps(state))
            if last:  # the final result (the one ASHA stops at max_t) must already hold the held-out evaluation
                params = {k: v.item() if hasattr(v, "item") else v for k, v in config.items()}  # numpy scalars -> JSON
                module = export_policy(session, Path(tmp) / POLICY_DIR, trial_params=params)
                metrics.update(_evaluate(session, module, eval_episodes))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    try:
        run_iterations(session, report)
    finally:
        session.algo.stop()
