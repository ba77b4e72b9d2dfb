"""Observation layout of the routing env: one builder, one fixed normalisation.

Every component that reads observations (heuristic routers, demonstrations, behaviour cloning, the PPO module)
goes through :class:`ObservationLayout`, and every artefact stores ``layout.to_dict()`` so that a dataset or a
checkpoint made for another layout is refused with a clear error instead of silently mis-read.

Layout of the flat ``float32`` vector (length ``num_replicas * len(REPLICA_FEATURES) + num_request_features``)::

    [replica_0 features..., replica_1 features..., ..., request features...]

The normalisation is a fixed division by a documented scale (no running statistics), so the same raw state
always maps to the same observation in demo collection, BC and PPO, and a heuristic's ``argmin`` over a scaled
column equals its ``argmin`` over the raw quantity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from envs.errors import WarmRouteError

OBSERVATION_VERSION = 3

# (name, scale): the observation value is raw / scale.
REPLICA_FEATURES: tuple[tuple[str, float], ...] = (
    ("outstanding_requests", 32.0),  # routed to the replica and not finished (queued + running)
    ("queued_requests", 32.0),  # vidur's num_pending_requests: waiting in the replica queue
    ("running_requests", 32.0),  # admitted: holding KV-cache blocks
    ("pending_prefill_tokens", 16384.0),  # prefill tokens of outstanding requests not yet processed
    ("kv_cache_usage", 1.0),  # fraction of KV-cache blocks allocated
    ("relative_speed", 1.0),  # device throughput relative to the fastest replica (1.0 = fastest)
    ("last_routed", 1.0),  # 1 for the replica that received the previous request
    ("cached_hbm_tokens", 16384.0),  # prompt tokens of the pending request cached in the replica's HBM tier
    ("cached_host_tokens", 16384.0),  # ... and, continuing that prefix, in its host-DRAM tier
    ("hbm_cache_fill", 1.0),  # fraction of the replica's KV memory holding cached prefix blocks
    ("host_cache_fill", 1.0),  # fraction of the host tier in use
    # v3: what production routers price (envs/routers/production.py)
    ("pending_uncached_prefill_tokens", 16384.0),  # pending prefill net of each queued request's hit seen at routing
    ("active_kv_tokens", 262144.0),  # KV tokens allocated to the replica's running requests (Dynamo's active blocks)
    ("prefill_s_per_token", 1e-4),  # device price: seconds per prefill token (roofline, 512-token chunk, 4k context)
    ("host_load_s_per_token", 1e-5),  # device price: seconds to load one token's KV from the host tier
)
REQUEST_FEATURES: tuple[tuple[str, float], ...] = (
    ("prefill_tokens", 4096.0),
    ("affinity_key", 1.0),  # stable hash in [0, 1) of the request's session or shared-prefix group (0: none)
)
ORACLE_REQUEST_FEATURES: tuple[tuple[str, float], ...] = (("decode_tokens", 4096.0),)
# Unit of each raw feature (before the division by its scale), for the deployed router's input contract.
FEATURE_UNITS: dict[str, str] = {
    "outstanding_requests": "requests",
    "queued_requests": "requests",
    "running_requests": "requests",
    "pending_prefill_tokens": "tokens",
    "kv_cache_usage": "fraction 0..1",
    "relative_speed": "ratio 0..1",
    "last_routed": "0 or 1",
    "cached_hbm_tokens": "tokens",
    "cached_host_tokens": "tokens",
    "hbm_cache_fill": "fraction 0..1",
    "host_cache_fill": "fraction 0..1",
    "pending_uncached_prefill_tokens": "tokens",
    "active_kv_tokens": "tokens",
    "prefill_s_per_token": "seconds per token",
    "host_load_s_per_token": "seconds per token",
    "prefill_tokens": "tokens",
    "affinity_key": "hash in [0, 1)",
    "decode_tokens": "tokens",
}

REPLICA_FEATURE_INDEX = {name: i for i, (name, _) in enumerate(REPLICA_FEATURES)}
REQUEST_FEATURE_INDEX = {name: i for i, (name, _) in enumerate(REQUEST_FEATURES)}


@dataclass(frozen=True)
class ObservationLayout:
    """Shape and meaning of an observation for a cluster of ``num_replicas`` replicas."""

    num_replicas: int
    """Number of replicas (the action space is ``Discrete(num_replicas)``)."""
    oracle: bool = False
    """Whether the pending request's decode length (unknown to a real router) is observed."""
    version: int = OBSERVATION_VERSION
    """Bumped whenever features or scales change, so old artefacts are refused."""

    @property
    def replica_features(self) -> tuple[str, ...]:
        return tuple(name for name, _ in REPLICA_FEATURES)

    @property
    def request_features(self) -> tuple[str, ...]:
        extra = ORACLE_REQUEST_FEATURES if self.oracle else ()
        return tuple(name for name, _ in REQUEST_FEATURES + extra)

    @property
    def num_replica_features(self) -> int:
        return len(REPLICA_FEATURES)

    @property
    def num_request_features(self) -> int:
        return len(self.request_features)

    @property
    def dim(self) -> int:
        return self.num_replicas * self.num_replica_features + self.num_request_features

    @cached_property  # read on every env step: build the arrays once per layout
    def replica_scales(self) -> np.ndarray:
        return np.array([scale for _, scale in REPLICA_FEATURES], dtype=np.float64)

    @cached_property
    def request_scales(self) -> np.ndarray:
        extra = ORACLE_REQUEST_FEATURES if self.oracle else ()
        return np.array([scale for _, scale in REQUEST_FEATURES + extra], dtype=np.float64)

    def build(self, replica_raw: np.ndarray, request_raw: np.ndarray) -> np.ndarray:
        """Normalise raw per-replica ``(R, F)`` and request ``(G,)`` features into one flat observation."""
        replica = replica_raw / self.replica_scales
        request = request_raw / self.request_scales
        return np.concatenate([replica.reshape(-1), request]).astype(np.float32)

    def split(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split a batch ``(..., dim)`` of observations into replica ``(..., R, F)`` and request ``(..., G)`` parts."""
        cut = self.num_replicas * self.num_replica_features
        replica = obs[..., :cut].reshape(*obs.shape[:-1], self.num_replicas, self.num_replica_features)
        return replica, obs[..., cut:]

    def to_dict(self) -> dict:
        """JSON-ready description stored in every artefact's metadata."""
        return {
            **asdict(self),
            "dim": self.dim,
            "replica_features": dict(REPLICA_FEATURES),
            "request_features": dict(REQUEST_FEATURES + (ORACLE_REQUEST_FEATURES if self.oracle else ())),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ObservationLayout:
        return cls(num_replicas=int(data["num_replicas"]), oracle=bool(data["oracle"]), version=int(data["version"]))

    def check_compatible(self, other: dict, *, source: str, any_replica_count: bool = False) -> None:
        """Raise :class:`~envs.errors.WarmRouteError` naming ``source`` when ``other`` (a stored layout dict) differs from this layout.

        ``any_replica_count``: compare only what a per-replica model depends on (version, oracle flag, per-replica
        and request features), not the replica count or the flat dimension it implies.
        """
        mine = self.to_dict()
        keys = ("version", "oracle", "replica_features", "request_features")
        if not any_replica_count:
            keys = ("version", "num_replicas", "oracle", "dim", "replica_features", "request_features")
        for key in keys:
            if other.get(key) != mine[key]:
                raise WarmRouteError(
                    f"{source}: observation layout mismatch on '{key}' (artefact has {other.get(key)!r}, "
                    f"this run needs {mine[key]!r}); re-create it for this workload"
                )
