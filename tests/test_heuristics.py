"""Heuristic routers on hand-made observations: each picks what its docstring promises."""

from __future__ import annotations

import numpy as np
import pytest

from envs.errors import WarmRouteError
from envs.observation import REPLICA_FEATURE_INDEX, ObservationLayout
from envs.routers.heuristics import ROUTERS, make_router

LAYOUT = ObservationLayout(num_replicas=4)


def _obs(**columns: list[float]) -> np.ndarray:
    replica = np.zeros((4, LAYOUT.num_replica_features))
    replica[:, REPLICA_FEATURE_INDEX["relative_speed"]] = 1.0
    for name, values in columns.items():
        replica[:, REPLICA_FEATURE_INDEX[name]] = values
    return LAYOUT.build(replica, np.array([512.0]))


def _act(name: str, obs: np.ndarray, seed: int = 0) -> int:
    return int(make_router(name, LAYOUT)(obs[None], np.random.default_rng(seed))[0])


def test_round_robin_follows_last_routed() -> None:
    assert _act("round_robin", _obs()) == 0
    assert _act("round_robin", _obs(last_routed=[0, 1, 0, 0])) == 2
    assert _act("round_robin", _obs(last_routed=[0, 0, 0, 1])) == 0


def test_lor_counts_only_queued_requests() -> None:
    obs = _obs(outstanding_requests=[9, 1, 5, 5], queued_requests=[0, 1, 2, 3])
    assert _act("lor", obs) == 0
    assert _act("least_outstanding", obs) == 1


def test_ties_go_to_the_lowest_index() -> None:
    assert _act("least_outstanding", _obs(outstanding_requests=[3, 2, 2, 2])) == 1


def test_least_work_weighs_prefill_by_speed_then_outstanding() -> None:
    obs = _obs(pending_prefill_tokens=[4000, 2000, 2000, 0], relative_speed=[1, 1, 0.4, 0.2], outstanding_requests=[1, 1, 1, 4])
    assert _act("least_work", obs) == 3
    drained = _obs(pending_prefill_tokens=[0, 0, 0, 0], outstanding_requests=[4, 2, 3, 2])
    assert _act("least_work", drained) == 1


def test_speed_aware_prefers_fast_replicas_per_request() -> None:
    obs = _obs(outstanding_requests=[3, 3, 1, 1], relative_speed=[1, 1, 0.3, 0.3])
    assert _act("speed_aware", obs) == 0  # (3+1)/1 = 4 < (1+1)/0.3 = 6.7
    assert _act("least_outstanding", obs) == 2


def test_power_of_two_picks_less_loaded_of_two_distinct() -> None:
    obs = _obs(outstanding_requests=[0, 5, 5, 5])
    picks = [_act("power_of_two", obs, seed) for seed in range(200)]
    counts = np.bincount(picks, minlength=4)
    assert counts[0] > 80  # replica 0 wins whenever it is drawn: 1 - (3/4 * 2/3) = 1/2 of the time
    assert set(picks) <= {0, 1, 2, 3}


def test_random_is_uniform_and_batched() -> None:
    batch = np.repeat(_obs()[None], 4000, axis=0)
    picks = make_router("random", LAYOUT)(batch, np.random.default_rng(0))
    assert picks.shape == (4000,)
    assert np.all(np.abs(np.bincount(picks, minlength=4) / 4000 - 0.25) < 0.03)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_every_router_handles_batches(name: str) -> None:
    batch = np.stack([_obs(outstanding_requests=[i % 4, 1, 2, 3]) for i in range(8)])
    picks = make_router(name, LAYOUT)(batch, np.random.default_rng(1))
    assert picks.shape == (8,) and picks.min() >= 0 and picks.max() < 4


def test_unknown_router_names_choices() -> None:
    with pytest.raises(WarmRouteError, match="unknown router 'fastest'.*round_robin"):
        make_router("fastest", LAYOUT)
