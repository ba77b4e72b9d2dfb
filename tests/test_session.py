"""The shared training session: a checkpoint restored under new settings runs with the new lr and KL schedule (the
fix for ray-project/ray#62173 that PBT relies on), and the adaptive controller's state travels in the checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from ray.rllib.core import DEFAULT_MODULE_ID

from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig
from rllib_ext.session import hyperparameters_in_effect, run_iterations, save_checkpoint, start_session
from rllib_ext.train_config import KLRefConfig, PPOSettings, TrainConfig
from warmroute.artifacts.run_dir import MODULE_COMPONENT

pytestmark = pytest.mark.slow  # real RLlib algorithms

BATCH = 128


def _config(**kl: object) -> TrainConfig:
    return TrainConfig(
        env=VidurEnvConfig(workload=preset("default").replace(num_requests=64), reward_scale_s=10.0),
        ppo=PPOSettings(lr=1e-3, train_batch_size=BATCH, minibatch_size=64, num_epochs=1),
        kl=KLRefConfig(**kl),
        iterations=1,
        num_env_runners=0,
        seed=2,
    )


def _optimizer_lr(learner) -> float:
    (_, optimizer), *_ = learner.get_optimizers_for_module(DEFAULT_MODULE_ID)
    return optimizer.param_groups[0]["lr"]


def test_restored_session_uses_the_new_lr_not_the_checkpoints(ray_session, tmp_path: Path) -> None:
    cfg = _config()
    session = start_session(cfg, log=lambda line: None)
    try:
        run_iterations(session, lambda s, row: None)
        save_checkpoint(session, tmp_path / "ckpt")
    finally:
        session.algo.stop()
    new = dataclasses.replace(cfg, ppo=dataclasses.replace(cfg.ppo, lr=2.5e-4), iterations=2)
    restored = start_session(new, tmp_path / "ckpt", log=lambda line: None)
    try:
        assert restored.iteration == 1 and restored.env_steps == BATCH
        assert hyperparameters_in_effect(restored.algo)["lr"] == 2.5e-4
        # What the fix undoes: restoring the learner again brings back the optimizer's saved lr (ray#62173).
        restored.algo.restore_from_path(str(tmp_path / "ckpt" / "learner_group"), component="learner_group")
        assert [r.get() for r in restored.algo.learner_group.foreach_learner(_optimizer_lr)] == [1e-3]
    finally:
        restored.algo.stop()


def test_adaptive_state_travels_in_the_checkpoint(ray_session, tmp_path: Path) -> None:
    cfg = _config(adaptive_warmup=True, adaptive_balance_threshold=1.0, warmup_steps=BATCH)  # balance < 1: extends
    session = start_session(cfg, log=lambda line: None)
    try:
        run_iterations(session, lambda s, row: None)
        saved = session.adaptive.to_dict()
        save_checkpoint(session, tmp_path / "ckpt")
    finally:
        session.algo.stop()
    assert saved["extra_warmup_steps"] == BATCH
    restored = start_session(dataclasses.replace(cfg, iterations=2), tmp_path / "ckpt", log=lambda line: None)
    try:
        assert restored.adaptive.to_dict() == saved and restored.controller.state.to_dict() == saved
        learners = restored.algo.learner_group.foreach_learner(lambda learner: learner.extra_warmup_steps)
        assert [r.get() for r in learners] == [BATCH]
        assert (tmp_path / "ckpt" / MODULE_COMPONENT).is_dir()
    finally:
        restored.algo.stop()
