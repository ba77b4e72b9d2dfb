"""Settings of ``warmroute serve`` (one frozen dataclass; the CLI flags are its fields)."""

from __future__ import annotations

from dataclasses import dataclass

from envs.errors import WarmRouteError
from envs.sim.devices import DEVICE_NAMES


@dataclass(frozen=True)
class ServeConfig:
    """Where to listen, which backends, which router, and how long to wait for a backend."""

    backends: tuple[str, ...] = ()
    """Backend base URLs (OpenAI-compatible servers such as vLLM), e.g. http://127.0.0.1:8001."""
    router: str = "round_robin"
    """A heuristic or production router name (family:key=value settings allowed), a router.pt from `warmroute export`, or a policy directory."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = 8000
    """Port to listen on (0: any free port, printed at start)."""
    block_size: int = 16
    """Tokens per KV block of the prefix index: set it to the engines' --block-size."""
    index_blocks: int = 65536
    """Block hashes the prefix index keeps per backend (LRU beyond that)."""
    cache_blocks: int | None = None
    """KV blocks of each engine, for the cache-fill feature (default: --index-blocks)."""
    device: str = "h100"
    """Device every backend is priced as (relative speed and prefill price features), unless --backend-devices is given."""
    backend_devices: tuple[str, ...] = ()
    """One device per backend, in --backend order, for a mixed fleet."""
    model: str = "meta-llama/Llama-3-8B"
    """Model the device prices are computed for (a vidur model name), as in training."""
    request_timeout: float = 60.0
    """Seconds from a request's arrival until its response starts (all failover attempts included); then 504."""
    startup_wait: float = 0.0
    """Seconds to keep retrying a backend that does not answer at start (an engine still loading); 0: check once."""
    connect_timeout: float = 2.0
    """Seconds to open a connection to a backend."""
    first_byte_timeout: float = 30.0
    """Seconds one backend may take to start answering (a non-streaming request: to answer) before the request fails over."""
    stream_idle_timeout: float = 30.0
    """Seconds a started stream may stay silent before it is ended with an error event."""
    scrape_interval: float = 0.5
    """Seconds between scrapes of each backend's /metrics."""
    backoff: float = 1.0
    """Seconds a failed backend is left out, doubled on each further failure (30 s at most)."""
    decision_log: str | None = None
    """JSONL file of routing decisions (request id, time, backend, prompt and estimated cached tokens)."""
    seed: int = 0
    """Seed of randomised routers (random, power_of_two, sampling kv_cost)."""

    def __post_init__(self) -> None:
        if not self.backends:
            raise WarmRouteError("{flag:backends}: give at least one backend URL (repeat the flag or use a comma list)")
        for url in self.backends:
            if not url.startswith(("http://", "https://")):
                raise WarmRouteError(f"{{flag:backends}} {url}: not an http(s) URL; write it as http://HOST:PORT")
        for name in ("request_timeout", "connect_timeout", "first_byte_timeout", "stream_idle_timeout", "scrape_interval"):
            if getattr(self, name) <= 0:
                raise WarmRouteError(f"{{flag:{name}}} must be > 0 seconds (got {getattr(self, name)})")
        for name in ("backoff", "startup_wait"):
            if getattr(self, name) < 0:
                raise WarmRouteError(f"{{flag:{name}}} must be >= 0 seconds (got {getattr(self, name)})")
        if self.block_size < 1 or self.index_blocks < 1 or (self.cache_blocks is not None and self.cache_blocks < 1):
            raise WarmRouteError("{flag:block_size}, {flag:index_blocks} and {flag:cache_blocks} must be >= 1")
        if not 0 <= self.port <= 65535:
            raise WarmRouteError(f"{{flag:port}} must be in 0..65535 (got {self.port})")
        for device in (self.device, *self.backend_devices):
            if device not in DEVICE_NAMES:
                raise WarmRouteError(
                    f"{{flag:backend_devices}}: unknown device '{device}'; choose one of: {', '.join(DEVICE_NAMES)}"
                )
        if self.backend_devices and len(self.backend_devices) != len(self.backends):
            raise WarmRouteError(
                f"{{flag:backend_devices}} lists {len(self.backend_devices)} devices for {len(self.backends)} backends; give one per backend"
            )

    @property
    def devices(self) -> tuple[str, ...]:
        return self.backend_devices or (self.device,) * len(self.backends)
