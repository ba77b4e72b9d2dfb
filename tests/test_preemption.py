"""Preempted requests restart cleanly (envs.sim.vidur_patches) and are measured over the tokens they emitted."""

from __future__ import annotations

import numpy as np
import pytest
from vidur.entities.request import Request

from envs.evaluation.evaluate import HeuristicPolicy, evaluation_seeds
from envs.routers.heuristics import ROUTERS
from envs.sim import vidur_patches
from envs.sim.metrics import request_latencies
from envs.sim.simulation import new_simulator
from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv

# The case from issue 10: vidur crashed here under speed_aware on the first held-out seed.
LLAMA2_HETERO = preset("heterogeneous").replace(model="meta-llama/Llama-2-7b-hf", qps=26.0)
FIRST_HELD_OUT_SEED = evaluation_seeds(0, 1)[0]


def _run_episode(workload, policy: str, seed: int) -> VidurRoutingEnv:
    env = VidurRoutingEnv(VidurEnvConfig(workload=workload))
    router = HeuristicPolicy(policy, env.layout)
    router.reset(seed)
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
        obs, _, done, _, _ = env.step(router.act(obs))
    return env


def _process(request: Request, tokens: int, time: float) -> None:
    """One batch of ``tokens`` tokens through stage 0 and the batch end, as vidur's events would run it."""
    request.on_batch_schedule(time)
    request.on_batch_stage_end(time, 0, 0.0, 0.0, tokens)
    request.on_batch_end(time, tokens)


def test_stock_vidur_restart_crashes_the_llama2_heterogeneous_episode() -> None:
    vidur_patches.remove()
    try:
        with pytest.raises(AssertionError):
            _run_episode(LLAMA2_HETERO, "speed_aware", FIRST_HELD_OUT_SEED)
    finally:
        vidur_patches.apply()


@pytest.mark.parametrize("policy", sorted(ROUTERS))
def test_llama2_heterogeneous_qps26_completes_under_every_heuristic(policy: str) -> None:
    env = _run_episode(LLAMA2_HETERO, policy, FIRST_HELD_OUT_SEED)
    assert len(env.routed_requests) == LLAMA2_HETERO.num_requests
    assert all(r.completed for r in env.routed_requests)


def test_preempted_requests_keep_their_lengths_first_token_and_emitted_tokens() -> None:
    original = {
        event._request.id: event._request.size for _, event in new_simulator(LLAMA2_HETERO, FIRST_HELD_OUT_SEED)._event_queue
    }
    env = _run_episode(LLAMA2_HETERO, "speed_aware", FIRST_HELD_OUT_SEED)
    restarted = [r for r in env.routed_requests if r.num_restarts > 0]
    assert restarted, "the case is meant to preempt"
    for r in restarted:
        prefill, decode = original[r.id]
        assert r.total_tokens == prefill + decode
        assert vidur_patches.emitted_decode_tokens(r) == decode
        assert r.num_decode_tokens < decode  # vidur's own count shrank: metrics must not use it
        assert r.arrived_at < r.prefill_completed_at < r.completed_at
    lat = request_latencies(restarted)
    expected_tbt = [(r.completed_at - r.prefill_completed_at) / max(original[r.id][1] - 1, 1) for r in restarted]
    np.testing.assert_allclose(lat["tbt"], expected_tbt, rtol=1e-12)
    assert lat["restarts"].sum() == sum(r.num_restarts for r in restarted)


def test_restart_after_first_token_recomputes_everything_processed_as_the_prompt() -> None:
    request = Request(arrived_at=0.0, num_prefill_tokens=100, num_decode_tokens=10)
    _process(request, 100, 1.0)  # prefill: the first output token comes with it
    _process(request, 1, 2.0)
    _process(request, 1, 3.0)
    request.restart()
    assert request.size == (103, 7)
    assert vidur_patches.emitted_decode_tokens(request) == 10
    _process(request, 103, 4.0)  # re-prefill, then the remaining 6 decode steps
    for step in range(6):
        _process(request, 1, 5.0 + step)
    assert request.completed and request.prefill_completed_at == 1.0 and request.completed_at == 10.0


def test_restart_during_a_chunked_prefill_keeps_the_whole_prompt() -> None:
    request = Request(arrived_at=0.0, num_prefill_tokens=100, num_decode_tokens=10)
    _process(request, 50, 1.0)
    request.restart()
    assert request.size == (100, 10)
    _process(request, 100, 2.0)
    assert request.is_prefill_complete and request.prefill_completed_at == 2.0
