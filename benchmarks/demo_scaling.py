"""Demonstration throughput (routing decisions/s) with 1, 2, ... env runners, printed as ratios to 1 runner.

Each configuration collects the same number of decisions *per runner* with the ``least_outstanding`` teacher on
the default workload; the clock covers sampling only (runner start-up is excluded: it is paid once per
collection, not per decision). One warm-up round per configuration.

Run:
    .venv/bin/python benchmarks/demo_scaling.py                       # runners 1,2 (up to the machine's cores)
    .venv/bin/python benchmarks/demo_scaling.py --runners 1,2,4,8,15  # on a bigger machine

Expect (2-core x86): 2 runners about 1.7-1.9x one runner.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import ray

from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig
from rllib_ext.demos import DemoConfig, collect_demos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = os.cpu_count() or 1
    parser.add_argument("--runners", default=",".join(str(w) for w in (1, 2, 4, 8, 15) if w <= max(2, cores - 1)))
    parser.add_argument("--steps-per-runner", type=int, default=3072)
    parser.add_argument("--num-requests", type=int, default=512)
    args = parser.parse_args()
    runners = [int(w) for w in args.runners.split(",")]
    ray.init(address="local", num_cpus=max(max(runners), cores), include_dashboard=False, log_to_driver=False)
    env = VidurEnvConfig(workload=preset("default").replace(num_requests=args.num_requests))
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in runners:
            config = DemoConfig(
                env=env,
                teachers=("least_outstanding",),
                steps=args.steps_per_runner * w,
                num_env_runners=w,
                steps_per_round=512,
                seed=w,
            )
            rates[w] = collect_demos(config, Path(tmp) / f"w{w}", progress=False)["decisions_per_s"]
            print(f"{w:>3} env runners: {rates[w]:8.0f} decisions/s   ratio to 1 runner {rates[w] / rates[runners[0]]:.2f}")
    print(f"cores: {cores}; ratio {runners[-1]} vs {runners[0]} runners: {rates[runners[-1]] / rates[runners[0]]:.2f}")


if __name__ == "__main__":
    main()
