"""What the router knows about each backend: its own accounting of the requests it sent there, what the backend's
``/metrics`` said at the last scrape, and whether it is healthy.

Health follows the circuit-breaker idiom of production gateways: a connection error, a timeout or a 5xx marks the
backend unhealthy for a backoff that doubles on each consecutive failure (``BACKOFF_MAX_S`` at most); once the
backoff has passed it is eligible again, and one success (a request or a scrape) clears it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

BACKOFF_MAX_S = 30.0
"""Longest time a failing backend is left out of routing."""

VLLM_METRICS: dict[str, tuple[str, ...]] = {
    "running": ("vllm:num_requests_running",),
    "waiting": ("vllm:num_requests_waiting",),
    "kv_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "prefix_queries": ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_queries"),
    "prefix_hits": ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits"),
}
"""Scraped quantity -> the vLLM sample names that carry it (newer name first; older vLLM spells KV usage
``gpu_cache_usage_perc``). Samples of the same name are summed over their labels (one engine per backend)."""


def parse_vllm_metrics(text: str) -> dict[str, float]:
    """The quantities of :data:`VLLM_METRICS` found in a Prometheus text exposition; missing ones are left out."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not math.isnan(sample.value):
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    found = {}
    for key, names in VLLM_METRICS.items():
        value = next((sums[n] for n in names if n in sums), None)
        if value is not None:
            found[key] = value
    return found


@dataclass
class InFlight:
    """One request the router sent to a backend and has not seen finish."""

    prompt_tokens: int
    cached_tokens: int
    """Prompt tokens the prefix index expected the backend to have cached when it was routed."""
    prefilled: bool = False
    """A first token came back (streaming only: a non-streaming answer arrives whole, at the end)."""
    generated: int = 0
    """Stream chunks received so far (about one token each)."""


@dataclass
class Backend:
    """State of one backend URL."""

    url: str
    inflight: dict[str, InFlight] = field(default_factory=dict)
    scraped: dict[str, float] = field(default_factory=dict)
    scraped_at: float = 0.0
    failures: int = 0
    unhealthy_until: float = 0.0
    failure_source: str = ""
    """What marked it last: "request" (only a request's success clears it, so a backend that stalls requests
    but still serves /metrics stays out) or "scrape" (a later scrape clears it)."""

    def healthy(self, now: float | None = None) -> bool:
        """No failure since the last success, or its backoff has passed (then it is tried again)."""
        return self.failures == 0 or (time.monotonic() if now is None else now) >= self.unhealthy_until

    def mark_failed(self, base_backoff_s: float, source: str) -> None:
        self.failures += 1
        self.failure_source = source
        self.unhealthy_until = time.monotonic() + min(base_backoff_s * 2 ** (self.failures - 1), BACKOFF_MAX_S)

    def mark_ok(self) -> None:
        self.failures = 0
        self.unhealthy_until = 0.0
        self.failure_source = ""

    def pending_prefill(self) -> tuple[int, int]:
        """``(prompt tokens, prompt tokens not expected in cache)`` of in-flight requests not yet past prefill."""
        waiting = [r for r in self.inflight.values() if not r.prefilled]
        return sum(r.prompt_tokens for r in waiting), sum(r.prompt_tokens - r.cached_tokens for r in waiting)

    def active_tokens(self) -> int:
        """KV tokens the router's own requests hold on the backend: prompt plus tokens generated so far."""
        return sum(r.prompt_tokens + r.generated for r in self.inflight.values())

    def running_and_queued(self) -> tuple[int, int]:
        """Running and queued requests among the router's in-flight ones: the scraped waiting count (capped by what
        is in flight; none when the backend reports nothing) waits, the rest runs. A stale scrape errs towards
        "running", which is what a request just sent to an idle vLLM is."""
        outstanding = len(self.inflight)
        queued = min(int(self.scraped.get("waiting", 0)), outstanding)
        return outstanding - queued, queued
