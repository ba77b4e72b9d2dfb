"""What one env step costs at 4, 8 and 16 replicas: raw env decisions/s and PPO env steps/s, as ratios to 4.

Env: each fleet's preset (``mooncake``, ``mooncake_8``, ``mooncake_16``: 85% load, 512 / 1000 / 1000-request
held-out windows) driven by ``least_ttft:queue_weight=0.5`` with fast-forward (the default), one warm-up episode
each, then ``--repeats`` rounds that visit the fleets in turn (4, 8, 16, then 16, 8, 4, ...) so a change in the
machine's load hits every fleet alike; the figure is the median decisions/s. PPO: the ``warmroute train`` config
(scorer module, ``--num-env-runners 0`` so sampling and learning share this process, train batch 1024,
minibatch 256, 5 epochs) built per fleet; one warm-up iteration, then ``--iterations`` timed iterations, fleets
again interleaved; the figure is env steps sampled over wall time.

Run:
    PYTHONPATH=$PWD .venv/bin/python benchmarks/fleet_size_cost.py --repeats 3 --iterations 2

Expect (2-core x86 shared with other jobs, load average ~8): docs/generalization.md ("Cost per env step").
"""

from __future__ import annotations

import argparse
import statistics
import time

import ray

from envs.evaluation.evaluate import HeuristicPolicy
from envs.sim.simulation import quiet_vidur_logging
from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv
from rllib_ext.train_config import PPOSettings, TrainConfig, build_ppo_config, default_model_config

FLEETS = {4: "mooncake", 8: "mooncake_8", 16: "mooncake_16"}
ROUTER = "least_ttft:queue_weight=0.5"


def env_rate(name: str, start: int) -> float:
    """Decisions/s of one episode (window ``start``) of preset ``name``, reset included."""
    env = VidurRoutingEnv(VidurEnvConfig(workload=preset(name).replace(trace_start=start)))
    policy = HeuristicPolicy(ROUTER, env.layout)
    begin = time.perf_counter()
    obs, _ = env.reset(seed=0)
    done, steps = False, 0
    while not done:
        obs, _, done, _, _ = env.step(policy.act(obs))
        steps += 1
    return steps / (time.perf_counter() - begin)


def build(name: str):
    """PPO on preset ``name`` as ``warmroute train`` builds it, sampling in this process."""
    cfg = TrainConfig(
        env=VidurEnvConfig(workload=preset(name).replace(trace_start=2000), reward_scale_s=10.0),
        ppo=PPOSettings(train_batch_size=1024, minibatch_size=256),
        num_env_runners=0,
    )
    return build_ppo_config(cfg, default_model_config(cfg), None).build_algo()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="env rounds per fleet")
    parser.add_argument("--iterations", type=int, default=2, help="timed PPO iterations per fleet")
    args = parser.parse_args()
    quiet_vidur_logging()
    order = [n for r in range(args.repeats) for n in (FLEETS if r % 2 == 0 else reversed(FLEETS))]
    for n in FLEETS:
        env_rate(FLEETS[n], 9000)  # warm-up: imports, trace parsing, first lead-in
    env: dict[int, list[float]] = {n: [] for n in FLEETS}
    for k, n in enumerate(order):
        env[n].append(env_rate(FLEETS[n], (9000, 10000, 11000)[k // len(FLEETS) % 3]))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        algos = {n: build(name) for n, name in FLEETS.items()}
        for algo in algos.values():
            algo.train()  # warm-up
        steps = dict.fromkeys(FLEETS, 0)
        wall = dict.fromkeys(FLEETS, 0.0)
        for i in range(args.iterations):
            for n in FLEETS if i % 2 == 0 else reversed(FLEETS):
                begin = time.perf_counter()
                result = algos[n].train()
                wall[n] += time.perf_counter() - begin
                steps[n] += result["env_runners"]["num_env_steps_sampled"]
        for algo in algos.values():
            algo.stop()
    finally:
        ray.shutdown()
    print("| replicas | env decisions/s | env cost per step vs 4 | PPO env steps/s | PPO cost per step vs 4 |")
    print("|---|---|---|---|---|")
    base_env, base_ppo = statistics.median(env[4]), steps[4] / wall[4]
    for n in FLEETS:
        e, p = statistics.median(env[n]), steps[n] / wall[n]
        print(f"| {n} | {e:.0f} | {base_env / e:.2f}x | {p:.0f} | {base_ppo / p:.2f}x |")


if __name__ == "__main__":
    main()
