"""Prometheus metrics of ``warmroute serve`` (GET /metrics), in a registry of their own.

Counters and the routing-latency histogram are updated as requests go; the per-backend gauges are read from the
live state when Prometheus scrapes, so they are never stale. Names (``warmroute_serve_`` prefix):

* ``decisions_total{backend}``, ``prompt_tokens_total{backend}``, ``estimated_cached_tokens_total{backend}``;
* ``routing_seconds`` (histogram): building the router's inputs and deciding, per decision;
* ``backend_errors_total{backend,kind}`` (kind: connect, disconnect, timeout, status, stream, scrape),
  ``failovers_total``, ``responses_total{code}`` (what clients got);
* gauges ``backend_inflight_requests``, ``backend_pending_prefill_tokens``, ``backend_estimated_cached_blocks``,
  ``backend_healthy``, ``backend_scraped_running_requests``, ``backend_scraped_waiting_requests``,
  ``backend_scraped_kv_cache_usage`` (NaN when the backend does not report it), each ``{backend}``.

``backend`` is the index in ``--backend`` order (``/health`` maps it to the URL).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from warmroute.serve.backends import Backend
from warmroute.serve.prefix_index import PrefixIndex

GAUGES = {
    "inflight_requests": "Requests sent to the backend and not finished (router's accounting)",
    "pending_prefill_tokens": "Prompt tokens of in-flight requests not yet past prefill",
    "estimated_cached_blocks": "Block hashes the prefix index holds for the backend",
    "healthy": "1 when the backend is eligible for routing",
    "scraped_running_requests": "vllm:num_requests_running at the last scrape",
    "scraped_waiting_requests": "vllm:num_requests_waiting at the last scrape",
    "scraped_kv_cache_usage": "vllm:kv_cache_usage_perc at the last scrape",
}


class _BackendCollector:
    """The per-backend gauges, computed at collection time."""

    def __init__(self, backends: list[Backend], index: PrefixIndex) -> None:
        self._backends = backends
        self._index = index

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {k: GaugeMetricFamily(f"warmroute_serve_backend_{k}", text, labels=["backend"]) for k, text in GAUGES.items()}
        now = time.monotonic()
        for i, backend in enumerate(self._backends):
            values = {
                "inflight_requests": len(backend.inflight),
                "pending_prefill_tokens": backend.pending_prefill()[0],
                "estimated_cached_blocks": self._index.size(i),
                "healthy": float(backend.healthy(now)),
                "scraped_running_requests": backend.scraped.get("running", float("nan")),
                "scraped_waiting_requests": backend.scraped.get("waiting", float("nan")),
                "scraped_kv_cache_usage": backend.scraped.get("kv_usage", float("nan")),
            }
            for key, value in values.items():
                families[key].add_metric([str(i)], value)
        yield from families.values()


class ServeMetrics:
    """The router's own metrics."""

    def __init__(self, backends: list[Backend], index: PrefixIndex) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_BackendCollector(backends, index))
        labels = ["backend"]
        self.decisions = Counter("warmroute_serve_decisions", "Routing decisions per backend", labels, registry=self.registry)
        self.prompt_tokens = Counter(
            "warmroute_serve_prompt_tokens", "Prompt tokens routed per backend", labels, registry=self.registry
        )
        self.cached_tokens = Counter(
            "warmroute_serve_estimated_cached_tokens",
            "Prompt tokens the prefix index expected cached",
            labels,
            registry=self.registry,
        )
        self.errors = Counter(
            "warmroute_serve_backend_errors", "Failed backend attempts", [*labels, "kind"], registry=self.registry
        )
        self.failovers = Counter(
            "warmroute_serve_failovers", "Requests moved to another backend after a failure", registry=self.registry
        )
        self.responses = Counter(
            "warmroute_serve_responses", "Answers to clients by HTTP status", ["code"], registry=self.registry
        )
        self.routing_seconds = Histogram(
            "warmroute_serve_routing_seconds",
            "Time to build the router's inputs and decide",
            buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2),
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """Prometheus text format of every metric."""
        return generate_latest(self.registry)
