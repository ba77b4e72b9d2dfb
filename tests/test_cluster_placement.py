"""``--placement`` reaches the placement group RLlib asks Tune to reserve per trial, and is validated and saved."""

from __future__ import annotations

import pytest
from ray.rllib.algorithms.ppo import PPO

from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig
from rllib_ext.train_config import TrainConfig, build_ppo_config, default_model_config
from warmroute.cli.main import main


def _config(placement: str) -> TrainConfig:
    return TrainConfig(
        env=VidurEnvConfig(workload=preset("default").replace(num_requests=64)), num_env_runners=2, placement=placement
    )


@pytest.mark.parametrize(("placement", "strategy"), [("pack", "PACK"), ("spread", "SPREAD")])
def test_placement_sets_the_strategy_of_the_trial_placement_group(ray_session, placement: str, strategy: str) -> None:
    cfg = _config(placement)
    factory = PPO.default_resource_request(build_ppo_config(cfg, default_model_config(cfg), None))
    assert factory.strategy == strategy
    assert len(factory.bundles) == 1 + cfg.num_env_runners  # the trial's main process, then one bundle per runner


def test_placement_round_trips_through_the_run_config() -> None:
    cfg = _config("spread")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    older = cfg.to_dict()
    del older["placement"]  # runs saved before the field existed resume as "pack"
    assert TrainConfig.from_dict(older).placement == "pack"


def test_an_unknown_placement_is_one_line_naming_the_flag(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--placement", "diagonal", "--output", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warmroute train: error:") and "--placement" in err[0] and "spread" in err[0]
    assert not (tmp_path / "run").exists()


def test_plain_train_refuses_placement_it_would_ignore(tmp_path, cli_in_process) -> None:
    result = cli_in_process("train", "--placement", "spread", "--output", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--placement only applies to `warmroute sweep`" in result.stderr
    assert not (tmp_path / "run").exists()
