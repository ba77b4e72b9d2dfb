"""Cache-aware routers of production LLM gateways, on observations only, with their parameters exposed.

A router is named ``family`` (its published defaults) or ``family:key=value:key=value`` (tuned), e.g.
``prefix_affinity:cache_threshold=0.5:balance_abs=16``. This module also parses the names of today's production
routers (``envs.routers.production``) and of the fitted ``latency_model`` (``envs.routers.latency_model``). Each reads the per-replica cache features of
``envs.observation`` (prompt tokens of the pending request cached in HBM / host, KV usage) and the load features,
so the same code routes in the env, teaches demonstrations, and is what behaviour cloning imitates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from envs.errors import WarmRouteError
from envs.observation import REPLICA_FEATURE_INDEX, REPLICA_FEATURES, REQUEST_FEATURE_INDEX, REQUEST_FEATURES
from envs.routers.production import PARAMETER_RANGES, PRODUCTION_ROUTERS

_OUT = REPLICA_FEATURE_INDEX["outstanding_requests"]
_QUEUED = REPLICA_FEATURE_INDEX["queued_requests"]
_KV = REPLICA_FEATURE_INDEX["kv_cache_usage"]
_HBM = REPLICA_FEATURE_INDEX["cached_hbm_tokens"]
_HOST = REPLICA_FEATURE_INDEX["cached_host_tokens"]
_FILL = REPLICA_FEATURE_INDEX["hbm_cache_fill"]
_PROMPT = REQUEST_FEATURE_INDEX["prefill_tokens"]
_KEY = REQUEST_FEATURE_INDEX["affinity_key"]
_SCALE = dict(REPLICA_FEATURES)
_PROMPT_SCALE = dict(REQUEST_FEATURES)["prefill_tokens"]

CacheRouter = Callable[[np.ndarray, np.ndarray, dict[str, float], np.random.Generator], np.ndarray]
"""``(replicas (B, R, F), request (B, G), parameters, rng) -> (B,)`` replica indices; only sampling routers use ``rng``."""


def _match_ratio(replicas: np.ndarray, request: np.ndarray) -> np.ndarray:
    """Fraction of the pending prompt cached on each replica (both tiers), ``(B, R)``."""
    cached = replicas[..., _HBM] * _SCALE["cached_hbm_tokens"] + replicas[..., _HOST] * _SCALE["cached_host_tokens"]
    prompt = np.maximum(request[..., _PROMPT] * _PROMPT_SCALE, 1.0)
    return cached / prompt[..., None]


def prefix_affinity(replicas: np.ndarray, request: np.ndarray, p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """SGLang model gateway's ``cache_aware`` policy (sgl-router; defaults cache_threshold 0.3, balance_abs 64,
    balance_rel 1.5).

    If the load is imbalanced (``max - min > balance_abs`` and ``max > balance_rel * min``, load = requests in
    flight) route to the least loaded replica; otherwise to the replica with the highest prefix match ratio if it
    exceeds ``cache_threshold``, else to the one whose cache holds least (most room for a new prefix).
    """
    load = replicas[..., _OUT] * _SCALE["outstanding_requests"]
    high, low = load.max(axis=-1), load.min(axis=-1)
    imbalanced = (high - low > p["balance_abs"]) & (high > p["balance_rel"] * low)
    ratio = _match_ratio(replicas, request)
    best = ratio.argmax(axis=-1)
    use_cache = np.take_along_axis(ratio, best[..., None], axis=-1)[..., 0] > p["cache_threshold"]
    emptiest = replicas[..., _FILL].argmin(axis=-1)
    return np.where(imbalanced, load.argmin(axis=-1), np.where(use_cache, best, emptiest))


def weighted_scorer(replicas: np.ndarray, request: np.ndarray, p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """llm-d inference scheduler's weighted scorers (default profile: prefix-cache 3, queue 2, KV utilisation 2).

    Prefix score = cached fraction of the prompt; queue score = min-max normalised waiting requests (1 for the
    shortest queue, all 1 when equal); KV score = 1 - KV-cache usage. The highest weighted sum wins.
    """
    queue = replicas[..., _QUEUED]
    span = queue.max(axis=-1, keepdims=True) - queue.min(axis=-1, keepdims=True)
    queue_score = np.where(span > 0, (queue.max(axis=-1, keepdims=True) - queue) / np.where(span > 0, span, 1.0), 1.0)
    score = (
        p["prefix_weight"] * _match_ratio(replicas, request)
        + p["queue_weight"] * queue_score
        + p["kv_weight"] * (1.0 - replicas[..., _KV])
    )
    return score.argmax(axis=-1)


def session_hash(replicas: np.ndarray, request: np.ndarray, p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Sticky sessions by consistent hashing of the session (or, in a trace, its first prompt block), as an ingress
    does; with ``load_factor`` > 0 it bounds load (Mirrokni et al., "Consistent hashing with bounded loads",
    2018): walk the ring from the hashed replica to the first one whose load is at most
    ``load_factor * (mean load + 1)``. Defaults to plain hashing (load_factor 0 = unbounded).
    """
    num = replicas.shape[-2]
    home = np.minimum((request[..., _KEY] * num).astype(np.int64), num - 1)
    if p["load_factor"] <= 0:
        return home
    load = replicas[..., _OUT] * _SCALE["outstanding_requests"]
    bound = p["load_factor"] * (load.mean(axis=-1) + 1.0)
    choice = home.copy()
    for b in np.ndindex(home.shape):
        for step in range(num):
            candidate = (home[b] + step) % num
            if load[b + (candidate,)] <= bound[b]:
                choice[b] = candidate
                break
    return choice


CACHE_ROUTERS: dict[str, tuple[CacheRouter, dict[str, float]]] = {
    "prefix_affinity": (prefix_affinity, {"cache_threshold": 0.3, "balance_abs": 64.0, "balance_rel": 1.5}),
    "weighted_scorer": (weighted_scorer, {"prefix_weight": 3.0, "queue_weight": 2.0, "kv_weight": 2.0}),
    "session_hash": (session_hash, {"load_factor": 0.0}),
    **PRODUCTION_ROUTERS,
}


def parse_cache_router(name: str) -> tuple[CacheRouter, dict[str, float]] | None:
    """``(router, parameters)`` for ``family[:key=value...]``, ``None`` if ``family`` is not a cache router."""
    family, *settings = name.split(":")
    if family not in CACHE_ROUTERS:
        return None
    router, defaults = CACHE_ROUTERS[family]
    params = dict(defaults)
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or key not in params:
            raise WarmRouteError(f"{{flag:policies}} {name}: '{setting}' is not key=value with key one of {', '.join(params)}")
        try:
            params[key] = float(value)
        except ValueError as exc:
            raise WarmRouteError(f"{{flag:policies}} {name}: {key} must be a number (got '{value}')") from exc
        low, high = PARAMETER_RANGES.get(family, {}).get(key, (-np.inf, np.inf))
        if not low <= params[key] <= high:
            raise WarmRouteError(f"{{flag:policies}} {name}: {key} must be in [{low:g}, {high:g}] (got {value})")
    return router, params


def router_name(family: str, params: dict[str, float]) -> str:
    """The name that ``parse_cache_router`` turns back into ``params`` (only non-default values)."""
    defaults = CACHE_ROUTERS[family][1]
    changed = [f"{k}={v:g}" for k, v in params.items() if v != defaults[k]]
    return ":".join([family, *changed])
