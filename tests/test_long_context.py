"""The KV-aware and size-aware routers, and the long_context preset they are made for."""

from __future__ import annotations

import numpy as np
import pytest

from envs.evaluation.evaluate import HeuristicPolicy, evaluate_policy, evaluation_seeds
from envs.observation import REPLICA_FEATURE_INDEX, ObservationLayout
from envs.routers.heuristics import make_router, size_aware_router
from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig

LAYOUT = ObservationLayout(num_replicas=4)


def _obs(prompt_tokens: float, **columns: list[float]) -> np.ndarray:
    replica = np.zeros((4, LAYOUT.num_replica_features))
    replica[:, REPLICA_FEATURE_INDEX["relative_speed"]] = 1.0
    for name, values in columns.items():
        replica[:, REPLICA_FEATURE_INDEX[name]] = values
    return LAYOUT.build(replica, np.array([prompt_tokens]))


def _act(name: str, obs: np.ndarray) -> int:
    return int(make_router(name, LAYOUT)(obs[None], np.random.default_rng(0))[0])


def test_kv_aware_picks_the_emptiest_cache_then_the_fewest_outstanding() -> None:
    assert _act("kv_aware", _obs(100, kv_cache_usage=[0.9, 0.4, 0.2, 0.6])) == 2
    assert _act("kv_aware", _obs(100, kv_cache_usage=[0.5, 0.2, 0.2, 0.6], outstanding_requests=[1, 4, 3, 0])) == 2


def test_size_aware_keeps_long_prompts_on_the_dedicated_replicas() -> None:
    route = size_aware_router(threshold_tokens=8192, dedicated=2)
    replicas, request = LAYOUT.split(
        np.stack(
            [
                _obs(20_000, outstanding_requests=[0, 0, 5, 3]),  # long: replicas 2-3, the less loaded one
                _obs(500, outstanding_requests=[4, 2, 0, 0]),  # short: replicas 0-1 only, even though 2-3 are idle
            ]
        ).astype(np.float64)
    )
    np.testing.assert_array_equal(route(replicas, request, None), [3, 1])


def test_size_aware_always_leaves_one_replica_for_short_prompts() -> None:
    route = size_aware_router(threshold_tokens=0, dedicated=9)
    replicas, request = LAYOUT.split(_obs(100, outstanding_requests=[0, 0, 0, 0])[None].astype(np.float64))
    assert route(replicas, request, None)[0] == 1  # replicas 1-3 are dedicated, the prompt counts as long
    with pytest.raises(ValueError, match="dedicated"):
        size_aware_router(threshold_tokens=100, dedicated=0)


@pytest.mark.slow
def test_long_context_preempts_under_the_best_load_only_heuristic() -> None:
    """Preemptions are rare but present: 1.3 per 512-request episode over the first three held-out seeds."""
    env = VidurEnvConfig(workload=preset("long_context"))
    result = evaluate_policy(HeuristicPolicy("least_outstanding", env.layout), env, evaluation_seeds(0, 3))
    assert result["preemptions_per_episode"] > 0
    assert max(result["kv_usage_peak"]) > 0.99
    assert 0 < result["slo_attainment"] < 1
