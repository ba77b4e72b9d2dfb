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

from envs.evaluation.evaluate import HeuristicPolicy, Policy, play_episode
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
    base_p90_ttft_s: float = float("nan")
    lookahead_p90_ttft_s: float = float("nan")
    base_slo_attainment: float | None = None
    """Share of the base router's requests that met the workload's SLOs (None without SLOs)."""
    lookahead_slo_attainment: float | None = None
    labels: LookaheadLabels | None = None
    """Every decision of the lookahead episode (``record=True`` only)."""


@dataclass(frozen=True)
class LookaheadLabels:
    """The lookahead's decisions on one episode, in order: the states it saw and what it and the base chose."""

    obs: np.ndarray
    """(decisions, obs dim) float32 observations."""
    action: np.ndarray
    """The lookahead's choice (the label)."""
    base_action: np.ndarray
    best: np.ndarray
    """(decisions, replicas) bool: the replicas whose return equals the best (all of them are right answers)."""
    reward: np.ndarray
    """Env reward of each step actually taken."""
    returns: np.ndarray
    """(decisions, replicas) float64: the return each replica's rollout reached (what cost-weighted cloning reads)."""


def _return_after(env: VidurRoutingEnv, policy: Policy, action: int, horizon: int | None = None) -> float:
    """Return from here if ``action`` is taken now and ``policy`` afterwards, to the end of the episode or over
    ``horizon`` decisions in all, computed in a forked child."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: play the episode out and send the return; it must never return into the parent's code
        status = 1
        try:
            os.close(read_end)
            obs, total, done, *_ = env.step(action)
            steps = 1
            while not done and (horizon is None or steps < horizon):
                obs, reward, done, *_ = env.step(policy.act(obs))
                total += reward
                steps += 1
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


def lookahead_episode(
    env_config: VidurEnvConfig,
    base: str | Policy,
    seed: int,
    horizon: int | None = None,
    record: bool = False,
    driver: Policy | None = None,
) -> LookaheadResult:
    """Mean e2e latency, p90 TTFT (and SLO attainment, when the workload sets SLOs) of router ``base`` and of its
    clairvoyant one-step lookahead on the episode ``seed``; the lookahead maximises the env's reward (``--reward
    slo``: SLOs met; ``ttft``: time to first token), over ``horizon`` decisions or to the end (None).

    With a ``driver`` the episode follows the driver's choices while the lookahead's are recorded as labels: the
    states are the driver's own, as DAgger needs; the "lookahead" figures are then the driver's episode."""
    if not hasattr(os, "fork"):
        raise OSError("the lookahead forks the simulator: it needs a POSIX system (Linux or macOS)")
    if horizon is not None and horizon < 1:
        raise ValueError(f"horizon must be >= 1 decision or None (got {horizon})")
    start = time.perf_counter()
    env = VidurRoutingEnv(env_config)
    policy = HeuristicPolicy(base, env_config.layout) if isinstance(base, str) else base
    play_episode(env, policy, seed)
    base_requests = env.routed_requests
    w = env_config.workload
    base_lat = request_latencies(base_requests)
    base_slo = slo_summary(base_lat, w.slo_ttft_s, w.slo_tbt_s).get("slo_attainment")
    waiting = float(np.mean([r.scheduling_delay for r in base_requests]))
    policy.reset(seed)
    if driver is not None:
        driver.reset(seed)
    obs, _ = env.reset(seed=seed)
    done = False
    seen, chosen, bases, bests, rewards, all_returns = [], [], [], [], [], []
    while not done:
        base_action = policy.act(obs)
        returns = np.array([_return_after(env, policy, a, horizon) for a in range(w.num_replicas)])
        best = int(np.argmax(returns))
        if returns[best] <= returns[base_action]:  # ties keep the base action
            best = base_action
        if record:
            seen.append(np.asarray(obs, dtype=np.float32))
            bests.append(returns >= returns[best])
            all_returns.append(returns)
        chosen.append(best)
        bases.append(base_action)
        obs, reward, done, _, _ = env.step(best if driver is None else driver.act(obs))
        rewards.append(reward)
    lat = request_latencies(env.routed_requests)
    chosen_a, bases_a = np.array(chosen), np.array(bases)
    labels = None
    if record:
        labels = LookaheadLabels(np.stack(seen), chosen_a, bases_a, np.stack(bests), np.array(rewards), np.stack(all_returns))
    return LookaheadResult(
        seed=seed,
        base_mean_e2e_s=float(base_lat["e2e"].mean()),
        base_scheduling_delay_s=waiting,
        lookahead_mean_e2e_s=float(lat["e2e"].mean()),
        changed_fraction=float(np.mean(chosen_a != bases_a)),
        seconds=time.perf_counter() - start,
        base_p90_ttft_s=float(np.percentile(base_lat["ttft"], 90)),
        lookahead_p90_ttft_s=float(np.percentile(lat["ttft"], 90)),
        base_slo_attainment=base_slo,
        lookahead_slo_attainment=slo_summary(lat, w.slo_ttft_s, w.slo_tbt_s).get("slo_attainment"),
        labels=labels,
    )
