"""How much better than a heuristic can any router be? A clairvoyant one-step lookahead estimate.

At every routing decision the episode is forked once per replica. Each child routes the waiting request to its
replica, then follows the base heuristic to the end of the episode on the *true* future arrivals (vidur generates
the whole trace up front, so a forked simulator knows it), and reports the exact total latency of the episode's
remaining requests. The parent routes to the best replica and moves on. This is one step of policy improvement
(a "rollout" policy) that also sees the future: a router limited to the observation cannot know the arrivals
and sizes to come, so what this gains over the base heuristic is a generous estimate of the headroom a learned
router has to find. It is an estimate, not a proof: repeated improvement steps could gain more.

``os.fork`` copies the simulator (vidur's native entities cannot be deep-copied), so this runs on Linux/macOS only.

Run:
    .venv/bin/python scripts/lookahead_headroom.py --workload heterogeneous --episodes 2   # ~25 min per episode and core

Expect (2-core x86, heterogeneous, base speed_aware): the lookahead changes about 1 decision in 20 and ends about
1% better than speed_aware per episode (docs/warm_start.md, "Headroom").
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from envs.evaluation import HeuristicPolicy, evaluation_seeds
from envs.metrics import request_latencies
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv
from envs.workload import preset


def _return_after(env: VidurRoutingEnv, policy: HeuristicPolicy, action: int) -> float:
    """Episode return from here if ``action`` is taken now and ``policy`` afterwards, computed in a forked child."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: play the episode out, send the return, exit without running the parent's cleanup
        os.close(read_end)
        obs, total, done, *_ = env.step(action)
        while not done:
            obs, reward, done, *_ = env.step(policy.act(obs))
            total += reward
        os.write(write_end, struct.pack("d", total))
        os._exit(0)
    os.close(write_end)
    data = os.read(read_end, 8)
    os.close(read_end)
    os.waitpid(pid, 0)
    if len(data) != 8:
        raise RuntimeError("a lookahead child process died before reporting its return")
    return struct.unpack("d", data)[0]


def lookahead_episode(workload: str, base: str, seed: int) -> dict[str, float]:
    """Mean e2e latency of ``base`` and of its clairvoyant one-step lookahead on one episode."""
    env_config = VidurEnvConfig(workload=preset(workload))
    env = VidurRoutingEnv(env_config)
    policy = HeuristicPolicy(base, env_config.layout)
    policy.reset(seed)
    obs, _ = env.reset(seed=seed)
    done, changed, decisions, start = False, 0, 0, time.perf_counter()
    while not done:
        base_action = policy.act(obs)
        returns = [_return_after(env, policy, a) for a in range(env_config.workload.num_replicas)]
        best = int(np.argmax(returns))
        if returns[best] <= returns[base_action]:  # keep the base action on ties
            best = base_action
        changed += best != base_action
        obs, _, done, _, _ = env.step(best)
        decisions += 1
    lookahead = float(request_latencies(env.routed_requests)["e2e"].mean())
    policy.reset(seed)
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
        obs, _, done, _, _ = env.step(policy.act(obs))
    baseline = float(request_latencies(env.routed_requests)["e2e"].mean())
    return {"seed": seed, "base_mean_e2e_s": baseline, "lookahead_mean_e2e_s": lookahead,
            "changed_fraction": changed / decisions, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="heterogeneous", help="workload preset")
    parser.add_argument("--base", default="speed_aware", help="heuristic the lookahead improves on")
    parser.add_argument("--episodes", type=int, default=2, help="held-out seeds, one process each")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="episodes run in parallel")
    args = parser.parse_args()
    if sys.platform == "win32":
        parser.error("needs os.fork (Linux or macOS)")
    seeds = evaluation_seeds(0, args.episodes)
    print(f"{args.workload}: clairvoyant one-step lookahead over {args.base}, {len(seeds)} episode(s) "
          f"(each takes minutes)", flush=True)
    with ProcessPoolExecutor(min(args.workers, len(seeds))) as pool:
        rows = list(pool.map(lookahead_episode, [args.workload] * len(seeds), [args.base] * len(seeds), seeds))
    for row in rows:
        print(f"seed {row['seed']}: {args.base} {row['base_mean_e2e_s']:.3f} s, lookahead {row['lookahead_mean_e2e_s']:.3f} s "
              f"({row['lookahead_mean_e2e_s'] / row['base_mean_e2e_s'] - 1:+.2%}), decisions changed "
              f"{row['changed_fraction']:.1%}, {row['seconds']:.0f} s")
    base = np.mean([r["base_mean_e2e_s"] for r in rows])
    ahead = np.mean([r["lookahead_mean_e2e_s"] for r in rows])
    print(f"mean over episodes: {args.base} {base:.3f} s, lookahead {ahead:.3f} s ({ahead / base - 1:+.2%})")


if __name__ == "__main__":
    main()
