"""The env must reproduce vidur exactly when it routes the way a vidur global scheduler does."""

from __future__ import annotations

import numpy as np
import pytest

from envs.evaluation.evaluate import HeuristicPolicy
from envs.sim.simulation import new_simulator
from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv


def _vidur_latencies(workload, seed: int, scheduler: str) -> dict[int, float]:
    sim = new_simulator(workload, seed, global_scheduler=scheduler)
    requests = [event._request for _, event in sim._event_queue]
    sim.run()
    return {r.id: r.completed_at - r.arrived_at for r in requests}


def _env_latencies(workload, seed: int, policy_name: str) -> dict[int, float]:
    env = VidurRoutingEnv(VidurEnvConfig(workload=workload))
    policy = HeuristicPolicy(policy_name, env.layout)
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
        obs, _, done, _, _ = env.step(policy.act(obs))
    return {r.id: r.completed_at - r.arrived_at for r in env.routed_requests}


@pytest.mark.parametrize("workload_name", ["default", "heterogeneous", "bursty"])
@pytest.mark.parametrize("scheduler", ["round_robin", "lor"])
def test_env_reproduces_vidur_latencies(workload_name: str, scheduler: str) -> None:
    workload = preset(workload_name).replace(num_requests=120)
    expected = _vidur_latencies(workload, seed=11, scheduler=scheduler)
    actual = _env_latencies(workload, seed=11, policy_name=scheduler)
    assert actual.keys() == expected.keys()
    ids = sorted(expected)
    np.testing.assert_allclose([actual[i] for i in ids], [expected[i] for i in ids], rtol=0, atol=1e-9)


def test_simultaneous_arrivals_match_vidur_lor() -> None:
    """With bursty gamma arrivals several requests can share a GlobalScheduleEvent; vidur's LOR counts earlier
    assignments of the same event, and so must the env's observation."""
    workload = preset("default").replace(num_requests=80, arrival="gamma:8", qps=60.0)
    expected = _vidur_latencies(workload, seed=3, scheduler="lor")
    actual = _env_latencies(workload, seed=3, policy_name="lor")
    ids = sorted(expected)
    np.testing.assert_allclose([actual[i] for i in ids], [expected[i] for i in ids], rtol=0, atol=1e-9)
