"""VidurRoutingEnv: gym API conformance, exact reward accounting, determinism, memory, bad actions."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.evaluation.evaluate import HeuristicPolicy
from envs.observation import REPLICA_FEATURE_INDEX
from envs.vidur_env import ENV_ID, VidurEnvConfig, VidurRoutingEnv


def _run_episode(env: VidurRoutingEnv, policy_name: str, seed: int) -> tuple[float, dict, list[np.ndarray]]:
    policy = HeuristicPolicy(policy_name, env.layout)
    policy.reset(seed)
    obs, _ = env.reset(seed=seed)
    observations, total, done, info = [obs], 0.0, False, {}
    while not done:
        obs, reward, done, _, info = env.step(policy.act(obs))
        observations.append(obs)
        total += reward
    return total, info, observations


def test_check_env_passes(small_workload) -> None:
    env = VidurRoutingEnv(VidurEnvConfig(workload=small_workload.replace(num_requests=20)))
    check_env(env, skip_render_check=True)


def test_registered_with_gymnasium(small_workload) -> None:
    env = gym.make(ENV_ID, config=VidurEnvConfig(workload=small_workload))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4 * 15 + 2,)  # 15 features per replica, prompt tokens and affinity key
    assert env.action_space == gym.spaces.Discrete(4)


@pytest.mark.parametrize("reward", ["e2e", "ttft"])
@pytest.mark.parametrize("policy", ["random", "least_outstanding"])
def test_return_equals_minus_summed_latency(small_workload, reward: str, policy: str) -> None:
    scale = 2.5
    env = VidurRoutingEnv(VidurEnvConfig(workload=small_workload, reward=reward, reward_scale_s=scale))
    total, _, _ = _run_episode(env, policy, seed=5)
    requests = env.routed_requests
    end = [r.completed_at if reward == "e2e" else r.prefill_completed_at for r in requests]
    summed = sum(e - r.arrived_at for e, r in zip(end, requests))
    assert len(requests) == small_workload.num_requests
    assert abs(total * scale + summed) / summed < 1e-6


def test_episode_info_has_latency_statistics(small_workload) -> None:
    env = VidurRoutingEnv(VidurEnvConfig(workload=small_workload))
    _, info, _ = _run_episode(env, "round_robin", seed=1)
    for key in ("mean_e2e_s", "p50_e2e_s", "p99_e2e_s", "mean_ttft_s", "p99_ttft_s", "mean_tbt_s", "throughput_rps"):
        assert np.isfinite(info[key]) and info[key] > 0, key
    assert info["balance_score"] == pytest.approx(1.0, abs=0.02)
    assert info["p99_e2e_s"] >= info["p50_e2e_s"]


def test_same_seed_same_episode_and_new_seed_differs(small_workload) -> None:
    env = VidurRoutingEnv(VidurEnvConfig(workload=small_workload))
    first, _, obs_a = _run_episode(env, "power_of_two", seed=9)
    second, _, obs_b = _run_episode(env, "power_of_two", seed=9)
    third, _, _ = _run_episode(env, "power_of_two", seed=10)
    assert first == second
    np.testing.assert_array_equal(np.stack(obs_a), np.stack(obs_b))
    assert third != first


def test_unseeded_resets_follow_worker_streams(small_workload) -> None:
    """RLlib passes worker/vector indices: parallel env copies must not replay the same request streams."""

    class Context(dict):
        worker_index = 1
        vector_index = 0

    config = Context(VidurEnvConfig(workload=small_workload).to_dict())
    other = Context(config)
    other.worker_index = 2
    seeds_a = [VidurRoutingEnv(config).reset()[1]["episode_seed"] for _ in range(2)]
    seeds_b = [VidurRoutingEnv(other).reset()[1]["episode_seed"] for _ in range(2)]
    assert seeds_a[0] == seeds_a[1]
    assert seeds_a[0] != seeds_b[0]


def test_observation_tracks_routing(small_workload) -> None:
    env = VidurRoutingEnv(VidurEnvConfig(workload=small_workload))
    obs, _ = env.reset(seed=2)
    replicas, request = env.layout.split(obs)
    assert replicas[:, REPLICA_FEATURE_INDEX["outstanding_requests"]].sum() == 0
    assert request[0] > 0
    obs, _, _, _, _ = env.step(3)
    replicas, _ = env.layout.split(obs)
    assert replicas[3, REPLICA_FEATURE_INDEX["last_routed"]] == 1.0
    assert replicas[:, REPLICA_FEATURE_INDEX["relative_speed"]].tolist() == [1.0] * 4


def test_heterogeneous_speeds_observed(small_hetero_workload) -> None:
    env = VidurRoutingEnv(VidurEnvConfig(workload=small_hetero_workload))
    replicas, _ = env.layout.split(env.reset(seed=0)[0])
    speeds = replicas[:, REPLICA_FEATURE_INDEX["relative_speed"]]
    assert speeds[0] == speeds[1] == 1.0
    assert 0 < speeds[2] == speeds[3] < 1.0


@pytest.mark.parametrize("action", [-1, 4, 17])
def test_out_of_range_action_is_a_clear_error(small_workload, action: int) -> None:
    env = VidurRoutingEnv(VidurEnvConfig(workload=small_workload))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"out of range for Discrete\(4\)"):
        env.step(action)


def test_step_after_end_requires_reset(small_workload) -> None:
    env = VidurRoutingEnv(VidurEnvConfig(workload=small_workload.replace(num_requests=5)))
    _run_episode(env, "round_robin", seed=0)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)


# VmHWM (peak resident set of this process image): unlike ru_maxrss it is not inherited from the parent across
# fork + exec, so a pytest process that already loaded Ray and torch does not inflate it.
_RSS_SCRIPT = """
from envs.evaluation.evaluate import HeuristicPolicy, evaluate_policy
from envs.vidur_env import VidurEnvConfig
from envs.sim.workload import preset
env = VidurEnvConfig(workload=preset("default").replace(num_requests=512))
evaluate_policy(HeuristicPolicy("least_outstanding", env.layout), env, list(range(6)))
hwm_kb = next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]
print(int(hwm_kb) / 1024)
"""


@pytest.mark.slow
def test_memory_stays_bounded_over_many_episodes() -> None:
    """Six full 512-request episodes in a fresh process (as an env runner would run them) stay under 500 MB."""
    result = subprocess.run([sys.executable, "-c", _RSS_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    peak_mb = float(result.stdout.strip().splitlines()[-1])
    assert peak_mb < 500, f"peak RSS {peak_mb:.0f} MB"
