"""A sub-environment that raises mid-episode is recreated, an env runner whose process dies is restarted, and
training goes on (RLlib fault tolerance as configured by ``build_ppo_config``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import ray.cloudpickle
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv
from rllib_ext.train_config import PPOSettings, TrainConfig, build_ppo_config, default_model_config

pytestmark = pytest.mark.slow  # real Ray actors and RLlib algorithms


class CrashOnceEnv(VidurRoutingEnv):
    """Raises on its 30th step the first time any copy of it runs (a marker file makes it 'once')."""

    def __init__(self, config: dict) -> None:
        self._marker = Path(config["crash_marker"])
        self._steps = 0
        super().__init__(config)

    def step(self, action: int):
        self._steps += 1
        if self._steps == 30 and not self._marker.exists():
            self._marker.write_text("crashed")
            raise RuntimeError("injected crash (test)")
        return super().step(action)


class KillRunnerOnceEnv(CrashOnceEnv):
    """Ends its whole env-runner process on its 30th step, the first time any copy of it runs."""

    def step(self, action: int):
        if self._steps + 1 == 30 and not self._marker.exists():
            self._marker.write_text("killed")
            os._exit(1)
        return super().step(action)


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # remote env runners cannot import test modules


def _train(env_class: type, marker: Path, iterations: int, until_restarts: int = 0) -> tuple[list[int], int]:
    """Lifetime env steps after each iteration, and how many times an env runner was restarted.

    With ``until_restarts``, trains on (up to ``iterations``) until that many restarts have happened, plus one more
    iteration to show that the restored runner samples again.
    """
    cfg = TrainConfig(
        env=VidurEnvConfig(workload=preset("default").replace(num_requests=64)),
        ppo=PPOSettings(train_batch_size=256, minibatch_size=128, num_epochs=1),
        num_env_runners=1,
    )
    config = build_ppo_config(cfg, default_model_config(cfg), None)
    config.environment(env=env_class, env_config={**cfg.env.to_dict(), "crash_marker": str(marker)})
    algo = config.build_algo()
    steps: list[int] = []
    try:
        for _ in range(iterations):
            steps.append(algo.train()[NUM_ENV_STEPS_SAMPLED_LIFETIME])
            restarts = algo.env_runner_group.num_remote_worker_restarts()
            if until_restarts and restarts >= until_restarts and len(steps) >= 2 and steps[-1] > steps[-2]:
                break
        return steps, algo.env_runner_group.num_remote_worker_restarts()
    finally:
        algo.stop()


def test_training_survives_an_env_crash(ray_session, tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    steps, runner_restarts = _train(CrashOnceEnv, marker, iterations=3)
    assert marker.read_text() == "crashed"
    assert runner_restarts == 0  # the sub-environment was recreated inside its runner
    assert steps[-1] >= 3 * 256 and steps == sorted(steps)


def test_training_survives_an_env_runner_death(ray_session, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    steps, runner_restarts = _train(KillRunnerOnceEnv, marker, iterations=12, until_restarts=1)
    assert marker.read_text() == "killed"
    assert runner_restarts == 1
    assert steps == sorted(steps) and steps[-1] > steps[-2]  # the restored runner samples again
