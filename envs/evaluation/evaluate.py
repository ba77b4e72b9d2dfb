"""Run routing policies through the env on held-out seeds and report latency, throughput and balance.

A policy is anything with ``reset(seed)`` and ``act(obs) -> int``: heuristics here, RLlib checkpoints in
``rllib_ext``. Every policy sees the same request streams (same seeds), so differences are the router's alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from envs.errors import WarmRouteError
from envs.observation import ObservationLayout
from envs.routers.heuristics import make_router
from envs.sim.metrics import request_latencies, summarize
from envs.sim.slo import slo_summary
from envs.vidur_env import HELD_OUT_SEED_BASE, VidurEnvConfig, VidurRoutingEnv

PER_REQUEST = "per_request"
"""Key of the per-request arrays in an ``evaluate_policy(..., per_request=True)`` result."""
PER_REQUEST_KEYS = ("e2e_s", "ttft_s", "arrived_s", "prompt_tokens", "cached_tokens", "episode")


@dataclass(frozen=True)
class EvaluationConfig:
    """What ``warmroute evaluate`` runs: which policies, on how many held-out seeds, and how they act."""

    policies: tuple[str, ...]
    """Router names (see envs.routers.heuristics) and/or saved policy directories, comma-separated on the command line."""
    env: VidurEnvConfig = field(default_factory=VidurEnvConfig)
    """Routing env (workload, reward, observation)."""
    episodes: int = 5
    """Episodes (held-out seeds) per policy."""
    greedy: bool = False
    """Saved policies take their most likely action instead of sampling (heuristics are deterministic anyway)."""

    def __post_init__(self) -> None:
        if not self.policies:
            raise WarmRouteError("{flag:policies}: give at least one router name or saved policy directory")
        if self.episodes < 1:
            raise WarmRouteError(f"{{flag:episodes}} must be >= 1 (got {self.episodes})")

    @property
    def seeds(self) -> list[int]:
        return evaluation_seeds(self.env.workload.seed, self.episodes)


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


def play_episode(
    env: VidurRoutingEnv, policy: Policy, seed: int, observe: Callable[[np.ndarray, int], None] | None = None
) -> dict[str, Any]:
    """Reset ``env`` and ``policy`` with ``seed`` and route every request with ``policy``; ``observe(obs, action)``
    sees each decision before it is taken. Returns the last step's info (the episode's throughput, KV usage)."""
    policy.reset(seed)
    obs, _ = env.reset(seed=seed)
    done, info = False, {}
    while not done:
        action = policy.act(obs)
        if observe is not None:
            observe(obs, action)
        obs, _, done, _, info = env.step(action)
    return info


def evaluation_seeds(base_seed: int, episodes: int) -> list[int]:
    """Request seeds never drawn by training episodes (those are all below ``HELD_OUT_SEED_BASE``)."""
    return [HELD_OUT_SEED_BASE + base_seed * 10_000 + k for k in range(episodes)]


def evaluate_policy(
    policy: Policy,
    env_config: VidurEnvConfig,
    seeds: Sequence[int],
    progress: tqdm | None = None,
    *,
    per_request: bool = False,
) -> dict[str, Any]:
    """Metrics of ``policy`` pooled over one episode per seed (percentiles over all requests).

    ``per_request`` adds ``result[PER_REQUEST]``: each request's e2e latency, TTFT, arrival time (seconds), prompt
    and cached prompt tokens and episode index (numpy arrays in seed order) for latency CDFs and per-request plots. They are not JSON: :func:`save_latencies` moves them into an ``.npz``.
    """
    env = VidurRoutingEnv(env_config)
    latencies: list[dict[str, np.ndarray]] = []
    infos: list[dict[str, Any]] = []
    counts = np.zeros(env_config.workload.num_replicas, dtype=np.int64)
    busy_s = 0.0

    def count(_obs: np.ndarray, action: int) -> None:
        counts[action] += 1

    for seed in seeds:
        start = time.perf_counter()
        info = play_episode(env, policy, seed, count)
        busy_s += time.perf_counter() - start
        latencies.append(request_latencies(env.routed_requests))
        infos.append(info)
        if progress is not None:
            progress.update(1)
    pooled = {key: np.concatenate([lat[key] for lat in latencies]) for key in latencies[0]}
    result = summarize(pooled, counts)
    w = env_config.workload
    result.update(slo_summary(pooled, w.slo_ttft_s, w.slo_tbt_s))
    for key in ("throughput_rps", "goodput_rps"):  # per-episode spans: pooling would mix time axes
        if key in infos[0]:
            result[key] = float(np.mean([info[key] for info in infos]))
    result["kv_usage_mean"] = np.mean([info["kv_usage_mean"] for info in infos], axis=0).tolist()
    result["kv_usage_peak"] = np.max([info["kv_usage_peak"] for info in infos], axis=0).tolist()
    result["preemptions_per_episode"] = result.pop("preemptions") / len(seeds)
    result["decisions_per_s"] = int(counts.sum()) / busy_s if busy_s > 0 else 0.0
    result["episodes"] = len(seeds)
    result["seeds"] = list(seeds)
    if per_request:
        result[PER_REQUEST] = {
            "e2e_s": pooled["e2e"],
            "ttft_s": pooled["ttft"],
            "arrived_s": pooled["arrived"],
            "prompt_tokens": pooled["prompt"],
            "cached_tokens": pooled["cached"],  # > 0: a prefix-cache hit
            "episode": np.concatenate([np.full(len(lat["e2e"]), i) for i, lat in enumerate(latencies)]),
        }
    return result


def save_latencies(path: str | Path, results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Write every result's per-request arrays to ``path`` (``.npz``); return the results without them (JSON-safe).

    Layout: ``policies`` (names, in order) and ``<i>_e2e_s``, ``<i>_ttft_s`` for the i-th policy (policy names may
    hold any character, so they are not used as keys).
    """
    arrays: dict[str, np.ndarray] = {"policies": np.array(list(results), dtype=str)}
    for i, result in enumerate(results.values()):
        if PER_REQUEST not in result:
            raise ValueError("save_latencies needs results of evaluate_policy(..., per_request=True)")
        arrays.update({f"{i}_{key}": np.asarray(values) for key, values in result[PER_REQUEST].items()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return {name: {k: v for k, v in result.items() if k != PER_REQUEST} for name, result in results.items()}


def load_latencies(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Per policy: ``{"e2e_s": array, "ttft_s": array}`` as written by :func:`save_latencies`."""
    with np.load(path, allow_pickle=False) as data:
        return {
            str(name): {key: data[f"{i}_{key}"] for key in PER_REQUEST_KEYS if f"{i}_{key}" in data}
            for i, name in enumerate(data["policies"])
        }


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Fixed-width table, one row per policy: sorted by SLO attainment when an SLO is set, else by mean e2e."""
    with_slo = all("slo_attainment" in r for r in results.values())
    header = (
        f"{'policy':<30}{'mean e2e':>10}{'p50 e2e':>10}{'p99 e2e':>10}{'mean ttft':>11}{'p50 ttft':>10}"
        f"{'p90 ttft':>10}{'p99 ttft':>10}{'tbt ms':>8}{'hit %':>7}{'req/s':>8}{'balance':>9}{'preempt':>9}"
        f"{'peak kv':>9}{'dec/s':>8}"
    )
    header += f"{'slo %':>8}{'goodput':>9}" if with_slo else ""
    rows = [header, "-" * len(header)]
    order = (lambda item: -item[1]["slo_attainment"]) if with_slo else (lambda item: item[1]["mean_e2e_s"])
    for name, r in sorted(results.items(), key=order):
        row = (
            f"{name if len(name) <= 29 else '...' + name[-26:]:<30}{r['mean_e2e_s']:>10.3f}{r['p50_e2e_s']:>10.3f}{r['p99_e2e_s']:>10.3f}"
            f"{r['mean_ttft_s']:>11.3f}{r['p50_ttft_s']:>10.3f}{r['p90_ttft_s']:>10.3f}{r['p99_ttft_s']:>10.3f}"
            f"{1000 * r['mean_tbt_s']:>8.1f}{100 * r['cache_hit_rate']:>7.1f}{r['throughput_rps']:>8.2f}{r['balance_score']:>9.3f}"
            f"{r['preemptions_per_episode']:>9.1f}{max(r['kv_usage_peak']):>9.2f}{r['decisions_per_s']:>8.0f}"
        )
        if with_slo:
            row += f"{100 * r['slo_attainment']:>8.1f}{r['goodput_rps']:>9.2f}"
        rows.append(row)
    return "\n".join(rows)
