"""A vidur global scheduler that routes with an exported WarmRoute router, so a plain ``Simulator`` runs with it.

Registering a key without forking vidur: ``GlobalSchedulerRegistry`` is a dict keyed by whatever the config's
``get_type()`` returns, and ``Simulator`` looks the scheduler up with
``GlobalSchedulerRegistry.get(config.cluster_config.global_scheduler_config.get_type(), config, replicas)``.
vidur's keys are ``GlobalSchedulerType`` enum members, but nothing checks the key's type, so this module registers
:class:`WarmRouteGlobalScheduler` under the plain string :data:`WARMROUTE_SCHEDULER` and gives
:class:`WarmRouteGlobalSchedulerConfig` a ``get_type()`` returning it (the same trick as the roofline predictor,
``envs.sim.predictor.ROOFLINE``). Importing this module registers it::

    import warmroute.deploy.vidur_scheduler  # registers "warmroute_router"
    config.cluster_config.global_scheduler_config = WarmRouteGlobalSchedulerConfig(router_path="router.pt")
    Simulator(config).run()

Only vidur's own string parser (``GlobalSchedulerType.from_str``, used by vidur's CLI) does not know the key.

The scheduler builds the raw features of ``envs.observation`` from vidur's state and its own book-keeping, in the
same way as ``VidurRoutingEnv._observation`` (see docs/deploy.md for the table): the load features are exact;
``relative_speed`` is exact when the predictor is WarmRoute's roofline with ``replica_devices`` and 1.0 otherwise
(stock vidur has one device for the whole fleet); the prefix-cache features and ``affinity_key`` are 0 (stock
vidur has no prefix cache). Needs torch, not Ray (a policy directory instead of router.pt imports RLlib to load it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from vidur.config import BaseGlobalSchedulerConfig, SimulationConfig
from vidur.entities import Replica, Request
from vidur.scheduler.global_scheduler.base_global_scheduler import BaseGlobalScheduler
from vidur.scheduler.global_scheduler.global_scheduler_registry import GlobalSchedulerRegistry
from vidur.types.replica_id import ReplicaId

from envs.errors import WarmRouteError
from envs.observation import REQUEST_FEATURE_INDEX
from envs.sim.predictor import RooflinePredictorConfig
from envs.vidur_env import device_features, load_features
from warmroute.deploy.router_file import load_router

WARMROUTE_SCHEDULER = "warmroute_router"
"""Registry key and ``get_type()`` of the scheduler (a plain string: vidur's enum has no member for it)."""


@dataclass
class WarmRouteGlobalSchedulerConfig(BaseGlobalSchedulerConfig):
    """vidur config of the WarmRoute router scheduler (vidur's configs are plain, mutable dataclasses)."""

    router_path: str = field(default="", metadata={"help": "router.pt written by `warmroute export`, or a policy directory."})

    def __post_init__(self) -> None:
        if not self.router_path:
            raise WarmRouteError("router_path: give a router.pt written by `warmroute export` or a policy directory")

    @staticmethod
    def get_type() -> str:
        return WARMROUTE_SCHEDULER


def load_any(path: str | Path, num_replicas: int) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """A router from router.pt, or scripted in memory from a policy directory (that path imports RLlib)."""
    if Path(path).is_dir():
        from warmroute.deploy.export import router_from_policy  # RLlib only for this path

        return router_from_policy(path, num_replicas, flag="router_path")
    return load_router(path, num_replicas, flag="router_path")


def fleet_speeds(config: SimulationConfig, num_replicas: int) -> np.ndarray:
    """Each replica's device features (relative speed, prices) as the env observes them (``envs.vidur_env.device_features``)."""
    predictor = config.execution_time_predictor_config
    replica = config.cluster_config.replica_config
    devices = predictor.replica_devices if isinstance(predictor, RooflinePredictorConfig) and predictor.replica_devices else ()
    return device_features(replica.model_name, tuple(devices) or (replica.device,) * num_replicas, replica.tensor_parallel_size)


class WarmRouteGlobalScheduler(BaseGlobalScheduler):
    """Routes each waiting request, oldest first, to the replica the router picks (greedy)."""

    def __init__(self, config: SimulationConfig, replicas: dict[ReplicaId, Replica]) -> None:
        super().__init__(config, replicas)
        self._router, self.metadata = load_any(config.cluster_config.global_scheduler_config.router_path, self._num_replicas)
        self._replica_ids = sorted(self._replica_schedulers, key=lambda rid: rid.id)
        self._speeds = fleet_speeds(config, self._num_replicas)
        self._oracle = bool(self.metadata["oracle"])
        self._num_request_features = len(self.metadata["request_features"])
        self._outstanding: list[dict[int, Request]] = [{} for _ in self._replica_ids]
        self._last_routed = -1
        self.decisions: list[int] = []
        """Replica index chosen for each request, in routing order."""

    def features(self, request: Request, queued_now: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(R, F)`` replica statistics and ``(G,)`` request features for routing ``request``.

        ``queued_now``: requests this ``schedule()`` call already assigned per replica (vidur adds them to the
        replica queues only after the call returns; the env adds each at once).
        """
        schedulers = [self._replica_schedulers[replica_id] for replica_id in self._replica_ids]
        self._outstanding = [{k: r for k, r in out.items() if not r.completed} for out in self._outstanding]
        num_blocks = [scheduler._cache_config.num_blocks for scheduler in schedulers]
        replicas = load_features(schedulers, self._outstanding, num_blocks, self._speeds, self._last_routed, queued_now)
        request_raw = np.zeros(self._num_request_features)
        request_raw[_PREFILL_TOKENS] = request.num_prefill_tokens
        if self._oracle:
            request_raw[_ORACLE] = request.num_decode_tokens
        return replicas, request_raw

    def schedule(self) -> list[tuple[ReplicaId, Request]]:
        self.sort_requests()
        mapping = []
        queued_now = [0] * self._num_replicas
        while self._request_queue:
            request = self._request_queue.pop(0)
            replicas, request_raw = (torch.as_tensor(x, dtype=torch.float32) for x in self.features(request, queued_now))
            with torch.no_grad():
                index = int(self._router(replicas, request_raw))
            self._outstanding[index][request.id] = request
            queued_now[index] += 1
            self._last_routed = index
            self.decisions.append(index)
            mapping.append((self._replica_ids[index], request))
        return mapping


_PREFILL_TOKENS = REQUEST_FEATURE_INDEX["prefill_tokens"]
_ORACLE = len(REQUEST_FEATURE_INDEX)

GlobalSchedulerRegistry.register(WARMROUTE_SCHEDULER, WarmRouteGlobalScheduler)
