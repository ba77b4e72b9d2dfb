"""Cache-aware routers follow the published rules they cite, on hand-built observations."""

from __future__ import annotations

import numpy as np
import pytest

from envs.observation import REPLICA_FEATURE_INDEX, REQUEST_FEATURE_INDEX, ObservationLayout
from envs.routers.cache_aware import parse_cache_router, router_name
from envs.routers.heuristics import is_router, make_router

LAYOUT = ObservationLayout(num_replicas=4)
F, Q = REPLICA_FEATURE_INDEX, REQUEST_FEATURE_INDEX


def _obs(
    outstanding=(0, 0, 0, 0), queued=(0, 0, 0, 0), hbm=(0, 0, 0, 0), fill=(0, 0, 0, 0), kv=(0, 0, 0, 0), prompt=4096, key=0.0
) -> np.ndarray:
    replicas = np.zeros((4, LAYOUT.num_replica_features))
    replicas[:, F["outstanding_requests"]] = outstanding
    replicas[:, F["queued_requests"]] = queued
    replicas[:, F["cached_hbm_tokens"]] = hbm
    replicas[:, F["hbm_cache_fill"]] = fill
    replicas[:, F["kv_cache_usage"]] = kv
    replicas[:, F["relative_speed"]] = 1.0
    request = np.zeros(LAYOUT.num_request_features)
    request[Q["prefill_tokens"]], request[Q["affinity_key"]] = prompt, key
    return LAYOUT.build(replicas, request)


def _route(name: str, obs: np.ndarray) -> int:
    return int(make_router(name, LAYOUT)(obs[None], np.random.default_rng(0))[0])


def test_prefix_affinity_follows_the_longest_match_above_the_threshold() -> None:
    assert _route("prefix_affinity", _obs(outstanding=(3, 5, 4, 2), hbm=(0, 1024, 3072, 0))) == 2


def test_prefix_affinity_balances_load_when_imbalance_passes_both_thresholds() -> None:
    obs = _obs(outstanding=(100, 20, 30, 30), hbm=(4000, 0, 0, 0))
    assert _route("prefix_affinity", obs) == 1
    assert _route("prefix_affinity:balance_abs=100", obs) == 0  # 80 apart is within an absolute slack of 100


def test_prefix_affinity_sends_a_miss_to_the_emptiest_cache() -> None:
    assert _route("prefix_affinity", _obs(hbm=(512, 0, 0, 0), fill=(0.5, 0.2, 0.1, 0.3))) == 2


def test_weighted_scorer_trades_prefix_hits_against_queues() -> None:
    assert _route("weighted_scorer", _obs(queued=(2, 2, 2, 2), hbm=(0, 4096, 0, 0))) == 1
    # a full hit behind the longest queue scores 3 x 1 + 2 x 0 against 3 x 0 + 2 x 1 for an empty queue: the hit wins
    crowded = _obs(queued=(9, 0, 0, 0), hbm=(4096, 0, 0, 0))
    assert _route("weighted_scorer", crowded) == 0
    assert _route("weighted_scorer:queue_weight=4", crowded) == 1  # 3 x 1 against 4 x 1: the queue wins


def test_session_hash_is_sticky_and_its_bounded_variant_walks_the_ring() -> None:
    assert _route("session_hash", _obs(key=0.30)) == _route("session_hash", _obs(outstanding=(9, 9, 0, 0), key=0.30)) == 1
    assert _route("session_hash:load_factor=1.25", _obs(outstanding=(9, 9, 0, 0), key=0.30)) == 2


def test_router_names_round_trip_and_bad_settings_are_refused() -> None:
    route, params = parse_cache_router("prefix_affinity:cache_threshold=0.1")
    assert params == {"cache_threshold": 0.1, "balance_abs": 64.0, "balance_rel": 1.5}
    assert router_name("prefix_affinity", params) == "prefix_affinity:cache_threshold=0.1"
    assert is_router("session_hash:load_factor=2") and not is_router("sticky")
    with pytest.raises(ValueError, match="policies"):
        parse_cache_router("weighted_scorer:speed=3")
