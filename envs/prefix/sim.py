"""vidur glue for prefix caching: a replay request generator, a caching sarathi scheduler and a host-load predictor.

Everything is a subclass registered under its own key (no fork of vidur 0.0.26):

* ``PrefixReplayConfig`` / ``PrefixReplayGenerator`` emit a ``PrefixRequest`` stream as vidur ``Request``\\ s, each
  carrying its spec in ``request.prefix``;
* ``PrefixSarathiScheduler`` is sarathi plus a ``TwoTierPrefixCache``. When a request reaches the head of its
  replica's queue (admission, as in vLLM's scheduler) it takes the longest cached prefix of its blocks on this
  replica and advances the request's processed-token counters to it, so sarathi prefills only the uncached suffix
  while every chunk's ``num_kv_tokens`` (and so attention cost) still includes the prefix. It then allocates only
  the blocks not already resident, so shared blocks count once. It also injects multi-turn follow-ups when a turn
  completes;
* ``PrefixRooflinePredictor`` adds a request's host-tier load (its host blocks over the replica's host link) to
  the first batch that runs it.

With ``caching=False`` the scheduler is plain sarathi on the same requests (follow-ups still injected).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

from vidur.config import BaseRequestGeneratorConfig, SarathiSchedulerConfig
from vidur.entities import Batch, Request
from vidur.events.request_arrival_event import RequestArrivalEvent
from vidur.execution_time_predictor import ExecutionTimePredictorRegistry
from vidur.request_generator.base_request_generator import BaseRequestGenerator
from vidur.request_generator.request_generator_registry import RequestGeneratorRegistry
from vidur.scheduler.replica_scheduler.replica_scheduler_registry import ReplicaSchedulerRegistry
from vidur.scheduler.replica_scheduler.sarathi_replica_scheduler import SarathiReplicaScheduler
from vidur.utils.memory_planner import MemoryPlanner

from envs.prefix.cache import TwoTierPrefixCache
from envs.prefix.workloads import BLOCK_TOKENS, PrefixRequest, prefix_tokens
from envs.sim.devices import get_device
from envs.sim.predictor import LayerTimes, RooflineExecutionTimePredictor, RooflinePredictorConfig

PREFIX_REPLAY = "warmroute_prefix_replay"
PREFIX_SARATHI = "warmroute_prefix_sarathi"
PREFIX_ROOFLINE = "warmroute_prefix_roofline"


@dataclass
class PrefixReplayConfig(BaseRequestGeneratorConfig):
    """A fixed request stream; ``max_tokens`` must be its longest prompt + output."""

    requests: tuple[PrefixRequest, ...] = ()

    @staticmethod
    def get_type() -> str:
        return PREFIX_REPLAY


def new_request(spec: PrefixRequest, arrived_at: float, index: int) -> Request:
    request = Request(arrived_at=arrived_at, num_prefill_tokens=spec.prompt_tokens, num_decode_tokens=spec.output_tokens)
    request.prefix = spec
    request.prefix_index = index
    request.cached_tokens = 0  # prompt tokens not prefilled thanks to the cache (HBM + host tiers)
    request.host_tokens = 0  # of which loaded from the host tier
    return request


class PrefixReplayGenerator(BaseRequestGenerator):
    """Every request that is not a follow-up turn, at its arrival time."""

    def generate_requests(self) -> list[Request]:
        follow_ups = {spec.next_turn for spec in self.config.requests if spec.next_turn >= 0}
        return [new_request(spec, spec.arrival_s, i) for i, spec in enumerate(self.config.requests) if i not in follow_ups]


@dataclass
class PrefixSarathiConfig(SarathiSchedulerConfig):
    caching: bool = True
    """Take prefix hits (off: plain sarathi on the same stream)."""
    host_cache_blocks: int = 0
    """Host-tier capacity per replica, prefix blocks."""
    hit_block_tokens: int = 1
    """Cached tokens come in whole blocks of this many tokens: a hit is rounded down to it (1: token granularity,
    as SGLang's radix cache; vLLM caches only full KV blocks, so it gives no hit on a partial block and recomputes
    the whole last block of a fully cached prompt)."""
    cache_on_schedule: bool = False
    """A prefilling request's full blocks become hits for others as soon as a batch schedules them, not when its
    prefill completes (vLLM v1 registers a block in its prefix-cache table when it schedules it, so a request
    scheduled in the same or a later step reuses it). Not honoured by the fast-forward: it then stays off."""

    @staticmethod
    def get_type() -> str:
        return PREFIX_SARATHI


def replica_kv_blocks(scheduler: SarathiReplicaScheduler) -> int:
    """vidur blocks of KV memory of one replica (the one place that reads it: it becomes per-replica)."""
    return scheduler._cache_config.num_blocks


class PrefixSarathiScheduler(SarathiReplicaScheduler):
    """Sarathi with a two-tier prefix cache; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._caching = self._config.caching
        self._unit = BLOCK_TOKENS // self._cache_config.block_size  # vidur blocks per prefix block
        self.cache = TwoTierPrefixCache(self._config.host_cache_blocks)
        self._stream: tuple[PrefixRequest, ...] = self._request_generator_config.requests
        self._event_queue: list | None = None
        self.arrival_times: list[float] | None = None  # heap of follow-up arrival times, kept by the fast-forward
        self._resident: dict[int, int] = {}  # request id -> vidur blocks of its HBM hit (not allocated again)
        self._host_hit: dict[int, tuple[int, ...]] = {}
        self._pinned: dict[int, list[int]] = {}
        self._prefilled: set[int] = set()
        self._hit_taken: set[int] = set()

    def attach(self, event_queue: list) -> None:
        """The simulator's event heap, for injecting multi-turn follow-ups."""
        self._event_queue = event_queue

    # ------------------------------------------------------------------ admission: take the hit
    def _take_hit(self, request: Request) -> None:
        spec: PrefixRequest = request.prefix
        hbm, host = self.cache.match(spec.block_ids)
        hbm_blocks, host_blocks = spec.block_ids[:hbm], spec.block_ids[hbm : hbm + host]
        self.cache.pin(hbm_blocks, host_blocks)
        self._pinned[request.id] = list(hbm_blocks)
        self._host_hit[request.id] = host_blocks
        hbm_tokens = prefix_tokens(spec.prompt_tokens, hbm)
        hit = prefix_tokens(spec.prompt_tokens, hbm + host)
        granule = self._config.hit_block_tokens
        skipped = min(hit, spec.prompt_tokens - 1) // granule * granule  # a full hit still computes the last token
        request._num_processed_tokens = request._num_stage_processed_tokens = skipped
        request.cached_tokens = skipped
        request.host_tokens = request.host_tokens_to_load = max(0, skipped - hbm_tokens)
        self._resident[request.id] = hbm_tokens // self._cache_config.block_size

    def _blocked_by_cache(self) -> int:
        """vidur blocks held by pinned loose prefix blocks (not in any allocation, not evictable)."""
        return self.cache.loose_pinned * self._unit

    def _can_allocate_request(self, request: Request) -> bool:
        if not self._caching:
            return super()._can_allocate_request(request)
        if request.id not in self._hit_taken and request.id not in self._allocation_map:
            self._hit_taken.add(request.id)  # once: a restarted request recomputes everything
            self._take_hit(request)
        free = self._cache_config.num_blocks - self._num_allocated_blocks - self._blocked_by_cache()
        if request.id not in self._allocation_map:
            need = math.ceil(request.num_prefill_tokens / self._cache_config.block_size) - self._resident.get(request.id, 0)
            return free - need >= self._watermark_blocks
        return free >= 1

    def _allocate_request(self, request: Request) -> None:
        if not self._caching:
            super()._allocate_request(request)
            return
        block_size = self._cache_config.block_size
        resident = self._resident.get(request.id, 0)  # a restarted request lost it in free(): full allocation
        if request.id not in self._allocation_map:
            self.allocate(request.id, math.ceil(request.num_prefill_tokens / block_size) - resident)
            host_blocks = self._host_hit.pop(request.id, ())
            self.cache.load(request.id, host_blocks)
            self._pinned[request.id].extend(host_blocks)
            if self._config.cache_on_schedule:  # its first chunk, visible to requests admitted after it in this batch
                first = min(request.num_prefill_tokens, request.num_processed_tokens + self._config.chunk_size)
                self._cache_blocks(request, first // BLOCK_TOKENS)
            self._fit()
        elif request.num_processed_tokens > (self._allocation_map[request.id] + resident) * block_size:
            self.allocate(request.id, 1)  # sarathi's decode growth, counting the resident prefix as reserved
            self._fit()

    def free(self, *request_ids: int) -> None:
        super().free(*request_ids)
        if self._caching:
            for request_id in request_ids:
                self._resident.pop(request_id, None)
                self.cache.disown(request_id)

    def _fit(self) -> None:
        free = (self._cache_config.num_blocks - self._num_allocated_blocks) // self._unit
        self.cache.fit(free)

    # ------------------------------------------------------------------ progress: cache computed blocks, follow-ups
    def _get_next_batch(self, time: float) -> Batch | None:
        batch = super()._get_next_batch(time)
        if batch is not None and self._caching and self._config.cache_on_schedule:
            for request, tokens in zip(batch.requests, batch.num_q_tokens):
                if request.id not in self._prefilled and request.id in self._pinned:
                    self._cache_blocks(request, (request.num_processed_tokens + tokens) // BLOCK_TOKENS)
        return batch

    def _cache_blocks(self, request: Request, count: int) -> None:
        """The request's first ``count`` prompt blocks are (being) computed in its allocation: cache them."""
        pinned = self._pinned[request.id]
        for block in request.prefix.block_ids[len(pinned) : count]:
            self.cache.add_owned(request.id, block)
            pinned.append(block)

    def on_batch_end(self, batch: Batch) -> None:
        super().on_batch_end(batch)
        for request in batch.requests:
            self.after_iteration(request)
        if self._caching:
            self._fit()

    def after_iteration(self, request: Request) -> None:
        """Cache a request's computed blocks once its prefill completes; on completion release its blocks and
        inject its follow-up turn. Called per request in batch order after sarathi's own batch end (and by the
        fast-forward for the requests whose prefill or decode ended in a skipped iteration)."""
        spec: PrefixRequest = request.prefix
        if self._caching:
            if request._is_prefill_complete and request.id not in self._prefilled:
                self._prefilled.add(request.id)
                self._cache_blocks(request, len(spec.block_ids))
            if request._completed:
                self.cache.release(self._pinned.pop(request.id), spec.finish_block_ids)
                self._prefilled.discard(request.id)
                self._hit_taken.discard(request.id)
        if request._completed and spec.next_turn >= 0:
            follow = self._stream[spec.next_turn]
            arrival = request.completed_at + follow.arrival_s
            event = RequestArrivalEvent(arrival, new_request(follow, arrival, spec.next_turn))
            heapq.heappush(self._event_queue, (event._priority_number, event))
            if self.arrival_times is not None:
                heapq.heappush(self.arrival_times, arrival)


@dataclass
class PrefixRooflineConfig(RooflinePredictorConfig):
    """Roofline plus host-tier loads over each device's host link."""

    @staticmethod
    def get_type() -> str:
        return PREFIX_ROOFLINE


class PrefixRooflinePredictor(RooflineExecutionTimePredictor):
    """Adds ``host tokens x KV bytes per token / host-link bandwidth`` to the batch that first runs a request.

    Each tensor-parallel worker loads its own KV shard over its own link. The load is not overlapped with compute
    (a synchronous load, as vLLM's CPU-offload connector does before the forward pass): an upper bound on its cost.
    It is spread over the stage's layers inside ``attn_prefill`` because vidur sums per-layer times.
    """

    def __init__(self, predictor_config: Any, replica_config: Any, cache_config: Any) -> None:
        super().__init__(predictor_config, replica_config, cache_config)
        planner = MemoryPlanner(replica_config, cache_config)
        self._kv_bytes_per_token = planner._get_kv_cache_memory_per_device_per_token()

    def host_load_ms(self, device: str, tokens: int) -> float:
        link = get_device(device).host_link_gb_s * 1e6 * self._config.bandwidth_efficiency  # bytes per ms
        return tokens * self._kv_bytes_per_token / link

    def _times(self, batch: Batch) -> LayerTimes:
        if self._last is not None and self._last[0] is batch:
            return self._last[1]
        times = super()._times(batch)
        tokens = 0
        for request in batch.requests:
            tokens += getattr(request, "host_tokens_to_load", 0)
            request.host_tokens_to_load = 0
        if tokens:
            extra = self.host_load_ms(self.device_for(batch.replica_id).name, tokens) / self._num_layers_per_pipeline_stage
            times = times._replace(attn_prefill=times.attn_prefill + extra)
            self._last = (batch, times)
        return times


def affinity_key(session: int) -> float:
    """Stable hash of a session or group id into [0, 1) (Knuth's multiplicative hash; no per-process salt)."""
    return ((session * 2654435761) % 2**32) / 2**32


def prefix_observation(schedulers: list[Any], spec: PrefixRequest, out: Any) -> float:
    """Fill ``out[i] = (hbm tokens, host tokens, hbm fill, host fill)`` of replica i for the pending ``spec``.

    Returns the request's affinity key. Plain (non-caching) schedulers leave their row at zero.
    """
    for i, scheduler in enumerate(schedulers):
        cache = getattr(scheduler, "cache", None)
        if cache is None:
            continue
        hbm, host = cache.match(spec.block_ids)
        hbm_tokens = prefix_tokens(spec.prompt_tokens, hbm)
        host_tokens = prefix_tokens(spec.prompt_tokens, hbm + host) - hbm_tokens
        out[i] = (
            hbm_tokens,
            host_tokens,
            len(cache.hbm) * scheduler._unit / replica_kv_blocks(scheduler),
            len(cache.host) / cache.host_capacity if cache.host_capacity else 0.0,
        )
    return affinity_key(spec.session)


def kv_blocks_per_replica(replica_config: Any, cache_config: Any) -> int:
    """vidur blocks of paged KV memory: the planner's whole KV budget, not rounded to slots of ``max_tokens``."""
    return MemoryPlanner(replica_config, cache_config).get_max_kv_cache_size_in_tokens() // cache_config.block_size


def host_blocks(replica_config: Any, cache_config: Any, host_cache_gb: float) -> int:
    """Prefix blocks that ``host_cache_gb`` of DRAM holds (the full KV of every TP shard)."""
    per_token = MemoryPlanner(replica_config, cache_config)._get_kv_cache_memory_per_device_per_token()
    return int(host_cache_gb * 1024**3 // (per_token * replica_config.tensor_parallel_size * BLOCK_TOKENS))


RequestGeneratorRegistry.register(PREFIX_REPLAY, PrefixReplayGenerator)
ReplicaSchedulerRegistry.register(PREFIX_SARATHI, PrefixSarathiScheduler)
ExecutionTimePredictorRegistry.register(PREFIX_ROOFLINE, PrefixRooflinePredictor)
