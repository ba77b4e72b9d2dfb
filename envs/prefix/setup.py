"""From a prefix-sharing ``WorkloadConfig`` to vidur parts, and the trace lead-in that warms the caches.

Called by ``envs.sim.simulation`` only when ``workload.has_prefix``, so every other workload builds
exactly the simulation it built before.

**Long prompts.** vidur sizes KV memory in slots of the request generator's ``max_tokens``
(``num_blocks = max_tokens // block_size * (kv_tokens // max_tokens)``, base_replica_scheduler.py); with the
trace's 126k-token prompts that throws away up to a whole slot of memory. A paged engine has no slots: prefix
workloads set ``CacheConfig.num_blocks`` to the planner's full KV budget, so vidur's rounding is skipped, and give
the generator the stream's true longest request as ``max_tokens``. Sarathi itself caps batches by
``batch_size_cap`` (128), not by ``max_tokens``, and admits a request when its blocks fit.

**Lead-in.** Reuse builds up over a trace, so a scored window should start from warm caches. The
``trace_lead_in`` requests before the window are replayed into the caches in order (no simulator, no latency):
each goes to the replica holding its longest cached prefix unless that replica has received over 25 % (and
16k tokens) more prefill work than the least loaded one, then to the least loaded (the load-threshold rule of SGLang's router,
on cumulative uncached prompt tokens as the load). The window then opens with these caches and empty queues.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from vidur.config import CacheConfig, ReplicaConfig

from envs.prefix.sim import (
    PrefixReplayConfig,
    PrefixRooflineConfig,
    PrefixSarathiConfig,
    host_blocks,
    kv_blocks_per_replica,
    replica_kv_blocks,
)
from envs.prefix.workloads import (
    PrefixRequest,
    load_trace,
    multi_turn_requests,
    prefix_tokens,
    shared_prefix_requests,
    trace_file,
    trace_requests,
)

LEAD_IN_IMBALANCE = 1.25
"""Lead-in routing leaves the longest-prefix replica when its load exceeds the least loaded one's by this factor..."""
LEAD_IN_ABS_TOKENS = 16384
"""... and by this many prefill tokens (both must hold, as in SGLang's router)."""


def prefix_streams(w: Any, seed: int) -> tuple[list[PrefixRequest], list[PrefixRequest]]:
    """``(lead_in, scored)`` requests of a prefix workload for the episode ``seed``."""
    if w.prefix_workload == "shared_prefix":
        return [], shared_prefix_requests(
            seed=seed,
            num_requests=w.num_requests,
            qps=w.qps,
            groups=w.prefix_groups,
            prefix_tokens=w.prefix_tokens,
            question_tokens=w.question_tokens,
            output_tokens=w.output_tokens,
            zipf_theta=w.group_zipf_theta,
        )
    if w.prefix_workload == "multi_turn":
        return [], multi_turn_requests(
            seed=seed,
            num_requests=w.num_requests,
            qps=w.qps,
            sessions=w.sessions,
            message_tokens=w.question_tokens,
            output_tokens=w.output_tokens,
            think_time_s=w.think_time_s,
        )
    rows = load_trace(trace_file(w.prefix_workload))
    start = w.trace_window_start(seed)
    lead_in = trace_requests(rows, start - w.trace_lead_in, w.trace_lead_in, w.trace_time_scale)
    return lead_in, trace_requests(rows, start, w.num_requests, w.trace_time_scale)


def prefix_parts(w: Any, scored: list[PrefixRequest], replica: ReplicaConfig, chunk_size: int, seed: int) -> dict[str, Any]:
    """Keyword arguments of vidur's ``ClusterConfig``/``SimulationConfig`` that a prefix workload replaces
    (``scored``: the episode's scored stream from :func:`prefix_streams`)."""
    cache = CacheConfig()
    cache.num_blocks = kv_blocks_per_replica(replica, cache)
    longest = max(r.prompt_tokens + r.output_tokens for r in scored)
    return {
        "cache_config": cache,
        "replica_scheduler_config": PrefixSarathiConfig(
            chunk_size=chunk_size, caching=w.prefix_caching, host_cache_blocks=host_blocks(replica, cache, w.host_cache_gb)
        ),
        "request_generator_config": PrefixReplayConfig(seed=seed, max_tokens=longest, requests=tuple(scored)),
        "execution_time_predictor_config": PrefixRooflineConfig(replica_devices=w.devices),
    }


def attach_prefix(sim: Any, w: Any, seed: int, lead_in: list[PrefixRequest]) -> None:
    """Give each replica scheduler the event heap (for follow-up turns) and warm its cache with the ``lead_in``
    requests of :func:`prefix_streams` for episode ``seed``."""
    schedulers = [
        sim.scheduler.get_replica_scheduler(rid) for rid in sorted(sim.scheduler._replica_schedulers, key=lambda r: r.id)
    ]
    for scheduler in schedulers:
        scheduler.attach(sim._event_queue)
    if w.prefix_caching and lead_in:
        caches = [s.cache for s in schedulers]
        hbm_blocks = [replica_kv_blocks(s) // s._unit for s in schedulers]
        key = (
            w.prefix_workload,
            w.trace_window_start(seed),
            len(lead_in),
            tuple(hbm_blocks),
            tuple(c.host_capacity for c in caches),
        )
        warm = _WARM.pop(key, None)  # re-inserted below: the dict's order is least recently used first
        if warm is None:
            warm_caches(caches, hbm_blocks, lead_in)
            warm = [c.copy() for c in caches]
        else:
            for cache, state in zip(caches, warm):
                cache.restore(state)
        _WARM[key] = warm
        while len(_WARM) > WARM_CACHE_ENTRIES:
            del _WARM[next(iter(_WARM))]


WARM_CACHE_ENTRIES = 32
"""Warmed cache states kept per process: an episode replaying a window seen before copies them instead of
replaying its lead-in again (a 2,000-request lead-in costs about 0.1 s per reset; the copy well under 1 ms)."""
_WARM: dict[tuple, list[Any]] = {}


def warm_caches(caches: list[Any], hbm_blocks: list[int], lead_in: list[PrefixRequest]) -> None:
    """Replay ``lead_in`` into ``caches`` (HBM capacities ``hbm_blocks``, all memory free) by the rule above."""
    load = np.zeros(len(caches))
    for spec in lead_in:
        matches = [sum(c.match(spec.block_ids)) for c in caches]
        best = int(np.argmax(matches))
        imbalanced = load[best] - load.min() > LEAD_IN_ABS_TOKENS and load[best] > LEAD_IN_IMBALANCE * load.min()
        if matches[best] == 0 or imbalanced:
            best = int(np.argmin(load))
        hit = prefix_tokens(spec.prompt_tokens, matches[best])
        load[best] += spec.prompt_tokens - hit
        caches[best].release((), spec.finish_block_ids)
        caches[best].fit(hbm_blocks[best])
