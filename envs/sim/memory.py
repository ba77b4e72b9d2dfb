"""Per-replica KV-cache capacity: each replica sized from its own device memory and tensor-parallel size.

vidur 0.0.26 shares one ``CacheConfig`` across all replicas, and the first replica scheduler to be built writes its
``num_blocks`` into it (``scheduler/replica_scheduler/base_replica_scheduler.py``), so on ``h100,a40`` the 45 GB A40
would get the 80 GB H100's blocks. It also never reads ``ReplicaConfig.gpu_memory_utilization``: the memory planner
(``utils/memory_planner.py``) always keeps ``1 - CacheConfig.memory_margin_fraction`` = 0.9 of device memory.

:func:`size_replicas` runs right after the ``Simulator`` is built, before any request arrives, and gives every
replica scheduler its own ``CacheConfig`` whose block count vidur's own ``MemoryPlanner`` computes for that replica's
device with ``memory_margin_fraction = 1 - gpu_memory_utilization``. It then recomputes the three values vidur
derived from the shared config at construction: the block count, the admission watermark of sarathi/vllm
(``watermark_blocks_fraction`` of the replica's own blocks) and orca's memory-bound batch size. vidur's formula is
kept as is (capacity rounded down to whole ``max_tokens``-long request slots), so a fleet of identical devices at the
default 0.9 gets exactly vidur's stock numbers.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from vidur.config import CacheConfig, ReplicaConfig
from vidur.utils.memory_planner import MemoryPlanner

if TYPE_CHECKING:  # envs.sim.workload validates with this module
    from envs.sim.workload import WorkloadConfig

BLOCK_SIZE = CacheConfig.block_size  # tokens per KV block (vidur's default, 16)
_NETWORK_DEVICE = {"h100": "h100_dgx", "a100": "a100_dgx", "a40": "a40_pairwise_nvlink", "l40": "l40_pcie"}


def replica_config(w: WorkloadConfig, device: str) -> ReplicaConfig:
    """vidur's ``ReplicaConfig`` for one replica of ``w`` on ``device``."""
    return ReplicaConfig(
        model_name=w.model,
        device=device,
        network_device=_NETWORK_DEVICE[device],
        tensor_parallel_size=w.tensor_parallel_size,
        num_pipeline_stages=1,
    )


def kv_capacity_tokens(w: WorkloadConfig, device: str) -> int:
    """KV-cache tokens one replica on ``device`` holds: usable memory minus weights, over KV bytes per token."""
    planner = MemoryPlanner(replica_config(w, device), _cache_config(w))
    usable = planner._device_config.total_memory_gb * 1024**3 * w.gpu_memory_utilization
    return int((usable - planner._get_parameter_memory_per_device()) // planner._get_kv_cache_memory_per_device_per_token())


def num_blocks(w: WorkloadConfig, device: str) -> int:
    """Blocks vidur would give a replica on ``device``: whole ``max_tokens`` request slots, in blocks."""
    return (w.max_tokens // BLOCK_SIZE) * (kv_capacity_tokens(w, device) // w.max_tokens)


def size_replicas(simulator: Any, w: WorkloadConfig, *, paged: bool = False) -> list[int]:
    """Give each replica scheduler of a fresh ``simulator`` its own KV sizing; returns the block counts.

    ``paged``: the whole KV budget in blocks, not vidur's whole ``max_tokens`` slots (prefix workloads, whose
    long-tailed prompts would waste up to a slot: see envs.prefix.setup).
    """
    scheduler = simulator.scheduler
    replica_ids = sorted(scheduler._replica_schedulers, key=lambda rid: rid.id)
    blocks = []
    for replica_id, device in zip(replica_ids, w.devices):
        rs = scheduler.get_replica_scheduler(replica_id)
        count = kv_capacity_tokens(w, device) // BLOCK_SIZE if paged else num_blocks(w, device)
        cache = dataclasses.replace(rs._cache_config, num_blocks=count, memory_margin_fraction=1.0 - w.gpu_memory_utilization)
        rs._cache_config = cache
        if hasattr(rs, "_watermark_blocks"):  # sarathi, vllm
            rs._watermark_blocks = int(cache.watermark_blocks_fraction * cache.num_blocks)
        rs._max_batch_size = min(kv_capacity_tokens(w, device) // w.max_tokens, rs._config.batch_size_cap)
        blocks.append(cache.num_blocks)
    return blocks


def _cache_config(w: WorkloadConfig) -> CacheConfig:
    return CacheConfig(memory_margin_fraction=1.0 - w.gpu_memory_utilization)


class KVUsage:
    """Time-weighted mean and peak share of KV blocks in use, per replica, over one episode.

    Allocation changes only when a replica schedules a batch (``ReplicaScheduleEvent``: admissions, growth,
    preemptions) or a batch ends (``BatchEndEvent``: frees), so the env records a replica after its own events
    only; the fast-forward records the values of the iterations it advances (``record_blocks``).
    """

    def __init__(self, replica_schedulers: list[Any], blocks: list[int]) -> None:
        self._schedulers = replica_schedulers
        self._blocks = [float(b) for b in blocks]
        n = len(blocks)
        self._usage = [0.0] * n
        self._since = [0.0] * n
        self._area = [0.0] * n
        self._peak = [0.0] * n
        self._last = 0.0

    def record(self, index: int, now: float) -> None:
        """Replica ``index``'s allocation just changed (or may have) at ``now``."""
        self.record_blocks(index, now, self._schedulers[index]._num_allocated_blocks)

    def record_blocks(self, index: int, now: float, allocated_blocks: int) -> None:
        """Replica ``index`` holds ``allocated_blocks`` from ``now`` on (times per replica never decrease)."""
        self._area[index] += self._usage[index] * (now - self._since[index])
        self._since[index] = now
        usage = allocated_blocks / self._blocks[index]
        self._usage[index] = usage
        if usage > self._peak[index]:
            self._peak[index] = usage
        if now > self._last:
            self._last = now

    def summary(self) -> dict[str, list[float]]:
        end = self._last
        area = [a + u * (end - t) for a, u, t in zip(self._area, self._usage, self._since)]
        mean = [a / end for a in area] if end > 0 else area
        return {"kv_usage_mean": mean, "kv_usage_peak": list(self._peak)}
