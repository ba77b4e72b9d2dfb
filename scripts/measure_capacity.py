"""Measure each workload preset's capacity: completed requests per second when the cluster is saturated.

A cluster's capacity is the sum of its replicas' capacities, and one replica's capacity is its throughput
``num_requests / (last completion - first arrival)`` when the preset's request stream arrives at a flood rate.
(Flooding the whole fleet through one router would measure the router: on a mixed fleet an even split leaves the
fast GPUs idle while the slow ones drain.) The presets' ``qps`` are ``LOAD_FACTOR`` (85%) of these numbers;
docs/workloads.md records the table.

Run:
    .venv/bin/python scripts/measure_capacity.py                 # all presets, 2000 requests, 3 seeds
    .venv/bin/python scripts/measure_capacity.py --presets heterogeneous --num-requests 1000

Expect (2-core x86 machine, roofline predictor, under a minute): see the table in docs/workloads.md.
"""

from __future__ import annotations

import argparse

import numpy as np

from envs.evaluation import HeuristicPolicy, evaluate_policy
from envs.vidur_env import VidurEnvConfig
from envs.workload import LOAD_FACTOR, PRESETS, WorkloadConfig

FLOOD_QPS = 2000.0


def replica_capacity(workload: WorkloadConfig, device: str, seeds: list[int]) -> float:
    """Saturated throughput (requests/s) of one ``device`` replica on ``workload``'s lengths, mean over ``seeds``."""
    single = workload.replace(
        num_replicas=1, device=device, replica_devices=(), qps=FLOOD_QPS, arrival="poisson",
        num_requests=max(1, workload.num_requests // workload.num_replicas),
    )
    flood = VidurEnvConfig(workload=single)
    policy = HeuristicPolicy("round_robin", flood.layout)
    return float(np.mean([evaluate_policy(policy, flood, [seed])["throughput_rps"] for seed in seeds]))


def measure_capacity(workload: WorkloadConfig, seeds: list[int]) -> float:
    """Capacity (requests/s) of ``workload``'s cluster: the sum of its replicas' saturated throughputs."""
    per_device = {device: replica_capacity(workload, device, seeds) for device in set(workload.devices)}
    return sum(per_device[device] for device in workload.devices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated preset names")
    parser.add_argument("--num-requests", type=int, default=2000, help="requests per flood episode")
    parser.add_argument("--seeds", type=int, default=3, help="episodes averaged per preset")
    args = parser.parse_args()
    print(f"{'preset':<16}{'capacity req/s':>16}{f'{LOAD_FACTOR:.0%} load qps':>16}{'preset qps':>12}")
    for name in args.presets.split(","):
        workload = PRESETS[name].replace(num_requests=args.num_requests)
        capacity = measure_capacity(workload, seeds=list(range(args.seeds)))
        print(f"{name:<16}{capacity:>16.2f}{LOAD_FACTOR * capacity:>16.2f}{PRESETS[name].qps:>12.2f}")


if __name__ == "__main__":
    main()
