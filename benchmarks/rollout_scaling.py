"""Rollout scaling: sampling env steps/s of the PPO routing policy with 1, 2, ... env runners, as speed-up over one.

Each configuration builds the env runners ``warmroute train`` builds (``build_ppo_config``: remote
``SingleAgentEnvRunner``\\ s with the routing module, exploring, the CPUs it asks per runner), samples one
warm-up round, then times ``--rounds`` rounds in which every runner samples ``--steps-per-runner`` env steps in
parallel. A round's rate is its total env steps over its wall time; the figure is the median over rounds, and the
ratio is to the 1-runner median of the same run. Learner time is excluded: this is the side that scales with runners.

Where the runners run:
  --cluster local      this machine (``ray.init(address="local")`` with one CPU per core)
  --cluster multinode  a ``ray.cluster_utils.Cluster`` on this machine: a head with 0 CPUs and ``--nodes`` workers of
                       ``--cpus-per-node`` CPUs (the runners spread over the worker nodes' raylets and object stores)
  --address ADDR       an existing cluster, e.g. a larger machine after ``ray start --head`` (``--address auto``)

Run:
    python benchmarks/rollout_scaling.py                                        # runners 1,2 on this machine
    python benchmarks/rollout_scaling.py --cluster multinode --nodes 2          # two 1-CPU worker nodes
    python benchmarks/rollout_scaling.py --address auto --runners 1,2,4,8,16,32 # a 32+ core machine or cluster

Expect (2-core x86 VM, quiet; docs/cluster.md): local 318 -> 577 env steps/s, ratio 1.81 (target >= 1.6);
multinode (2 workers x 1 CPU) 2 runners 560 env steps/s, ratio 1.89. Under load from other jobs (load average
10-20) the second runner finds no idle core: 137 -> 107 (0.78).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from functools import partial

import ray
from ray.rllib.env.env_runner import EnvRunner
from ray.rllib.env.env_runner_group import EnvRunnerGroup

from envs.sim.simulation import quiet_vidur_logging
from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig
from rllib_ext.train_config import TrainConfig, build_ppo_config, default_model_config


def _sample(runner: EnvRunner, num_timesteps: int) -> int:
    return sum(len(episode) for episode in runner.sample(num_timesteps=num_timesteps, explore=True))


def sampling_rate(num_runners: int, steps_per_runner: int, rounds: int, num_requests: int, seed: int) -> float:
    """Median env steps/s over ``rounds`` parallel sampling rounds of ``num_runners`` remote env runners."""
    cfg = TrainConfig(
        env=VidurEnvConfig(workload=preset("default").replace(num_requests=num_requests)), num_env_runners=num_runners, seed=seed
    )
    runners = EnvRunnerGroup(config=build_ppo_config(cfg, default_model_config(cfg), None), local_env_runner=False)
    sample = partial(_sample, num_timesteps=steps_per_runner)
    try:
        runners.foreach_env_runner(sample, local_env_runner=False)  # warm-up: module build, first episodes
        rates = []
        for _ in range(rounds):
            start = time.perf_counter()
            steps = sum(runners.foreach_env_runner(sample, local_env_runner=False))
            rates.append(steps / (time.perf_counter() - start))
        return statistics.median(rates)
    finally:
        runners.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = os.cpu_count() or 1
    parser.add_argument("--runners", default=",".join(str(n) for n in (1, 2, 4, 8, 16, 32) if n <= max(2, cores)))
    parser.add_argument("--cluster", choices=("local", "multinode"), default="local")
    parser.add_argument("--nodes", type=int, default=2, help="multinode: worker nodes")
    parser.add_argument("--cpus-per-node", type=int, default=1, help="multinode: CPUs per worker node")
    parser.add_argument("--address", default=None, help="join this running cluster instead (e.g. auto)")
    parser.add_argument("--steps-per-runner", type=int, default=1024, help="env steps per runner per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--num-requests", type=int, default=256, help="requests per episode")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runners = [int(n) for n in args.runners.split(",")]
    if runners[0] != 1 or min(runners) < 1:
        parser.error("--runners must start at 1 (the baseline of the ratios) and be positive")
    quiet_vidur_logging()
    cluster = None
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
        where = f"cluster at {args.address}"
    elif args.cluster == "multinode":
        from ray.cluster_utils import Cluster

        scratch = tempfile.mkdtemp(prefix="wr-bench-", dir="/tmp")
        os.environ.setdefault("RAY_TMPDIR", scratch)  # this cluster's sessions and address file stay out of /tmp/ray
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        for _ in range(args.nodes):
            cluster.add_node(num_cpus=args.cpus_per_node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        where = f"local multi-node cluster: head 0 CPUs + {args.nodes} workers x {args.cpus_per_node} CPU"
    else:
        ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False)
        where = f"this machine ({cores} cores)"
    try:
        print(f"{where}; {args.steps_per_runner} steps per runner per round, median of {args.rounds} rounds")
        rates: dict[int, float] = {}
        for n in runners:
            rates[n] = sampling_rate(n, args.steps_per_runner, args.rounds, args.num_requests, args.seed)
            print(
                f"{n:>3} env runners: {rates[n]:8.0f} env steps/s   speed-up over 1 runner {rates[n] / rates[1]:.2f}", flush=True
            )
        print(f"ratio {runners[-1]} vs 1 runners: {rates[runners[-1]] / rates[1]:.2f}")
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
