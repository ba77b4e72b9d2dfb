"""The clairvoyant lookahead used to estimate headroom over the heuristics (envs/evaluation/lookahead.py)."""

from __future__ import annotations

import os

import pytest

from envs.evaluation.evaluate import HeuristicPolicy, evaluate_policy
from envs.evaluation.lookahead import _return_after, lookahead_episode
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv


@pytest.mark.slow
def test_lookahead_is_never_worse_than_its_base_router(small_hetero_workload) -> None:
    config = VidurEnvConfig(workload=small_hetero_workload.replace(num_requests=20))
    changed = {}
    for base in ("round_robin", "speed_aware"):
        result = lookahead_episode(config, base, seed=3)
        changed[base] = result.changed_fraction
        expected = evaluate_policy(HeuristicPolicy(base, config.layout), config, [3])["mean_e2e_s"]
        assert abs(result.base_mean_e2e_s - expected) < 1e-12
        # Deterministic episode + deterministic base router: one exact improvement step cannot lose.
        assert result.lookahead_mean_e2e_s <= result.base_mean_e2e_s + 1e-9
        assert 0.0 <= result.changed_fraction <= 1.0
        assert 0.0 <= result.base_scheduling_delay_s < result.base_mean_e2e_s
    # Round robin ignores load on a mixed fleet: the lookahead must find better replicas for some requests.
    assert changed["round_robin"] > 0


def test_a_lookahead_child_that_raises_exits_instead_of_running_on(small_workload) -> None:
    env = VidurRoutingEnv(VidurEnvConfig(workload=small_workload.replace(num_requests=20)))
    env.reset(seed=1)
    parent = os.getpid()
    with pytest.raises(RuntimeError, match="failed before reporting its return"):
        _return_after(env, HeuristicPolicy("round_robin", env.layout), action=99)  # step(99) raises in the child
    assert os.getpid() == parent  # only the parent gets here
    assert env.step(0)[0] is not None  # and its own episode is untouched


def test_a_truncated_lookahead_records_one_label_per_decision_with_its_tied_best_replicas(small_workload) -> None:
    config = VidurEnvConfig(workload=small_workload.replace(num_requests=12))
    result = lookahead_episode(config, "round_robin", seed=2, horizon=3, record=True)
    labels = result.labels
    assert labels is not None
    decisions = len(labels.action)
    assert decisions == config.workload.num_requests
    assert labels.obs.shape == (decisions, config.layout.dim)
    assert labels.best.shape == (decisions, config.workload.num_replicas)
    # The label is always among the best replicas, and overriding the base is what changed_fraction counts.
    assert labels.best[range(decisions), labels.action].all()
    assert result.changed_fraction == pytest.approx(float((labels.action != labels.base_action).mean()))
    assert result.lookahead_p90_ttft_s > 0 and result.base_p90_ttft_s > 0
    with pytest.raises(ValueError, match="horizon"):
        lookahead_episode(config, "round_robin", seed=2, horizon=0)
