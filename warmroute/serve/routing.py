"""The routing decision of ``warmroute serve``: the router's input contract built from backend state, and any
WarmRoute router applied to it.

The raw features are those of ``envs.observation`` (version 3, the contract of docs/deploy.md), built from what a
real router sees (docs/serve_router.md has the table of substitutes):

* load: in-flight requests, their prompt tokens not yet past prefill and their uncached part (the router's own
  accounting), queued requests and KV usage from the backend's last ``/metrics`` scrape;
* cache: the pending prompt's tokens the :class:`~warmroute.serve.prefix_index.PrefixIndex` expects each backend
  to hold (HBM tier only: vLLM-CPU has no host tier), and the index's fill;
* device: relative speed and prices of the device each backend is declared to be (``envs.vidur_env.device_features``),
  the numbers a policy saw in training.

A router is named as everywhere in WarmRoute: a heuristic or production router by name
(``envs.routers.heuristics.make_router``, with ``family:key=value`` settings), a ``router.pt`` from ``warmroute
export`` (``warmroute.deploy.router_file.load_router``: the observation version is checked), or a policy directory
(scripted in memory; imports RLlib). A named router routes among the candidate backends only (the healthy ones not
yet tried for this request), so its own rules apply to the fleet that can answer; a network scores every backend
and the best candidate wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from envs.errors import WarmRouteError
from envs.observation import REPLICA_FEATURE_INDEX, REQUEST_FEATURE_INDEX, ObservationLayout
from envs.routers.heuristics import is_router, make_router, router_names

if TYPE_CHECKING:
    import torch

    from warmroute.serve.backends import Backend
    from warmroute.serve.prefix_index import PrefixIndex

_F = REPLICA_FEATURE_INDEX


@dataclass(frozen=True)
class RoutingRequest:
    """What the router knows about one request before choosing."""

    prompt_tokens: int
    hashes: list[bytes]
    affinity_key: float
    max_tokens: int
    """Requested decode length: the stand-in for the true decode length an oracle policy was trained on."""


def replica_features(
    backends: list[Backend],
    index: PrefixIndex,
    request: RoutingRequest,
    device: np.ndarray,
    last_routed: int,
    cache_blocks: int,
) -> tuple[np.ndarray, list[int]]:
    """Raw ``(R, 15)`` features of every backend for ``request``, and the cached tokens each is expected to hold."""
    raw = np.zeros((len(backends), len(_F)))
    cached = [index.cached_tokens(i, request.hashes, request.prompt_tokens) for i in range(len(backends))]
    for i, backend in enumerate(backends):
        running, queued = backend.running_and_queued()
        pending, uncached = backend.pending_prefill()
        raw[i, _F["outstanding_requests"]] = len(backend.inflight)
        raw[i, _F["queued_requests"]] = queued
        raw[i, _F["running_requests"]] = running
        raw[i, _F["pending_prefill_tokens"]] = pending
        raw[i, _F["kv_cache_usage"]] = min(max(backend.scraped.get("kv_usage", 0.0), 0.0), 1.0)
        raw[i, _F["cached_hbm_tokens"]] = cached[i]
        raw[i, _F["hbm_cache_fill"]] = min(index.size(i) / cache_blocks, 1.0)
        raw[i, _F["pending_uncached_prefill_tokens"]] = uncached
        raw[i, _F["active_kv_tokens"]] = backend.active_tokens()
    raw[:, [_F["relative_speed"], _F["prefill_s_per_token"], _F["host_load_s_per_token"]]] = device
    if last_routed >= 0:
        raw[last_routed, _F["last_routed"]] = 1.0
    return raw, cached


class ServeRouter:
    """One of WarmRoute's routers, choosing among candidate backends from their raw features."""

    def __init__(self, name: str, num_backends: int, seed: int = 0) -> None:
        self.name = name
        self._rng = np.random.default_rng(seed)
        self._network: torch.jit.ScriptModule | None = None
        self._layouts: dict[int, tuple[ObservationLayout, Any]] = {}
        self.oracle = False
        if is_router(name):
            self._rule = name
            self._named(num_backends)  # validates the name and its settings now, not at the first request
        elif Path(name).is_file() or Path(name).is_dir():
            self._network, meta = _load_network(name, num_backends)
            self.oracle = bool(meta["oracle"])
        else:
            raise WarmRouteError(
                f"{{flag:router}} {name}: unknown router; give a router.pt from `warmroute export`, a policy directory, "
                f"or one of: {router_names()}"
            )

    def _named(self, count: int) -> tuple[ObservationLayout, Any]:
        """The layout and named router for ``count`` candidates (built once per count)."""
        if count not in self._layouts:
            layout = ObservationLayout(num_replicas=count)
            try:
                self._layouts[count] = layout, make_router(self._rule, layout)
            except WarmRouteError as exc:
                raise WarmRouteError(exc.template.replace("{flag:policies}", "{flag:router}")) from None
        return self._layouts[count]

    def request_features(self, request: RoutingRequest) -> np.ndarray:
        """Raw request features: prompt tokens, affinity key (and ``max_tokens`` for an oracle policy)."""
        values = [0.0] * len(REQUEST_FEATURE_INDEX)
        values[REQUEST_FEATURE_INDEX["prefill_tokens"]] = request.prompt_tokens
        values[REQUEST_FEATURE_INDEX["affinity_key"]] = request.affinity_key
        return np.array(values + ([float(request.max_tokens)] if self.oracle else []))

    def choose(self, raw: np.ndarray, request_raw: np.ndarray, candidates: list[int]) -> int:
        """Index (into all backends) of the candidate the router picks."""
        if self._network is not None:
            import torch

            with torch.no_grad():
                logits = self._network.logits(
                    torch.as_tensor(raw, dtype=torch.float32), torch.as_tensor(request_raw, dtype=torch.float32)
                ).numpy()
            return max(candidates, key=lambda i: (logits[i], -i))
        layout, route = self._named(len(candidates))
        obs = layout.build(raw[candidates], request_raw)
        return candidates[int(route(obs[None], self._rng)[0])]


def _load_network(path: str, num_backends: int) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """router.pt (torch only), or a policy directory scripted in memory (imports RLlib).

    One torch thread: a decision is one small matrix product, and idle intra-op threads spinning next to the event
    loop cost more than they save (measured: 46 ms instead of 2 ms per proxied request on 2 cores).
    """
    import torch

    torch.set_num_threads(1)
    if Path(path).is_dir():
        from warmroute.deploy.export import router_from_policy

        return router_from_policy(path, num_backends, flag="{flag:router}")
    from warmroute.deploy.router_file import load_router

    return load_router(path, num_backends, flag="{flag:router}")
