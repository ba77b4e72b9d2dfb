"""Heuristic routers, acting on observations only.

Each router maps a batch of observations ``(B, dim)`` to replica indices ``(B,)``. Because they read nothing but
the observation, the same code routes inside the env (``warmroute evaluate``), runs as an RLlib teacher module on
env runners (demonstrations), and is exactly what behaviour cloning can imitate. Ties go to the lowest replica
index, as in vidur's own schedulers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from envs.errors import WarmRouteError
from envs.observation import REPLICA_FEATURE_INDEX, REPLICA_FEATURES, REQUEST_FEATURES, ObservationLayout
from envs.routers.cache_aware import CACHE_ROUTERS, parse_cache_router
from envs.routers.latency_model import LATENCY_MODEL, latency_model_router

Router = Callable[[np.ndarray, np.random.Generator], np.ndarray]

_OUT = REPLICA_FEATURE_INDEX["outstanding_requests"]
_QUEUED = REPLICA_FEATURE_INDEX["queued_requests"]
_PREFILL = REPLICA_FEATURE_INDEX["pending_prefill_tokens"]
_SPEED = REPLICA_FEATURE_INDEX["relative_speed"]
_LAST = REPLICA_FEATURE_INDEX["last_routed"]
_KV = REPLICA_FEATURE_INDEX["kv_cache_usage"]
OUTSTANDING_SCALE = dict(REPLICA_FEATURES)["outstanding_requests"]
PREFILL_SCALE = dict(REQUEST_FEATURES)["prefill_tokens"]


def _argmin_then(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Row-wise argmin of ``primary``, ties broken by the smaller ``secondary``, then the lower index."""
    return _tied_best(primary, secondary).argmax(axis=-1)


def _tied_best(*keys: np.ndarray) -> np.ndarray:
    """Boolean ``(B, R)`` mask of the replicas that are lexicographically minimal over ``keys``."""
    best = np.ones(keys[0].shape, dtype=bool)
    for key in keys:
        masked = np.where(best, key, np.inf)
        best &= np.isclose(masked, masked.min(axis=-1, keepdims=True), rtol=1e-9, atol=1e-12)
    return best


def is_router(name: str) -> bool:
    """A plain router name, a cache-aware or production family with optional ``:key=value`` settings
    (envs.routers.cache_aware, envs.routers.production), or ``latency_model:model=PATH``."""
    return name in ROUTERS or name.split(":", 1)[0] in (*CACHE_ROUTERS, LATENCY_MODEL)


def router_names() -> str:
    return ", ".join([*ROUTERS, *CACHE_ROUTERS, f"{LATENCY_MODEL}:model=PATH"])


def make_router(name: str, layout: ObservationLayout) -> Router:
    """Return the router called ``name`` for observations of ``layout``."""
    if name.split(":", 1)[0] == LATENCY_MODEL:
        return latency_model_router(name, layout)
    cache_router = parse_cache_router(name)
    if cache_router is not None:
        route, params = cache_router
        return lambda obs, rng: route(*layout.split(np.asarray(obs, dtype=np.float64)), params, rng)
    if name not in ROUTERS:
        raise WarmRouteError(f"{{flag:policies}}: unknown router '{name}'; choose one of: {router_names()} or a checkpoint path")
    router = ROUTERS[name]
    if name in REQUEST_AWARE:  # these also read the waiting request's features
        return lambda obs, rng: router(*layout.split(np.asarray(obs, dtype=np.float64)), rng)
    return lambda obs, rng: router(layout.split(np.asarray(obs, dtype=np.float64))[0], rng)


def equivalent_actions(name: str, layout: ObservationLayout, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """``(B, R)`` mask of the replicas the router ``name`` ranks equal to its choice ``actions``.

    Cloning a router that breaks ties by index should not be penalised for breaking them differently:
    behaviour-cloning accuracy counts any replica in this mask as correct. Routers that draw at random count
    only the replica they drew.
    """
    replicas = layout.split(np.asarray(obs, dtype=np.float64))[0]
    keys = TIE_KEYS.get(name)
    if keys is None:
        return np.eye(layout.num_replicas, dtype=bool)[actions]
    return _tied_best(*keys(replicas))


def round_robin(replicas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Next replica after the one that got the previous request (vidur's ``round_robin``)."""
    last = replicas[..., _LAST]
    started = last.max(axis=-1) > 0
    return np.where(started, (np.argmax(last, axis=-1) + 1) % replicas.shape[-2], 0)


def random_router(replicas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random replica."""
    return rng.integers(replicas.shape[-2], size=replicas.shape[:-2])


def lor(replicas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """vidur's ``lor``: fewest requests *queued* at the replica (running ones are not counted)."""
    return np.argmin(replicas[..., _QUEUED], axis=-1)


def least_outstanding(replicas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fewest outstanding requests (queued + running): the classic load balancer."""
    return np.argmin(replicas[..., _OUT], axis=-1)


def _least_work_keys(replicas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return replicas[..., _PREFILL] / replicas[..., _SPEED], replicas[..., _OUT]


def least_work(replicas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fewest pending prefill tokens per unit of device speed; ties (e.g. all drained) by outstanding requests."""
    return _argmin_then(*_least_work_keys(replicas))


def power_of_two(replicas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two distinct random replicas, the one with fewer outstanding requests wins (ties: the first drawn)."""
    batch = replicas.shape[:-2]
    num = replicas.shape[-2]
    first = rng.integers(num, size=batch)
    second = (first + rng.integers(1, max(num, 2), size=batch)) % num
    out = replicas[..., _OUT]
    out_first = np.take_along_axis(out, first[..., None], axis=-1)[..., 0]
    out_second = np.take_along_axis(out, second[..., None], axis=-1)[..., 0]
    return np.where(out_second < out_first, second, first)


def speed_aware(replicas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fewest outstanding requests per unit of speed, counting the new one: ``(outstanding + 1) / speed``.

    On a homogeneous fleet this is ``least_outstanding``; on a mixed one it sends proportionally more to fast GPUs.
    """
    return _argmin_then(*_speed_aware_keys(replicas))


def _speed_aware_keys(replicas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (replicas[..., _OUT] * OUTSTANDING_SCALE + 1.0) / replicas[..., _SPEED], replicas[..., _OUT]


def kv_aware(replicas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Most free KV cache (lowest share of blocks in use); ties (e.g. all empty) by fewest outstanding requests.

    Sarathi/vLLM admit a request only when its prompt's blocks fit above the watermark, and preempt (recompute) when
    a running request cannot grow: steering new work to the emptiest cache avoids both.
    """
    return _argmin_then(replicas[..., _KV], replicas[..., _OUT])


def size_aware_router(threshold_tokens: float, dedicated: int) -> Callable[..., np.ndarray]:
    """Prompts longer than ``threshold_tokens`` go to the last ``dedicated`` replicas, shorter ones to the others;
    within its group a request goes to the replica with the fewest outstanding requests.

    A long prompt is prefilled chunk after chunk ahead of anything that arrives after it (sarathi serves running
    prefills first), so a short request routed behind it waits for the whole prompt: keeping long prompts on their
    own replicas protects the time to first token of everything else.
    """
    if dedicated < 1 or threshold_tokens < 0:
        raise WarmRouteError(f"size_aware needs dedicated >= 1 and threshold_tokens >= 0 (got {dedicated}, {threshold_tokens})")

    def route(replicas: np.ndarray, request: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        num = replicas.shape[-2]
        long_group = np.arange(num) >= num - min(dedicated, num - 1)  # at least one replica stays for short prompts
        is_long = request[..., 0] * PREFILL_SCALE > threshold_tokens
        allowed = np.where(is_long[..., None], long_group, ~long_group)
        return np.argmin(np.where(allowed, replicas[..., _OUT], np.inf), axis=-1)

    return route


# Tuned on long_context training seeds by scripts/tune_long_context.py (docs/memory_and_slo.md).
SIZE_AWARE_THRESHOLD_TOKENS = 12288
SIZE_AWARE_DEDICATED = 3
REQUEST_AWARE = frozenset({"size_aware"})

ROUTERS: dict[str, Callable[..., np.ndarray]] = {
    "round_robin": round_robin,
    "random": random_router,
    "lor": lor,
    "least_outstanding": least_outstanding,
    "least_work": least_work,
    "power_of_two": power_of_two,
    "speed_aware": speed_aware,
    "kv_aware": kv_aware,
    "size_aware": size_aware_router(SIZE_AWARE_THRESHOLD_TOKENS, SIZE_AWARE_DEDICATED),
}

# Deterministic routers' ranking keys (lower is better), for equivalent_actions().
TIE_KEYS: dict[str, Callable[[np.ndarray], tuple[np.ndarray, ...]]] = {
    "lor": lambda replicas: (replicas[..., _QUEUED],),
    "least_outstanding": lambda replicas: (replicas[..., _OUT],),
    "least_work": _least_work_keys,
    "speed_aware": _speed_aware_keys,
    "kv_aware": lambda replicas: (replicas[..., _KV], replicas[..., _OUT]),
}
