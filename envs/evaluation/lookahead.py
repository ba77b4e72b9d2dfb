"""Clairvoyant one-step lookahead over a heuristic router: an estimate of how much any router could gain.

At every routing decision the episode is forked once per replica. Each child routes the waiting request to its
replica, then follows the base heuristic to the end of the episode on the *true* future arrivals (vidur generates
the whole trace at reset, so a forked simulator holds it), and reports the exact return. The parent routes to the
best replica. This is one step of policy improvement (a "rollout" policy, Bertsekas) that also sees the future.
Because the episode is deterministic given its seed and the base router is deterministic, it is never worse than
the base router. A router limited to the observation cannot know the arrivals and sizes to come, so its gain
over the base is a generous estimate of the headroom a learned router has to find (not a proof: repeated
improvement steps could gain more).

``os.fork`` copies the simulator (vidur's native entities cannot be deep-copied): POSIX only.
"""

from __future__ import annotations

import os
import struct
import time
import traceback
from dataclasses import dataclass

import numpy as np

from envs.evaluation.evaluate import HeuristicPolicy
from envs.sim.metrics import request_latencies
from envs.sim.slo import slo_summary
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv


@dataclass(frozen=True)
class LookaheadResult:
    seed: int
    base_mean_e2e_s: float
    base_scheduling_delay_s: float
    """Mean wait of the base router's requests for their first batch; the rest of e2e is batched execution."""
    lookahead_mean_e2e_s: float
    changed_fraction: float
    """Fraction of decisions where the lookahead overrides the base router."""
    seconds: float
    base_slo_attainment: float | None = None
    """Share of the base router's requests that met the workload's SLOs (None without SLOs)."""
    lookahead_slo_attainment: float | None = None


def _return_after(env: VidurRoutingEnv, policy: HeuristicPolicy, action: int) -> float:
    """Episode return from here if ``action`` is taken now and ``policy`` afterwards, computed in a forked child."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: play the episode out and send the return; it must never return into the parent's code
        status = 1
        try:
            os.close(read_end)
            obs, total, done, *_ = env.step(action)
            while not done:
                obs, reward, done, *_ = env.step(policy.act(obs))
                total += reward
            os.write(write_end, struct.pack("d", total))
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)  # also when it raised: skips the parent's cleanup and the rest of its program
    os.close(write_end)
    data = os.read(read_end, 8)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if len(data) != 8:
        raise RuntimeError(
            f"a lookahead child process failed before reporting its return (exit status {status >> 8}; its traceback is above)"
        )
    return struct.unpack("d", data)[0]


def _run_base(env: VidurRoutingEnv, policy: HeuristicPolicy, seed: int) -> list:
    policy.reset(seed)
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
        obs, _, done, _, _ = env.step(policy.act(obs))
    return env.routed_requests


def lookahead_episode(env_config: VidurEnvConfig, base: str, seed: int) -> LookaheadResult:
    """Mean e2e latency (and SLO attainment, when the workload sets SLOs) of router ``base`` and of its clairvoyant
    one-step lookahead on the episode ``seed``; the lookahead maximises the env's reward (``--reward slo``: SLOs met)."""
    if not hasattr(os, "fork"):
        raise OSError("the lookahead forks the simulator: it needs a POSIX system (Linux or macOS)")
    start = time.perf_counter()
    env = VidurRoutingEnv(env_config)
    policy = HeuristicPolicy(base, env_config.layout)
    base_requests = _run_base(env, policy, seed)
    w = env_config.workload
    base_lat = request_latencies(base_requests)
    base_latency = float(base_lat["e2e"].mean())
    base_slo = slo_summary(base_lat, w.slo_ttft_s, w.slo_tbt_s).get("slo_attainment")
    waiting = float(np.mean([r.scheduling_delay for r in base_requests]))
    policy.reset(seed)
    obs, _ = env.reset(seed=seed)
    done, changed, decisions = False, 0, 0
    while not done:
        base_action = policy.act(obs)
        returns = [_return_after(env, policy, a) for a in range(env_config.workload.num_replicas)]
        best = int(np.argmax(returns))
        if returns[best] <= returns[base_action]:  # ties keep the base action
            best = base_action
        changed += best != base_action
        obs, _, done, _, _ = env.step(best)
        decisions += 1
    lat = request_latencies(env.routed_requests)
    return LookaheadResult(
        seed=seed,
        base_mean_e2e_s=base_latency,
        base_scheduling_delay_s=waiting,
        lookahead_mean_e2e_s=float(lat["e2e"].mean()),
        changed_fraction=changed / decisions,
        seconds=time.perf_counter() - start,
        base_slo_attainment=base_slo,
        lookahead_slo_attainment=slo_summary(lat, w.slo_ttft_s, w.slo_tbt_s).get("slo_attainment"),
    )
