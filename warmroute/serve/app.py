"""The HTTP side of ``warmroute serve``: an aiohttp application that routes OpenAI-style requests to backends.

Per request: read the prompt, hash its blocks, build the router's inputs from every backend's state, pick a
candidate, forward the body unchanged and pass the answer back (a stream chunk by chunk). A backend that fails
before the answer starts (connection refused, no first byte within ``first_byte_timeout``, a 5xx) is marked and the
request goes to another candidate, until ``request_timeout`` from arrival; then the client gets a JSON error: 502
(every backend failed), 503 (none could be tried), 504 (time ran out). A stream that breaks after it started ends
with an error event and ``[DONE]``: its bytes are already with the client, so it cannot move. A 4xx is the
client's mistake and is passed through unchanged.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from envs.vidur_env import device_features
from warmroute.serve.backends import Backend, InFlight, parse_vllm_metrics
from warmroute.serve.config import ServeConfig
from warmroute.serve.decision_log import DecisionLog
from warmroute.serve.metrics import ServeMetrics
from warmroute.serve.openai_api import GENERATE_PATHS, error_response, routing_request
from warmroute.serve.prefix_index import PrefixIndex
from warmroute.serve.routing import RoutingRequest, ServeRouter, replica_features

BACKEND_HEADER = "X-WarmRoute-Backend"
"""Response header naming the backend (its index in --backend order) that answered."""
REQUEST_ID_HEADER = "X-Request-Id"
SHUTDOWN_GRACE_S = 4.0
"""Seconds in-flight requests get to finish after SIGINT/SIGTERM; then their backend connections are closed, so a
stream ends with an error event and the process exits (aiohttp's own wait is set just above this)."""


class _BackendFailed(Exception):
    """One attempt at one backend failed before the answer started; ``kind`` labels the error metric."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass
class _Attempt:
    """A backend answer that has started: its status, headers and, for a stream, the first chunk."""

    response: aiohttp.ClientResponse
    body: bytes


class RouterService:
    """Backends, prefix index, router and metrics of one ``warmroute serve`` process."""

    def __init__(self, config: ServeConfig, router: ServeRouter) -> None:
        self.config = config
        self.router = router
        self.backends = [Backend(url.rstrip("/")) for url in config.backends]
        self.index = PrefixIndex(len(self.backends), config.block_size, config.index_blocks)
        self._device = device_features(config.model, config.devices)
        self._last_routed = -1
        self._session: aiohttp.ClientSession | None = None
        self._scrapers: list[asyncio.Task] = []
        self._active: set[aiohttp.ClientResponse] = set()
        self._closing = False
        self._log = DecisionLog(config.decision_log, router.name) if config.decision_log else None
        self.metrics = ServeMetrics(self.backends, self.index)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        for path in GENERATE_PATHS:
            app.router.add_post(path, self.generate)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.prometheus)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._drain)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
        self._scrapers = [asyncio.create_task(self._scrape_forever(backend)) for backend in self.backends]

    async def _drain(self, app: web.Application) -> None:
        """Take no new attempt, and cut the backend connections still open after the grace period."""
        self._closing = True
        asyncio.get_running_loop().call_later(SHUTDOWN_GRACE_S, self._cut_active)

    def _cut_active(self) -> None:
        for response in list(self._active):
            response.close()

    async def _stop(self, app: web.Application) -> None:
        for task in self._scrapers:
            task.cancel()
        if self._session:
            await self._session.close()
        if self._log:
            self._log.close()

    async def _scrape_forever(self, backend: Backend) -> None:
        """One loop per backend, so that a backend slow to answer delays no other's scrape."""
        while True:
            await self._scrape(backend)
            await asyncio.sleep(self.config.scrape_interval)

    async def _scrape(self, backend: Backend) -> None:
        """Read the backend's /metrics; a backend that does not answer is marked (one without /metrics is not)."""
        timeout = aiohttp.ClientTimeout(total=self.config.connect_timeout + self.config.scrape_interval)
        try:
            async with self._session.get(f"{backend.url}/metrics", timeout=timeout) as response:
                text = await response.text()
        except (TimeoutError, aiohttp.ClientError, ValueError):
            if backend.healthy():
                backend.mark_failed(self.config.backoff, "scrape")
                self.metrics.errors.labels(str(self.backends.index(backend)), "scrape").inc()
            return
        if backend.failure_source == "scrape":
            backend.mark_ok()
        if response.status == 200:
            try:
                backend.scraped, backend.scraped_at = parse_vllm_metrics(text), time.monotonic()
            except ValueError:  # not Prometheus text: keep the router's own accounting only
                backend.scraped = {}

    # -- routing -----------------------------------------------------------------------------------------------

    def _candidates(self, tried: set[int]) -> list[int]:
        """Healthy backends not yet tried; when none is healthy, any not yet tried (it may have recovered)."""
        now = time.monotonic()
        untried = [i for i in range(len(self.backends)) if i not in tried]
        return [i for i in untried if self.backends[i].healthy(now)] or untried

    def _decide(self, request: RoutingRequest, candidates: list[int]) -> tuple[int, int]:
        """``(backend index, estimated cached tokens there)``; records the decision in the index and metrics."""
        start = time.perf_counter()
        raw, cached = replica_features(
            self.backends,
            self.index,
            request,
            self._device,
            self._last_routed,
            self.config.cache_blocks or self.config.index_blocks,
        )
        choice = self.router.choose(raw, self.router.request_features(request), candidates)
        self.index.insert(choice, request.hashes)
        self._last_routed = choice
        self.metrics.routing_seconds.observe(time.perf_counter() - start)
        label = str(choice)
        self.metrics.decisions.labels(label).inc()
        self.metrics.prompt_tokens.labels(label).inc(request.prompt_tokens)
        self.metrics.cached_tokens.labels(label).inc(cached[choice])
        return choice, cached[choice]

    async def generate(self, request: web.Request) -> web.StreamResponse:
        try:
            payload = await request.read()
            body = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self._answer(error_response(400, "request body is not JSON", "invalid_request_error"))
        if not isinstance(body, dict):
            return self._answer(error_response(400, "request body must be a JSON object", "invalid_request_error"))
        request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        forwarded = {"Content-Type": "application/json", REQUEST_ID_HEADER: request_id}
        if "Authorization" in request.headers:  # an engine started with --api-key checks it
            forwarded["Authorization"] = request.headers["Authorization"]
        routing = routing_request(request.path, body, self.config.block_size)
        stream = bool(body.get("stream"))
        deadline = time.monotonic() + self.config.request_timeout
        tried: set[int] = set()
        failure: _BackendFailed | None = None
        while candidates := self._candidates(tried):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._closing:
                return self._answer(error_response(503, "the router is shutting down", "service_unavailable"))
            if tried:
                self.metrics.failovers.inc()
            choice, cached = self._decide(routing, candidates)
            if self._log:
                self._log.write(request_id, choice, self.backends[choice].url, routing.prompt_tokens, cached, len(tried))
            tried.add(choice)
            backend = self.backends[choice]
            key = uuid.uuid4().hex  # client request ids need not be unique
            backend.inflight[key] = entry = InFlight(prompt_tokens=routing.prompt_tokens, cached_tokens=cached)
            try:
                try:
                    attempt = await self._start_attempt(backend, request.path, payload, forwarded, stream, remaining)
                except _BackendFailed as exc:
                    backend.mark_failed(self.config.backoff, "request")
                    self.metrics.errors.labels(str(choice), exc.kind).inc()
                    failure = exc
                    continue
                try:
                    headers = {BACKEND_HEADER: str(choice), REQUEST_ID_HEADER: request_id}
                    backend.mark_ok()  # it answered (a 4xx is the client's mistake, passed on as it is)
                    if not stream or attempt.response.status != 200:
                        return self._answer(
                            web.Response(
                                body=attempt.body,
                                status=attempt.response.status,
                                content_type=attempt.response.content_type,
                                headers=headers,
                            )
                        )
                    entry.prefilled = True
                    return await self._relay(request, attempt, headers, backend, choice, entry)
                finally:
                    self._active.discard(attempt.response)
                    attempt.response.release()
            finally:
                backend.inflight.pop(key, None)
        if failure is None:
            return self._answer(error_response(503, "no backend available", "service_unavailable"))
        if failure.kind == "timeout" or time.monotonic() >= deadline:
            return self._answer(error_response(504, f"no backend answered in time (last: {failure})", "timeout"))
        return self._answer(error_response(502, f"every backend tried failed (last: {failure})", "bad_gateway"))

    async def _start_attempt(
        self, backend: Backend, path: str, payload: bytes, headers: dict[str, str], stream: bool, remaining: float
    ) -> _Attempt:
        """Send the client's bytes unchanged and wait for the answer to start: the whole body, or a stream's first
        chunk."""
        wait = min(self.config.first_byte_timeout, remaining)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.config.connect_timeout, sock_connect=self.config.connect_timeout)
        response: aiohttp.ClientResponse | None = None

        async def start() -> _Attempt:
            nonlocal response
            response = await self._session.post(f"{backend.url}{path}", data=payload, headers=headers, timeout=timeout)
            self._active.add(response)
            if stream and response.status == 200:
                return _Attempt(response, await response.content.readany())
            return _Attempt(response, await response.read())

        try:
            attempt = await asyncio.wait_for(start(), wait)
        except TimeoutError:
            kind, detail = "timeout", f"{backend.url} sent nothing in {wait:.1f} s"
        except aiohttp.ClientConnectorError as exc:
            kind, detail = "connect", f"{backend.url} refused the connection ({exc.os_error.strerror or exc})"
        except aiohttp.ClientError as exc:
            kind, detail = "disconnect", f"{backend.url}: {type(exc).__name__} {exc}"
        except asyncio.CancelledError:  # the client went away: drop the backend's connection too
            if response is not None:
                self._active.discard(response)
                response.close()
            raise
        else:
            if attempt.response.status < 500:
                return attempt
            attempt.response.release()
            kind, detail = "status", f"{backend.url} answered {attempt.response.status}"
        if response is not None:
            self._active.discard(response)
            response.close()
        raise _BackendFailed(kind, detail)

    async def _relay(
        self, request: web.Request, attempt: _Attempt, headers: dict[str, str], backend: Backend, choice: int, entry: InFlight
    ) -> web.StreamResponse:
        """Pass a started stream on chunk by chunk; a backend that breaks or goes silent ends it with an error event."""
        out = web.StreamResponse(
            status=200, headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await out.prepare(request)
        self.metrics.responses.labels("200").inc()
        chunk, tail = attempt.body, b""
        try:
            while chunk:
                entry.generated += chunk.count(b"data:")
                await out.write(chunk)
                tail = (tail + chunk)[-16:]
                try:
                    chunk = await asyncio.wait_for(attempt.response.content.readany(), self.config.stream_idle_timeout)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    await self._break_stream(out, backend, choice, "timeout" if isinstance(exc, TimeoutError) else "stream")
                    return out
            if b"[DONE]" not in tail:  # the backend closed the connection before the end of the stream
                await self._break_stream(out, backend, choice, "stream")
                return out
            await out.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):  # the client went away
            pass
        return out

    async def _break_stream(self, out: web.StreamResponse, backend: Backend, choice: int, kind: str) -> None:
        """End a started stream with an error event and ``[DONE]``, and mark the backend."""
        backend.mark_failed(self.config.backoff, "request")
        self.metrics.errors.labels(str(choice), kind).inc()
        event = {"error": {"message": f"backend {choice} broke the stream ({kind})", "type": "bad_gateway", "code": 502}}
        await out.write(f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode())
        await out.write_eof()

    def _answer(self, response: web.Response) -> web.Response:
        self.metrics.responses.labels(str(response.status)).inc()
        return response

    # -- other endpoints ---------------------------------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        """The first healthy backend's model list (every backend serves the same model)."""
        timeout = aiohttp.ClientTimeout(total=self.config.first_byte_timeout, connect=self.config.connect_timeout)
        for i in self._candidates(set()):
            try:
                async with self._session.get(f"{self.backends[i].url}/v1/models", timeout=timeout) as response:
                    if response.status == 200:
                        return web.Response(body=await response.read(), content_type="application/json")
            except (TimeoutError, aiohttp.ClientError):
                continue
        return error_response(502, "no backend listed its models", "bad_gateway")

    async def health(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        states = [
            {"backend": i, "url": b.url, "healthy": b.healthy(now), "inflight": len(b.inflight), "scraped": b.scraped}
            for i, b in enumerate(self.backends)
        ]
        ok = any(s["healthy"] for s in states)
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "router": self.router.name, "backends": states}, status=200 if ok else 503
        )

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
