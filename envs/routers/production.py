"""The routers production LLM gateways run in 2026, on observations only, every parameter exposed.

Named like the other cache-aware families (``family`` for the published defaults, ``family:key=value:...`` tuned,
parsed by ``envs.routers.cache_aware.parse_cache_router``). Each reads the per-replica features of
``envs.observation`` (version 3): the pending request's prompt tokens cached in HBM / host, the uncached prefill
still pending on the replica (net of the hits its queued requests were routed for), the KV tokens its running
requests hold, and the device's roofline prices per prefill token and per host-loaded token.

Units: Dynamo counts KV blocks; here a block is ``BLOCK_TOKENS`` (512) tokens, the cache's own granularity, so
``overlap_score_weight`` keeps its meaning (both terms are in the same unit).
"""

from __future__ import annotations

import numpy as np

from envs.observation import REPLICA_FEATURE_INDEX, REPLICA_FEATURES, REQUEST_FEATURE_INDEX, REQUEST_FEATURES
from envs.prefix.workloads import BLOCK_TOKENS

_F = REPLICA_FEATURE_INDEX
_SCALE = dict(REPLICA_FEATURES)
_PROMPT_SCALE = dict(REQUEST_FEATURES)["prefill_tokens"]


def _raw(replicas: np.ndarray, name: str) -> np.ndarray:
    """Feature ``name`` of every replica in its raw unit, ``(B, R)``."""
    return replicas[..., _F[name]] * _SCALE[name]


def _prompt(request: np.ndarray) -> np.ndarray:
    """Prompt tokens of the pending request, ``(B, 1)`` so it broadcasts over replicas."""
    return (request[..., REQUEST_FEATURE_INDEX["prefill_tokens"]] * _PROMPT_SCALE)[..., None]


def _argmin(score: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Row-wise argmin of ``score``; ties by the smaller ``tie``, then the lower index."""
    best = np.isclose(score, score.min(axis=-1, keepdims=True), rtol=1e-9, atol=1e-12)
    return np.where(best, tie, np.inf).argmin(axis=-1)


def kv_cost(replicas: np.ndarray, request: np.ndarray, p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """NVIDIA Dynamo's KV router (ai-dynamo/dynamo, docs/architecture/kv_cache_routing.md; tier credits from
    docs/components/router/router-offloading.md).

    Per worker ``logit = overlap_score_weight * prefill_blocks + active_blocks``. ``prefill_blocks``: the request's
    blocks not cached there, a cached block credited by its tier (``gpu_credit`` 1.0, ``host_credit`` 0.75; the
    simulated fleet has no disk tier, Dynamo's 0.25). ``active_blocks``: blocks held by the worker's running
    requests plus the new request's. ``pending_weight`` > 0 also counts the uncached prefill already queued on the
    worker as prefill blocks (0 = the documented logit). ``temperature`` 0 takes the lowest logit (ties: lower
    index); above 0 it samples from ``softmax(-normalised logit / temperature)`` with the logits min-max
    normalised per request, as Dynamo's ``softmax_sample`` does, drawing from the caller's seeded ``rng``.
    """
    prompt = _prompt(request)
    credit = p["gpu_credit"] * _raw(replicas, "cached_hbm_tokens") + p["host_credit"] * _raw(replicas, "cached_host_tokens")
    prefill = np.maximum(prompt - credit, 0.0) + p["pending_weight"] * _raw(replicas, "pending_uncached_prefill_tokens")
    active = _raw(replicas, "active_kv_tokens") + prompt
    logit = (p["overlap_score_weight"] * prefill + active) / BLOCK_TOKENS
    if p["temperature"] == 0:
        return _argmin(logit, np.zeros_like(logit))
    low, high = logit.min(axis=-1, keepdims=True), logit.max(axis=-1, keepdims=True)
    normalised = np.where(high > low, (logit - low) / np.where(high > low, high - low, 1.0), 0.0)
    weights = np.exp(-normalised / p["temperature"])
    cumulative = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)
    draw = rng.random(logit.shape[:-1] + (1,))
    return np.minimum((cumulative < draw).sum(axis=-1), logit.shape[-1] - 1)


def sticky_load(replicas: np.ndarray, request: np.ndarray, p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """llm-d inference scheduler's "sticky until saturated" profile (llm-d blog "bottleneck-aware scheduling",
    2026-08-17).

    Affinity filter: keep the replicas whose prefix match (cached fraction of the prompt, both tiers) is at least
    ``theta`` (0.8) and whose uncached prefill tokens in flight are at most ``tau``; when none is left the
    affinity is dropped and every replica competes. The blog's tau is peak prefill throughput x the largest TTFT
    penalty accepted (20,480 tok/s x 14 s = 286,720 tokens). Scorer: fewest uncached prefill tokens in flight;
    a decode-bound request (its uncached prompt on the best-matching replica is at most ``decode_bound_tokens``,
    so it adds next to no prefill) is scored by active requests instead. Ties: fewer active requests, lower index.
    """
    prompt = _prompt(request)
    cached = _raw(replicas, "cached_hbm_tokens") + _raw(replicas, "cached_host_tokens")
    load = _raw(replicas, "pending_uncached_prefill_tokens")
    active = _raw(replicas, "outstanding_requests")
    affine = (cached / np.maximum(prompt, 1.0) >= p["theta"]) & (load <= p["tau"])
    candidates = np.where(affine.any(axis=-1, keepdims=True), affine, True)
    decode_bound = (prompt[..., 0] - cached.max(axis=-1)) <= p["decode_bound_tokens"]
    score = np.where(decode_bound[..., None], active, load)
    return _argmin(np.where(candidates, score, np.inf), active)


def least_ttft(replicas: np.ndarray, request: np.ndarray, p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Least predicted time to first token, the estimate behind llm-d's predicted-latency scorer (llm-d blog,
    2026-03-13) written as a formula instead of learnt.

    Per replica: ``(queue_weight x queued uncached prefill + this request's uncached suffix) x the device's
    prefill seconds per token + host_weight x host-tier hit tokens x the device's load seconds per token``; the
    prices come from the roofline predictor (``envs.vidur_env.device_features``), so a slower GPU's queue costs
    more. Ties: fewer active requests, lower index.
    """
    hbm, host = _raw(replicas, "cached_hbm_tokens"), _raw(replicas, "cached_host_tokens")
    suffix = np.maximum(_prompt(request) - hbm - host, 0.0)
    prefill = p["queue_weight"] * _raw(replicas, "pending_uncached_prefill_tokens") + suffix
    ttft = prefill * _raw(replicas, "prefill_s_per_token") + p["host_weight"] * host * _raw(replicas, "host_load_s_per_token")
    return _argmin(ttft, _raw(replicas, "outstanding_requests"))


PRODUCTION_ROUTERS = {
    "kv_cost": (
        kv_cost,
        {"overlap_score_weight": 1.0, "gpu_credit": 1.0, "host_credit": 0.75, "pending_weight": 0.0, "temperature": 0.0},
    ),
    "sticky_load": (sticky_load, {"theta": 0.8, "tau": 286720.0, "decode_bound_tokens": 512.0}),
    "least_ttft": (least_ttft, {"queue_weight": 1.0, "host_weight": 1.0}),
}
"""``family: (router, published defaults)``."""

PARAMETER_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "kv_cost": {
        "overlap_score_weight": (0.0, np.inf),
        "gpu_credit": (0.0, 1.0),
        "host_credit": (0.0, 1.0),
        "pending_weight": (0.0, np.inf),
        "temperature": (0.0, np.inf),
    },
    "sticky_load": {"theta": (0.0, 1.0), "tau": (0.0, np.inf), "decode_bound_tokens": (0.0, np.inf)},
    "least_ttft": {"queue_weight": (0.0, np.inf), "host_weight": (0.0, np.inf)},
}
"""Closed interval each parameter must lie in; ``parse_cache_router`` refuses a value outside it."""
