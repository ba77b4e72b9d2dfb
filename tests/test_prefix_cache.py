"""The prefix cache: LRU tiers, what a hit costs in vidur, memory bounds, and the trace's reuse bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vidur.entities import Batch, Request

from envs.evaluation.evaluate import HeuristicPolicy
from envs.prefix.cache import TwoTierPrefixCache
from envs.prefix.setup import prefix_streams
from envs.prefix.sim import replica_kv_blocks
from envs.prefix.workloads import MOONCAKE_TRACE, load_trace, trace_requests, unbounded_hit_rate
from envs.sim.workload import WorkloadConfig
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv


def test_hbm_tier_evicts_least_recently_used_unpinned_blocks_to_host() -> None:
    cache = TwoTierPrefixCache(host_capacity=2)
    cache.release((), (1, 2))  # a finished request leaves 1 (head, most recent) and 2 cached
    cache.release((), (3,))
    cache.pin((1,), ())  # a routed request uses block 1: it may not be evicted
    cache.fit(free_blocks=1)
    assert list(cache.hbm) == [1]  # 2 was least recent, then 3; 1 is pinned
    assert list(cache.host) == [2, 3]


def test_host_tier_drops_its_least_recently_used_block_when_full() -> None:
    cache = TwoTierPrefixCache(host_capacity=2)
    for block in (1, 2, 3):
        cache.release((), (block,))
    cache.fit(free_blocks=0)
    assert list(cache.host) == [2, 3]  # 1 was spilled first and dropped when 3 arrived
    assert cache.match((1,)) == (0, 0)
    assert cache.match((2, 3)) == (0, 2)


def test_a_prefix_is_matched_across_tiers_and_ends_at_the_first_miss() -> None:
    cache = TwoTierPrefixCache(host_capacity=4)
    cache.release((), (1, 2, 3))
    cache.fit(free_blocks=2)  # the prefix's tail (3) is least recent: it goes to host
    assert list(cache.host) == [3]
    assert cache.match((1, 2, 3, 4)) == (2, 1)
    assert cache.match((1, 9, 3)) == (1, 0)


def _write_trace(path: Path, rows: list[tuple[float, int, int, list[int]]]) -> str:
    path.write_text(
        "".join(json.dumps({"timestamp": t, "input_length": i, "output_length": o, "hash_ids": h}) + "\n" for t, i, o, h in rows)
    )
    return f"jsonl:{path}"


def _run(workload: WorkloadConfig) -> tuple[VidurRoutingEnv, list[Request]]:
    env = VidurRoutingEnv(VidurEnvConfig(workload=workload))
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        obs, _, done, _, _ = env.step(0)
    return env, sorted(env.routed_requests, key=lambda r: r.arrived_at)


def _suffix_prefill_s(env: VidurRoutingEnv, prompt: int, hit: int) -> float:
    """The predictor's time for the suffix (one chunk) with the prefix as context, alone in a batch."""
    scheduler = env._replica_schedulers[0]
    probe = Request(arrived_at=0.0, num_prefill_tokens=prompt, num_decode_tokens=1)
    batch = Batch(scheduler.replica_id, [probe], [prompt - hit], [prompt])
    return scheduler._execution_time_predictor.get_execution_time(batch, 0).total_time


def test_a_hit_prefills_only_the_suffix_with_the_prefix_as_context(tmp_path: Path) -> None:
    trace = _write_trace(tmp_path / "t.jsonl", [(0, 2500, 4, [1, 2, 3, 4, 5]), (100_000, 2500, 4, [1, 2, 3, 4, 9])])
    env, (first, second) = _run(WorkloadConfig(num_replicas=1, num_requests=2, prefix_workload=trace))
    assert second.cached_tokens == 2048 and second.host_tokens == 0
    ttft = second.prefill_completed_at - second.arrived_at
    assert ttft == pytest.approx(_suffix_prefill_s(env, 2500, 2048), rel=1e-12)
    assert _suffix_prefill_s(env, 2500, 2048) < _suffix_prefill_s(env, 2500 - 2048, 0) * 1.5  # context is not free
    assert first.prefill_completed_at - first.arrived_at > 3 * ttft


def _evicting_trace(tmp_path: Path) -> str:
    """Request A, then fillers that overflow a Llama-2-7B H100's KV memory (~240 blocks), then A's prefix again."""
    rows = [(0, 2500, 4, [1, 2, 3, 4, 5])]
    for k in range(4):
        rows.append((10_000 * (k + 1), 60 * 512, 4, list(range(1000 + 100 * k, 1060 + 100 * k))))
    rows.append((100_000, 2500, 4, [1, 2, 3, 4, 9]))
    return _write_trace(tmp_path / "evict.jsonl", rows)


def test_a_host_tier_hit_adds_the_host_link_transfer_to_the_suffix_prefill(tmp_path: Path) -> None:
    workload = WorkloadConfig(
        num_replicas=1,
        num_requests=6,
        model="meta-llama/Llama-2-7b-hf",
        prefix_workload=_evicting_trace(tmp_path),
        host_cache_gb=64.0,
    )
    env, requests = _run(workload)
    last = requests[-1]
    assert last.cached_tokens == 2048 and last.host_tokens == 2048
    predictor = env._replica_schedulers[0]._execution_time_predictor
    expected = _suffix_prefill_s(env, 2500, 2048) + predictor.host_load_ms("h100", 2048) / 1e3
    assert last.prefill_completed_at - last.arrived_at == pytest.approx(expected, rel=1e-9)


def test_a_prefix_evicted_from_both_tiers_gets_no_hit(tmp_path: Path) -> None:
    workload = WorkloadConfig(
        num_replicas=1,
        num_requests=6,
        model="meta-llama/Llama-2-7b-hf",
        prefix_workload=_evicting_trace(tmp_path),
        host_cache_gb=0.0,
    )
    _, requests = _run(workload)
    assert requests[-1].cached_tokens == 0


def test_hbm_tier_never_exceeds_its_replicas_free_blocks() -> None:
    workload = WorkloadConfig(
        prefix_workload="mooncake",
        num_requests=150,
        trace_start=3000,
        trace_lead_in=1000,
        trace_time_scale=0.3,
        host_cache_gb=8.0,
    )
    env = VidurRoutingEnv(VidurEnvConfig(workload=workload))
    policy = HeuristicPolicy("least_outstanding", env.layout)
    obs, _ = env.reset(seed=0)
    done, checked, spilled = False, 0, 0
    while not done:
        for scheduler in env._replica_schedulers:
            cache = scheduler.cache
            assert cache.loose * scheduler._unit + scheduler.num_allocated_blocks <= replica_kv_blocks(scheduler)
            assert len(cache.host) <= cache.host_capacity
            checked += bool(cache.hbm)
            spilled = max(spilled, len(cache.host))
        obs, _, done, _, _ = env.step(policy.act(obs))
    assert checked > 0
    assert spilled > 0  # HBM was full: blocks went to the host tier


def test_the_bundled_trace_reuse_bound_is_37_percent_and_a_replay_stays_below_it() -> None:
    rows = load_trace(str(MOONCAKE_TRACE))
    assert len(rows) == 12031
    assert unbounded_hit_rate(trace_requests(rows, 0, len(rows), 1.0)) == pytest.approx(0.3736, abs=5e-4)
    workload = WorkloadConfig(
        prefix_workload="mooncake", num_requests=120, trace_start=2000, trace_lead_in=1000, trace_time_scale=0.5
    )
    env = VidurRoutingEnv(VidurEnvConfig(workload=workload))
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        obs, _, done, _, _ = env.step(env.routed_requests.__len__() % 4)
    replayed = sum(r.cached_tokens for r in env.routed_requests) / sum(r.num_prefill_tokens for r in env.routed_requests)
    bound = unbounded_hit_rate(trace_requests(rows, 2000, 120, 1.0), trace_requests(rows, 1000, 1000, 1.0))
    assert 0 < replayed <= bound


def test_caching_cuts_time_to_first_token_on_shared_prefixes() -> None:
    base = WorkloadConfig(prefix_workload="shared_prefix", num_requests=80, qps=20.0, prefix_groups=4)
    ttft = {}
    for caching in (True, False):
        env, requests = _run(base.replace(prefix_caching=caching, num_replicas=1))
        ttft[caching] = sum(r.prefill_completed_at - r.arrived_at for r in requests) / len(requests)
        assert (sum(r.cached_tokens for r in requests) > 0) == caching
    assert ttft[True] < 0.5 * ttft[False]


def test_multi_turn_follow_ups_arrive_after_the_previous_answer() -> None:
    workload = WorkloadConfig(prefix_workload="multi_turn", num_requests=12, sessions=3, qps=2.0, think_time_s=1.0)
    _, requests = _run(workload)
    assert len(requests) == 12
    by_session: dict[int, list[Request]] = {}
    for r in requests:
        by_session.setdefault(r.prefix.session, []).append(r)
    for turns in by_session.values():
        assert len(turns) == 4
        for earlier, later in zip(turns, turns[1:]):
            assert later.arrived_at >= earlier.completed_at
            assert later.num_prefill_tokens > earlier.num_prefill_tokens + earlier.num_decode_tokens
            assert later.cached_tokens >= (earlier.num_prefill_tokens + earlier.num_decode_tokens) // 512 * 512


def test_the_observation_shows_the_pending_requests_cached_prefix_per_replica(tmp_path: Path) -> None:
    trace = _write_trace(tmp_path / "t.jsonl", [(0, 2500, 4, [1, 2, 3, 4, 5]), (100_000, 2500, 4, [1, 2, 3, 4, 9])])
    env = VidurRoutingEnv(VidurEnvConfig(workload=WorkloadConfig(num_replicas=2, num_requests=2, prefix_workload=trace)))
    env.reset(seed=0)
    obs, *_ = env.step(1)
    replicas, request = env.layout.split(obs)
    cached = replicas[:, env.layout.replica_features.index("cached_hbm_tokens")] * 16384
    assert cached.tolist() == [0.0, 2048.0]
    assert replicas[1, env.layout.replica_features.index("hbm_cache_fill")] > 0
    assert 0 < request[env.layout.request_features.index("affinity_key")] < 1


def test_trace_windows_give_each_episode_seed_its_own_slice_of_the_trace() -> None:
    workload = WorkloadConfig(prefix_workload="mooncake", num_requests=50, trace_start=2000, trace_lead_in=500, trace_windows=4)
    rows = load_trace(str(MOONCAKE_TRACE))
    for seed in (0, 1, 3, 6):
        start = 2000 + (seed % 4) * 50
        assert prefix_streams(workload, seed) == (
            trace_requests(rows, start - 500, 500, 1.0),
            trace_requests(rows, start, 50, 1.0),
        )
    assert prefix_streams(workload.replace(trace_windows=1), 3)[1] == trace_requests(rows, 2000, 50, 1.0)
