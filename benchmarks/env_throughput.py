"""Routing decisions per second of the env against vidur's own ``Simulator.run()`` on the same workload.

Baseline: vidur simulates the episode with its built-in ``lor`` global scheduler (one routing decision per request).
Candidate: ``VidurRoutingEnv`` driven by the ``least_outstanding`` heuristic, paying for every observation, the
policy call and the reward bookkeeping. Both run in this process, alternating, after one warm-up each, on the same
seeds; the figure of merit is the ratio of medians (target >= 0.9). Because simulation cost depends on routing
(vidur's ``lor`` piles work onto few replicas, so it simulates fewer batches), a like-for-like line also drives the
env with the ``lor`` heuristic, which reproduces vidur's run exactly: that ratio is the env's pure overhead.

Run:
    .venv/bin/python benchmarks/env_throughput.py                      # default preset, 512 requests, 5 repeats
    .venv/bin/python benchmarks/env_throughput.py --workload heterogeneous --repeats 3
    .venv/bin/python benchmarks/env_throughput.py --workload mooncake --num-requests 256 --repeats 3   # + caching on/off

Expect (2-core x86, roofline predictor): the env (fast-forward on, the default) is several times faster than
vidur's own run; fast-forward on/off (same router, same seeds, identical latencies) >= 3x on default,
heterogeneous and long_context and >= 5x on mooncake (figures in docs/environment.md).
On a prefix-sharing preset it also prints decisions/s with prefix caching on and off and their cost ratio
(docs/prefix_caching.md has the measured figures).
"""

from __future__ import annotations

import argparse
import statistics
import time

from envs.evaluation.evaluate import HeuristicPolicy
from envs.sim.simulation import new_simulator
from envs.sim.workload import WorkloadConfig, preset
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv


def vidur_decisions_per_s(workload: WorkloadConfig, seed: int) -> float:
    start = time.perf_counter()  # simulator construction counted on both sides (the env builds one per reset)
    sim = new_simulator(workload, seed, global_scheduler="lor")
    sim.run()
    return workload.num_requests / (time.perf_counter() - start)


def env_decisions_per_s(
    workload: WorkloadConfig, seed: int, router: str = "least_outstanding", fast_forward: bool | None = None
) -> float:
    env = VidurRoutingEnv(VidurEnvConfig(workload=workload, fast_forward=fast_forward))
    policy = HeuristicPolicy(router, env.layout)
    start = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    done, steps = False, 0
    while not done:
        obs, _, done, _, _ = env.step(policy.act(obs))
        steps += 1
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="default")
    parser.add_argument("--num-requests", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    workload = preset(args.workload).replace(num_requests=args.num_requests)
    vidur_decisions_per_s(workload, seed=0)  # warm-up: imports, predictor caches
    env_decisions_per_s(workload, seed=0)
    router = "weighted_scorer" if workload.has_prefix else "least_outstanding"
    vidur, env, env_lor, stepped, fast_forwarded = [], [], [], [], []
    for seed in range(1, args.repeats + 1):
        vidur.append(vidur_decisions_per_s(workload, seed))
        env.append(env_decisions_per_s(workload, seed))
        env_lor.append(env_decisions_per_s(workload, seed, router="lor"))
        # off and on back to back with the same seed, so both see the same machine load
        stepped.append(env_decisions_per_s(workload, seed, router=router, fast_forward=False))
        fast_forwarded.append(env_decisions_per_s(workload, seed, router=router))
    fast = statistics.median(fast_forwarded)
    baseline, candidate, same = statistics.median(vidur), statistics.median(env), statistics.median(env_lor)
    step_rate = statistics.median(stepped)
    print(f"workload {args.workload}, {args.num_requests} requests, {args.repeats} repeats (medians)")
    print(f"{'vidur Simulator.run, lor':<40}{baseline:8.0f} decisions/s")
    print(f"{'VidurRoutingEnv, least_outstanding':<40}{candidate:8.0f} decisions/s")
    print(f"{'VidurRoutingEnv, lor (same routing)':<40}{same:8.0f} decisions/s")
    print(f"ratio env(least_outstanding)/vidur(lor)  {candidate / baseline:.3f}")
    print(f"ratio env(lor)/vidur(lor)                {same / baseline:.3f}")
    print(f"{'VidurRoutingEnv, ' + router + ', stepped':<40}{step_rate:8.0f} decisions/s")
    print(f"{'VidurRoutingEnv, ' + router + ', fast-fwd':<40}{fast:8.0f} decisions/s")
    print(f"ratio fast-forward on/off                {fast / step_rate:.3f}")
    if workload.has_prefix:
        caching_cost(workload, args.repeats)


def caching_cost(workload: WorkloadConfig, repeats: int) -> None:
    """Decisions/s of the env with prefix caching on and off (same stream, same router); target cost <= 1.2x.

    Caching changes the simulation itself (hits remove prefill chunks, so fewer batches), so the ratio is the
    whole effect of the cache on simulation speed, not its book-keeping alone.
    """
    on, off = [], []
    for seed in range(1, repeats + 1):
        on.append(env_decisions_per_s(workload.replace(prefix_caching=True), seed))
        off.append(env_decisions_per_s(workload.replace(prefix_caching=False), seed))
    on_rate, off_rate = statistics.median(on), statistics.median(off)
    print(f"{'VidurRoutingEnv, caching on':<40}{on_rate:8.0f} decisions/s")
    print(f"{'VidurRoutingEnv, caching off':<40}{off_rate:8.0f} decisions/s")
    print(f"cost ratio caching on/off (time)         {off_rate / on_rate:.3f}")


if __name__ == "__main__":
    main()
