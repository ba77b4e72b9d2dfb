"""The simulator's prefix-cache model held to a real engine: same window, same routing, same cache size.

Run the served window again in WarmRoute's vidur simulation (``envs.prefix``) and compare, request by request, the
prompt tokens each side took from its prefix cache. The simulation is set up to match the engine:

* **scale**: the simulator replays the trace at its own block scale (one 512-token trace block per engine block:
  a request of ``n`` engine tokens is ``n x 16`` simulator tokens at block size 32), so a cached engine block is a
  cached simulator block, and cached tokens are compared as ``simulator tokens / 16``;
* **arrivals**: the times the replayer actually sent each request;
* **routing**: the backend that actually served each request (the replayer's record, which carries the router's
  ``X-WarmRoute-Backend`` header), applied by a fixed-assignment vidur global scheduler;
* **cache size**: per replica, the engine's ``num_gpu_blocks`` minus vLLM's one reserved null block, in prefix
  blocks; no host tier (vLLM's CPU backend has none); no admission watermark (vLLM v1 has none);
* **engine rules**: hits in whole blocks (``block_hits``: ``hit_block_tokens`` = one block) and blocks cached when
  scheduled (``cache_on_schedule``), as vLLM v1 does. Each can be left at the simulator's default, so the table
  shows what each rule is worth (:data:`RULES`).

The time model stays the simulator's (a roofline of ``model`` on ``device``; ``microsoft/phi-2`` is the smallest
model it prices), so how long requests overlap and hold memory is that hardware's, not the CPU's: the remaining
disagreements are evictions whose timing differs (docs/serve.md). Decode steps are not scaled: a request holds
memory for as many steps as in the engine.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
from vidur.config import BaseGlobalSchedulerConfig
from vidur.entities import Request
from vidur.scheduler.global_scheduler.base_global_scheduler import BaseGlobalScheduler
from vidur.scheduler.global_scheduler.global_scheduler_registry import GlobalSchedulerRegistry
from vidur.simulator import Simulator
from vidur.types.replica_id import ReplicaId

from envs.errors import WarmRouteError
from envs.prefix.setup import attach_prefix
from envs.prefix.workloads import BLOCK_TOKENS, PrefixRequest
from envs.sim.memory import size_replicas
from envs.sim.simulation import build_simulation_config, quiet_vidur_logging, reset_vidur_counters
from envs.sim.workload import WorkloadConfig
from warmroute.realengine.prompts import ScaleConfig, ScaledRequest
from warmroute.realengine.replay import RequestRecord

FIXED_ASSIGNMENT = "warmroute_fixed_assignment"
VLLM_NULL_BLOCKS = 1
"""vLLM v1's block pool keeps block 0 as a null block: it never holds KV."""


@dataclass
class FixedAssignmentConfig(BaseGlobalSchedulerConfig):
    """Route stream request ``i`` to replica ``assignment[i]`` (a recorded run's decisions)."""

    assignment: tuple[int, ...] = ()

    @staticmethod
    def get_type() -> str:
        return FIXED_ASSIGNMENT


class FixedAssignmentScheduler(BaseGlobalScheduler):
    """vidur global scheduler that replays recorded routing decisions."""

    def schedule(self) -> list[tuple[ReplicaId, Request]]:
        self.sort_requests()
        assignment = self._config.cluster_config.global_scheduler_config.assignment
        out = [(ReplicaId(assignment[r.prefix_index]), r) for r in self._request_queue]
        self._request_queue = []
        return out


GlobalSchedulerRegistry.register(FIXED_ASSIGNMENT, FixedAssignmentScheduler)


@dataclass(frozen=True)
class FidelitySetup:
    """The simulated counterpart of one served run."""

    engine_blocks: int
    """KV blocks per engine, as vLLM reports (``num_gpu_blocks``)."""
    chunk_tokens: int = 2048
    """Engine tokens one step may prefill (vLLM's ``max_num_batched_tokens``)."""
    block_hits: bool = True
    """Hits in whole engine blocks, none on a partial block (vLLM; False: the simulator's default, token-granular)."""
    cache_on_schedule: bool = True
    """Blocks become hits when scheduled, not when the prefill completes (vLLM v1; False: the simulator's default)."""
    model: str = "microsoft/phi-2"
    device: str = "h100"


def simulated_cached_tokens(
    requests: list[ScaledRequest], records: list[RequestRecord], scale: ScaleConfig, setup: FidelitySetup
) -> list[int]:
    """Engine-scale cached tokens the simulator gives each of ``requests``, routed and timed as ``records``."""
    by_index = {r.index: r for r in records}
    missing = [spec.index for spec in requests if spec.index not in by_index]
    if missing:
        raise WarmRouteError(f"the replay record lacks trace requests {missing[:5]}; replay the same window")
    num_replicas = 1 + max(int(by_index[s.index].backend) for s in requests)
    stream = tuple(
        PrefixRequest(
            arrival_s=by_index[spec.index].sent_s,
            prompt_tokens=len(spec.prompt) * scale.scale,
            output_tokens=spec.output_tokens,  # decode steps, not scaled: the step count sets the time a request holds memory
            block_ids=spec.block_ids,
            finish_block_ids=spec.block_ids,
            session=0,
        )
        for spec in requests
    )
    order = np.argsort([s.arrival_s for s in stream], kind="stable")  # vidur sorts arrivals; keep the pairing
    stream = tuple(stream[i] for i in order)
    assignment = tuple(int(by_index[requests[i].index].backend) for i in order)
    w = WorkloadConfig(
        name="real_engine_fidelity",
        num_replicas=num_replicas,
        model=setup.model,
        device=setup.device,
        prefix_workload="mooncake",
        host_cache_gb=0.0,
        chunk_size=setup.chunk_tokens * scale.scale,
        num_requests=len(stream),
    )
    quiet_vidur_logging()
    reset_vidur_counters()
    config = build_simulation_config(w, seed=0, scored=list(stream))
    config.cluster_config.global_scheduler_config = FixedAssignmentConfig(assignment=assignment)
    replica_scheduler = config.cluster_config.replica_scheduler_config
    if setup.block_hits:
        replica_scheduler.hit_block_tokens = BLOCK_TOKENS
    replica_scheduler.cache_on_schedule = setup.cache_on_schedule
    simulator = Simulator(config)
    size_replicas(simulator, w, paged=True)
    vidur_blocks = (setup.engine_blocks - VLLM_NULL_BLOCKS) * (BLOCK_TOKENS // config.cluster_config.cache_config.block_size)
    for rid in simulator.scheduler._replica_schedulers:
        rs = simulator.scheduler.get_replica_scheduler(rid)
        rs._cache_config.num_blocks = vidur_blocks
        rs._watermark_blocks = 0
    attach_prefix(simulator, w, 0, [])
    simulated = [event._request for _, event in simulator._event_queue if hasattr(event, "_request")]
    queue = simulator._event_queue
    while queue:  # Simulator.run() without its output files
        _, event = heapq.heappop(queue)
        simulator._set_time(event._time)
        for new in event.handle_event(simulator.scheduler, simulator._metric_store) or []:
            heapq.heappush(queue, (new._priority_number, new))
    cached = {r.prefix_index: r.cached_tokens for r in simulated}
    out = [0] * len(requests)
    for position, i in enumerate(order):
        out[i] = cached[position] // scale.scale
    return out


RULES: dict[str, tuple[bool, bool]] = {
    "default": (False, False),
    "+blocks": (True, False),
    "vllm": (True, True),
}
"""Rule sets of the fidelity table: ``(block_hits, cache_on_schedule)``."""


def compare(engine: list[int], simulated: list[int]) -> dict[str, float]:
    """Agreement of per-request cached tokens: exact share, totals and their ratio, and where they differ."""
    a, b = np.asarray(engine), np.asarray(simulated)
    total_engine, total_sim = int(a.sum()), int(b.sum())
    return {
        "requests": len(a),
        "exact_share": float(np.mean(a == b)),
        "engine_cached_tokens": total_engine,
        "sim_cached_tokens": total_sim,
        "ratio": total_sim / total_engine if total_engine else float("nan"),
        "sim_more": int(np.sum(b > a)),
        "sim_less": int(np.sum(b < a)),
    }
