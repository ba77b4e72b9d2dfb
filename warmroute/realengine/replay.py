"""Replay a scaled trace window against OpenAI-compatible endpoints and record what each request saw.

Each request is sent at its trace arrival time (times ``time_scale``) to ``/v1/completions`` with its token-id
prompt, streaming, so the first streamed chunk gives TTFT and the final usage chunk gives ``cached_tokens``
(``usage.prompt_tokens_details.cached_tokens``: vLLM reports it with ``--enable-prompt-tokens-details``).

With one URL (a router such as ``warmroute serve``) the endpoint chooses the backend; with several URLs the replayer
itself routes round robin, the baseline that needs no router process, and records which URL served each request.
Every request carries ``X-Request-Id: replay-<trace row>`` so a router's decision log can be joined to the record.
A request that fails (connection refused, HTTP error, timeout) is recorded with its error; the replay never hangs
longer than ``timeout_s`` per request.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import numpy as np

from envs.errors import WarmRouteError
from warmroute.realengine.prompts import ScaledRequest

BACKEND_HEADER = "X-WarmRoute-Backend"
"""Response header in which a router (``warmroute serve``) names the backend index that answered."""


@dataclass
class RequestRecord:
    """What one replayed request saw (times in seconds; -1 where it failed before that point)."""

    index: int
    arrival_s: float
    sent_s: float
    url: str
    prompt_tokens: int
    output_tokens: int
    status: int = 0
    """HTTP status (0: no response at all)."""
    ttft_s: float = -1.0
    e2e_s: float = -1.0
    cached_tokens: int = -1
    """Prompt tokens the engine took from its prefix cache (-1: not reported)."""
    completion_tokens: int = -1
    backend: str = ""
    """Index of the backend that served it: the router's ``X-WarmRoute-Backend`` header, else the URL's index."""
    error: str = ""


async def _send(
    session: aiohttp.ClientSession, url: str, label: str, model: str, spec: ScaledRequest, start: float, timeout_s: float
) -> RequestRecord:
    delay = start + spec.arrival_s - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    sent = time.perf_counter()
    record = RequestRecord(spec.index, spec.arrival_s, sent - start, url, len(spec.prompt), spec.output_tokens)
    body = {
        "model": model,
        "prompt": list(spec.prompt),
        "max_tokens": spec.output_tokens,
        "min_tokens": spec.output_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"X-Request-Id": f"replay-{spec.index}"}
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(f"{url}/v1/completions", json=body, headers=headers) as response:
                record.status = response.status
                record.backend = response.headers.get(BACKEND_HEADER, label)
                if response.status != 200:
                    record.error = (await response.text())[:200].replace("\n", " ")
                    record.e2e_s = time.perf_counter() - sent
                    return record
                done = False
                async for raw in response.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":  # read on to the body's end: the connection then closes cleanly
                        done = True
                        continue
                    chunk = json.loads(data)
                    if chunk.get("choices") and record.ttft_s < 0:
                        record.ttft_s = time.perf_counter() - sent
                    usage = chunk.get("usage")
                    if usage:
                        record.completion_tokens = int(usage.get("completion_tokens", -1))
                        details = usage.get("prompt_tokens_details") or {}
                        record.cached_tokens = int(details.get("cached_tokens") or 0)
                    if "error" in chunk:
                        record.error = str(chunk["error"])[:200]
                if not done and not record.error:
                    record.error = "stream ended before [DONE]"
        record.e2e_s = time.perf_counter() - sent
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"[:200]
        record.e2e_s = time.perf_counter() - sent
    return record


async def replay(requests: list[ScaledRequest], urls: list[str], *, model: str, timeout_s: float = 120.0) -> list[RequestRecord]:
    """Send every request at its arrival time (round robin over ``urls``) and wait for all of them."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        start = time.perf_counter()
        tasks = [
            _send(session, urls[k % len(urls)], str(k % len(urls)), model, spec, start, timeout_s)
            for k, spec in enumerate(requests)
        ]
        return list(await asyncio.gather(*tasks))


def summarize(records: list[RequestRecord]) -> dict[str, float]:
    """Mean/p50/p90 TTFT, mean e2e (successful requests, seconds), hit rate = cached / prompt tokens, failures."""
    ok = [r for r in records if r.status == 200 and not r.error and r.ttft_s >= 0]
    ttft = np.array([r.ttft_s for r in ok]) if ok else np.full(1, np.nan)
    e2e = np.array([r.e2e_s for r in ok]) if ok else np.full(1, np.nan)
    prompt = sum(r.prompt_tokens for r in ok)
    cached = sum(max(0, r.cached_tokens) for r in ok)
    return {
        "requests": len(records),
        "failed": len(records) - len(ok),
        "ttft_mean_s": float(ttft.mean()),
        "ttft_p50_s": float(np.percentile(ttft, 50)),
        "ttft_p90_s": float(np.percentile(ttft, 90)),
        "e2e_mean_s": float(e2e.mean()),
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "hit_rate": cached / prompt if prompt else 0.0,
    }


def format_summary(name: str, summary: dict[str, float]) -> str:
    """One line of the results table."""
    return (
        f"{name:<28} {summary['requests']:>4} {summary['failed']:>4} {summary['ttft_mean_s']:>8.3f} "
        f"{summary['ttft_p50_s']:>8.3f} {summary['ttft_p90_s']:>8.3f} {summary['e2e_mean_s']:>8.3f} "
        f"{summary['hit_rate']:>7.1%}"
    )


TABLE_HEADER = (
    f"{'router':<28} {'reqs':>4} {'fail':>4} {'ttft_mean':>8} {'ttft_p50':>8} {'ttft_p90':>8} {'e2e_mean':>8} {'hit':>7}"
)


def write_records(records: list[RequestRecord], path: str | Path) -> None:
    """One JSON object per request (JSON lines), in trace order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as handle:
        for record in records:
            handle.write(json.dumps(asdict(record)) + "\n")
    tmp.replace(path)


def read_records(path: str | Path) -> list[RequestRecord]:
    """Records written by :func:`write_records`."""
    with open(path) as handle:
        return [RequestRecord(**json.loads(line)) for line in handle if line.strip()]


@dataclass(frozen=True)
class ReplayConfig:
    """What ``warmroute replay`` sends where."""

    urls: tuple[str, ...] = ()
    """Endpoint base URLs: one router (e.g. ``warmroute serve``), or several engines the replayer round-robins."""
    trace: str = "mooncake"
    """``mooncake`` (the bundled trace) or a Mooncake-format .jsonl file."""
    trace_start: int = 2000
    """First trace request of the window."""
    num_requests: int = 60
    """Requests in the window."""
    time_scale: float = 1.0
    """Multiplies the trace's arrival times (0.25: four times the rate)."""
    model: str = "tiny-llama"
    """Model name sent in each request (the engines' --served-model-name)."""
    timeout: float = 120.0
    """Seconds a request may take in all before it is recorded as failed."""
    output: str | None = None
    """JSON-lines file of per-request records (TTFT, e2e, cached tokens, backend)."""

    def __post_init__(self) -> None:
        if not self.urls:
            raise WarmRouteError("{flag:urls}: give at least one endpoint URL, e.g. http://127.0.0.1:8000")
        for url in self.urls:
            if not url.startswith(("http://", "https://")):
                raise WarmRouteError(f"{{flag:urls}} {url}: not an http(s) URL; write it as http://HOST:PORT")
        if not self.timeout > 0:
            raise WarmRouteError(f"{{flag:timeout}} must be > 0 seconds (got {self.timeout})")
