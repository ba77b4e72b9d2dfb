"""Measure each workload preset's capacity: completed requests per second when the cluster is saturated.

A cluster's capacity is the sum of its replicas' capacities, and one replica's capacity is its throughput
``num_requests / (last completion - first arrival)`` when the preset's request stream arrives at a flood rate.
(Flooding the whole fleet through one router would measure the router: on a mixed fleet an even split leaves the
fast GPUs idle while the slow ones drain.) The presets' ``qps`` are ``LOAD_FACTOR`` (85%) of these numbers;
docs/workloads.md records the table.

Prefix-sharing presets (``prefix_workload`` set) are measured differently, because their capacity depends on the
router: the cache hits that cut prefill work come from routing requests to replicas that hold their prefix. The
whole fleet is flooded through each cache-aware router (cache-aware and production families with their defaults, and ``least_outstanding``) and the best throughput is the
capacity. A trace is flooded by shrinking its time scale. Multi-turn chats are a closed loop whose concurrency is
the number of sessions (128 sessions never saturate the fleet), so their flood uses 2-turn sessions, zero think
time: an approximation that keeps the reuse of one earlier turn.

Run:
    .venv/bin/python scripts/measure_capacity.py                 # all presets, 2000 requests, 3 seeds
    .venv/bin/python scripts/measure_capacity.py --presets heterogeneous --num-requests 1000
    .venv/bin/python scripts/measure_capacity.py --presets mooncake,shared_prefix,shared_prefix_mixed,multi_turn \
        --num-requests 1000 --seeds 1
    .venv/bin/python scripts/measure_capacity.py --presets mooncake_mixed --num-requests 800 --seeds 1   # 4.41 (least_ttft)

Expect (2-core x86 machine, roofline predictor, under a minute): see the table in docs/workloads.md.
"""

from __future__ import annotations

import argparse

import numpy as np

from envs.evaluation.evaluate import HeuristicPolicy, evaluate_policy
from envs.sim.workload import LOAD_FACTOR, PRESETS, WorkloadConfig
from envs.vidur_env import VidurEnvConfig

FLOOD_QPS = 2000.0


def replica_capacity(workload: WorkloadConfig, device: str, seeds: list[int]) -> float:
    """Saturated throughput (requests/s) of one ``device`` replica on ``workload``'s lengths, mean over ``seeds``."""
    single = workload.replace(
        num_replicas=1,
        device=device,
        replica_devices=(),
        qps=FLOOD_QPS,
        arrival="poisson",
        num_requests=max(1, workload.num_requests // workload.num_replicas),
    )
    flood = VidurEnvConfig(workload=single)
    policy = HeuristicPolicy("round_robin", flood.layout)
    return float(np.mean([evaluate_policy(policy, flood, [seed])["throughput_rps"] for seed in seeds]))


FLEET_ROUTERS = (
    "least_outstanding",
    "prefix_affinity",
    "weighted_scorer",
    "session_hash",
    "kv_cost",
    "sticky_load",
    "least_ttft",
)


def _flooded(workload: WorkloadConfig) -> WorkloadConfig:
    if workload.prefix_workload == "multi_turn":  # closed loop: concurrency is the session count, so raise it
        return workload.replace(qps=FLOOD_QPS, think_time_s=0.0, sessions=max(1, workload.num_requests // 2))
    if workload.prefix_workload == "shared_prefix":
        return workload.replace(qps=FLOOD_QPS)
    return workload.replace(trace_time_scale=1e-3)


def fleet_capacity(workload: WorkloadConfig, seeds: list[int]) -> tuple[float, str]:
    """Best saturated fleet throughput (requests/s) of a prefix-sharing workload over ``FLEET_ROUTERS``, and its router."""
    flood = VidurEnvConfig(workload=_flooded(workload))
    best = max(
        (
            float(
                np.mean(
                    [evaluate_policy(HeuristicPolicy(router, flood.layout), flood, [seed])["throughput_rps"] for seed in seeds]
                )
            ),
            router,
        )
        for router in FLEET_ROUTERS
    )
    return best


def measure_capacity(workload: WorkloadConfig, seeds: list[int]) -> tuple[float, str]:
    """Capacity (requests/s) of ``workload``'s cluster and how it was reached: the best router's saturated fleet
    throughput for a prefix workload, else the sum of its replicas' saturated throughputs."""
    if workload.has_prefix:
        return fleet_capacity(workload, seeds)
    per_device = {device: replica_capacity(workload, device, seeds) for device in set(workload.devices)}
    return sum(per_device[device] for device in workload.devices), "sum of replicas"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated preset names")
    parser.add_argument("--num-requests", type=int, default=2000, help="requests per flood episode")
    parser.add_argument("--seeds", type=int, default=3, help="episodes averaged per preset")
    parser.add_argument(
        "--trace-start", type=int, default=None, help="trace presets: first flooded request (default: the preset's)"
    )
    args = parser.parse_args()
    print(f"{'preset':<16}{'capacity req/s':>16}{f'{LOAD_FACTOR:.0%} load qps':>16}{'preset qps':>12}  best router")
    for name in args.presets.split(","):
        start = {"trace_start": args.trace_start} if args.trace_start is not None and PRESETS[name].is_trace else {}
        workload = PRESETS[name].replace(num_requests=args.num_requests, **start)
        capacity, how = measure_capacity(workload, seeds=list(range(args.seeds)))
        print(f"{name:<16}{capacity:>16.2f}{LOAD_FACTOR * capacity:>16.2f}{PRESETS[name].qps:>12.2f}  {how}", flush=True)


if __name__ == "__main__":
    main()
