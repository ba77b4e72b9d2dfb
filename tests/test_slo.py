"""SLO attainment, goodput and the ``slo`` reward, whose episode return counts the requests that met their SLOs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from envs.evaluation.evaluate import HeuristicPolicy
from envs.sim.slo import SloReward
from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv


def _episode(env_config: VidurEnvConfig, policy: str, seed: int) -> tuple[float, dict]:
    env = VidurRoutingEnv(env_config)
    router = HeuristicPolicy(policy, env.layout)
    router.reset(seed)
    obs, _ = env.reset(seed=seed)
    done, total = False, 0.0
    while not done:
        obs, reward, done, _, info = env.step(router.act(obs))
        total += reward
    return total, info


@pytest.mark.parametrize(
    ("workload", "policy"),
    [
        (preset("default").replace(num_requests=80, slo_ttft_s=0.05, slo_tbt_s=0.012), "round_robin"),
        (
            preset("heterogeneous").replace(
                model="meta-llama/Llama-2-7b-hf", qps=26.0, num_requests=300, slo_ttft_s=1.0, slo_tbt_s=0.03
            ),
            "speed_aware",
        ),  # preempts
    ],
)
def test_slo_episode_return_is_the_number_of_requests_that_met_their_slos(workload, policy: str) -> None:
    total, info = _episode(VidurEnvConfig(workload=workload, reward="slo"), policy, seed=5)
    assert 0 < info["slo_met"] < workload.num_requests  # the SLOs bind, so the identity is not trivial
    assert total == pytest.approx(info["slo_met"], abs=1e-9)
    assert info["slo_attainment"] == pytest.approx(info["slo_met"] / workload.num_requests)


def test_a_request_that_meets_ttft_but_misses_tbt_nets_zero() -> None:
    class Done:
        arrived_at, prefill_completed_at, completed_at, num_decode_tokens = 0.0, 0.1, 5.1, 11  # TBT 0.5 s

    reward = SloReward(slo_ttft_s=0.2, slo_tbt_s=0.1)
    assert reward.on_first_token(Done()) + reward.on_completion(Done()) == 0.0
    assert SloReward(slo_ttft_s=0.2, slo_tbt_s=1.0).on_completion(Done()) == 0.5


def test_slo_reward_without_an_slo_is_refused() -> None:
    with pytest.raises(ValueError, match="slo_ttft_s"):
        VidurEnvConfig(workload=preset("default"), reward="slo")


def test_evaluate_json_reports_attainment_goodput_preemptions_and_kv_usage(tmp_path: Path, cli_in_process) -> None:
    out = tmp_path / "eval.json"
    result = cli_in_process(
        "evaluate",
        "--policy",
        "least_outstanding",
        "--num-requests",
        "40",
        "--episodes",
        "1",
        "--quiet",
        "--slo-ttft",
        "0.3",
        "--slo-tbt",
        "0.02",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    r = json.loads(out.read_text())["policies"]["least_outstanding"]
    assert 0 <= r["slo_attainment"] <= 1
    assert r["goodput_rps"] == pytest.approx(r["slo_attainment"] * r["throughput_rps"])  # one episode: same span
    assert r["preemptions_per_episode"] >= 0
    assert len(r["kv_usage_peak"]) == len(r["kv_usage_mean"]) == 4
    assert np.all(np.array(r["kv_usage_mean"]) <= np.array(r["kv_usage_peak"]))
    assert max(r["kv_usage_peak"]) > 0


@pytest.mark.slow
def test_ppo_trains_on_the_slo_reward(tmp_path: Path, ray_session) -> None:
    from rllib_ext import metrics as M
    from rllib_ext.train import train
    from rllib_ext.train_config import KLRefConfig, PPOSettings, TrainConfig
    from warmroute.artifacts.run_dir import RunDir

    workload = preset("default").replace(num_requests=64, slo_ttft_s=0.05, slo_tbt_s=0.012)
    config = TrainConfig(
        env=VidurEnvConfig(workload=workload, reward="slo"),
        ppo=PPOSettings(train_batch_size=128, minibatch_size=64, num_epochs=1),
        kl=KLRefConfig(warmup_steps=0, critic_warmup_steps=0),
        iterations=1,
        num_env_runners=0,
        checkpoint_every=1,
        seed=1,
    )
    train(config, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in RunDir(tmp_path / "run").progress.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["iteration"] == 1
    # RLlib's mean return over the finished episodes is their mean count of requests that met both SLOs
    assert rows[0][M.EPISODE_RETURN] == pytest.approx(rows[0][M.SLO_ATTAINMENT] * workload.num_requests)
