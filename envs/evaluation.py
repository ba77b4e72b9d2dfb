"""Run routing policies through the env on held-out seeds and report latency, throughput and balance.

A policy is anything with ``reset(seed)`` and ``act(obs) -> int``: heuristics here, RLlib checkpoints in
``rllib_ext``. Every policy sees the same request streams (same seeds), so differences are the router's alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from envs.heuristics import make_router
from envs.metrics import request_latencies, summarize
from envs.observation import ObservationLayout
from envs.vidur_env import HELD_OUT_SEED_BASE, VidurEnvConfig, VidurRoutingEnv


class Policy(Protocol):
    name: str

    def reset(self, seed: int) -> None: ...

    def act(self, obs: np.ndarray) -> int: ...


class HeuristicPolicy:
    """A heuristic router with its own RNG, reseeded per episode so ``random``/``power_of_two`` are reproducible."""

    def __init__(self, name: str, layout: ObservationLayout) -> None:
        self.name = name
        self._router = make_router(name, layout)
        self._rng = np.random.default_rng(0)

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> int:
        return int(self._router(obs[None, :], self._rng)[0])


def evaluation_seeds(base_seed: int, episodes: int) -> list[int]:
    """Request seeds never drawn by training episodes (those are all below ``HELD_OUT_SEED_BASE``)."""
    return [HELD_OUT_SEED_BASE + base_seed * 10_000 + k for k in range(episodes)]


def evaluate_policy(
    policy: Policy, env_config: VidurEnvConfig, seeds: Sequence[int], progress: tqdm | None = None
) -> dict[str, Any]:
    """Metrics of ``policy`` pooled over one episode per seed (percentiles over all requests)."""
    env = VidurRoutingEnv(env_config)
    latencies: list[dict[str, np.ndarray]] = []
    throughputs: list[float] = []
    counts = np.zeros(env_config.workload.num_replicas, dtype=np.int64)
    decisions = 0
    busy_s = 0.0
    for seed in seeds:
        policy.reset(seed)
        obs, _ = env.reset(seed=seed)
        done = False
        start = time.perf_counter()
        while not done:
            action = policy.act(obs)
            counts[action] += 1
            obs, _, done, _, info = env.step(action)
            decisions += 1
        busy_s += time.perf_counter() - start
        latencies.append(request_latencies(env.routed_requests))
        throughputs.append(info["throughput_rps"])
        if progress is not None:
            progress.update(1)
    pooled = {key: np.concatenate([lat[key] for lat in latencies]) for key in latencies[0]}
    result = summarize(pooled, counts)
    result["throughput_rps"] = float(np.mean(throughputs))  # per-episode spans: pooling would mix time axes
    result["decisions_per_s"] = decisions / busy_s if busy_s > 0 else 0.0
    result["episodes"] = len(seeds)
    result["seeds"] = list(seeds)
    return result


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Fixed-width table, one row per policy, sorted by mean end-to-end latency."""
    header = f"{'policy':<30}{'mean e2e':>10}{'p50 e2e':>10}{'p99 e2e':>10}{'mean ttft':>11}{'p50 ttft':>10}" \
             f"{'p90 ttft':>10}{'p99 ttft':>10}{'tbt ms':>8}{'hit %':>7}{'req/s':>8}{'balance':>9}{'dec/s':>8}"
    rows = [header, "-" * len(header)]
    for name, r in sorted(results.items(), key=lambda item: item[1]["mean_e2e_s"]):
        rows.append(
            f"{name if len(name) <= 29 else '...' + name[-26:]:<30}{r['mean_e2e_s']:>10.3f}{r['p50_e2e_s']:>10.3f}{r['p99_e2e_s']:>10.3f}"
            f"{r['mean_ttft_s']:>11.3f}{r['p50_ttft_s']:>10.3f}{r['p90_ttft_s']:>10.3f}{r['p99_ttft_s']:>10.3f}"
            f"{1000 * r['mean_tbt_s']:>8.1f}{100 * r['cache_hit_rate']:>7.1f}{r['throughput_rps']:>8.2f}{r['balance_score']:>9.3f}{r['decisions_per_s']:>8.0f}"
        )
    return "\n".join(rows)
