"""A sub-environment that crashes mid-episode is recreated and training goes on (RLlib fault tolerance as
configured by ``build_ppo_config``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import ray.cloudpickle
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv
from envs.workload import preset
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


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # remote env runners cannot import test modules


def test_training_survives_an_env_crash(ray_session, tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    cfg = TrainConfig(env=VidurEnvConfig(workload=preset("default").replace(num_requests=64)),
                      ppo=PPOSettings(train_batch_size=256, minibatch_size=128, num_epochs=1), num_env_runners=1)
    config = build_ppo_config(cfg, default_model_config(cfg), None)
    config.environment(env=CrashOnceEnv, env_config={**cfg.env.to_dict(), "crash_marker": str(marker)})
    algo = config.build_algo()
    try:
        steps = [algo.train()[NUM_ENV_STEPS_SAMPLED_LIFETIME] for _ in range(3)]
    finally:
        algo.stop()
    assert marker.read_text() == "crashed"
    assert steps[-1] >= 3 * 256 and steps == sorted(steps)
