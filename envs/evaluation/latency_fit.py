"""Fit the ``latency_model`` router (``envs.routers.latency_model``): log a router's decisions with exploration,
regress the observed TTFT on them, and save the XGBoost model as JSON (never a pickle).

It runs episodes of the env, so it lives with evaluation rather than beside the router it fits (routers sit below
the env). ``scripts/fit_latency_model.py`` is its command line.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envs.errors import WarmRouteError
from envs.evaluation.evaluate import HeuristicPolicy, play_episode
from envs.observation import ObservationLayout
from envs.routers.latency_model import ATTRIBUTE, MIN_TTFT_S, NTHREAD, features
from envs.sim.workload import WorkloadConfig
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv


def log_decisions(
    env_config: VidurEnvConfig, episodes: Sequence[tuple[WorkloadConfig, int]], router: str, explore: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs (N, F + G), ttft_s (N,))`` of every decision of ``router`` with ``explore`` random choices."""
    rng = np.random.default_rng(seed)
    rows, targets = [], []
    for workload, episode_seed in episodes:
        config = VidurEnvConfig(workload=workload, reward=env_config.reward)
        env = VidurRoutingEnv(config)
        policy = _Exploring(HeuristicPolicy(router, config.layout), explore, rng, workload.num_replicas)
        play_episode(env, policy, episode_seed, functools.partial(_log_features, rows, config.layout))
        targets.extend(r.prefill_completed_at - r.arrived_at for r in env.routed_requests)
    return np.asarray(rows), np.asarray(targets)


def _log_features(rows: list[np.ndarray], layout: ObservationLayout, obs: np.ndarray, action: int) -> None:
    """Append the regressor's inputs for ``action`` taken at ``obs``."""
    replicas, request = layout.split(obs.astype(np.float64))
    rows.append(features(replicas, request)[action])


class _Exploring:
    """``policy``, except that each choice is replaced by a uniform random replica with probability ``explore``:
    the regressor must see the TTFT of replicas the router would not pick."""

    def __init__(self, policy: HeuristicPolicy, explore: float, rng: np.random.Generator, num_replicas: int) -> None:
        self.name = f"{policy.name} (explore {explore})"
        self._policy, self._explore, self._rng, self._n = policy, explore, rng, num_replicas

    def reset(self, seed: int) -> None:
        self._policy.reset(seed)

    def act(self, obs: np.ndarray) -> int:
        action = self._policy.act(obs)
        if self._rng.random() < self._explore:
            action = int(self._rng.integers(self._n))
        return action


def fit_latency_model(
    env_config: VidurEnvConfig,
    episodes: Sequence[tuple[WorkloadConfig, int]],
    output: str | Path,
    *,
    router: str = "least_ttft",
    explore: float = 0.2,
    seed: int = 0,
    rounds: int = 300,
    max_depth: int = 6,
) -> dict[str, Any]:
    """Log, fit and write the model to ``output`` (renamed into place when done); returns its metadata.

    The last fifth of the logged decisions is held out to report the mean absolute percentage error of the
    predicted TTFT (llm-d reports about 5% for its online model).
    """
    import xgboost

    if not 0.0 <= explore <= 1.0:
        raise WarmRouteError(f"--explore must be in [0, 1] (got {explore})")
    start = time.perf_counter()
    x, ttft = log_decisions(env_config, episodes, router, explore, seed)
    y = np.log(np.maximum(ttft, MIN_TTFT_S))
    cut = int(0.8 * len(y))
    params = {
        "max_depth": max_depth,
        "eta": 0.05,
        "subsample": 0.8,
        "nthread": NTHREAD,
        "seed": seed,
        "objective": "reg:squarederror",
    }
    check = xgboost.train(params, xgboost.DMatrix(x[:cut], label=y[:cut], nthread=NTHREAD), num_boost_round=rounds)
    predicted = np.exp(check.predict(xgboost.DMatrix(x[cut:], nthread=NTHREAD)))
    mape = float(np.mean(np.abs(predicted - ttft[cut:]) / np.maximum(ttft[cut:], MIN_TTFT_S)))
    booster = xgboost.train(params, xgboost.DMatrix(x, label=y, nthread=NTHREAD), num_boost_round=rounds)
    meta = {
        "layout": env_config.layout.to_dict(),
        "workload": env_config.workload.name,
        "logging_router": router,
        "explore": explore,
        "episodes": [[w.trace_start, s] for w, s in episodes],
        "decisions": len(y),
        "holdout_mape": mape,
        "xgboost": {**params, "rounds": rounds, "version": xgboost.__version__},
        "fit_seconds": time.perf_counter() - start,
    }
    booster.set_attr(**{ATTRIBUTE: json.dumps(meta)})
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(suffix=".json", dir=output.parent)
    os.close(handle)
    try:
        booster.save_model(tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return meta
