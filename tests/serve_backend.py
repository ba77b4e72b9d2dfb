"""A tiny real OpenAI-compatible backend for the ``warmroute serve`` tests (a process, not a mock).

Run: ``python tests/serve_backend.py --port 0`` prints ``backend listening on PORT``. It answers
/v1/completions and /v1/chat/completions with ``max_tokens`` tokens (a stream when asked, ``--token-delay`` s
apart), keeps an unbounded set of the prompt blocks it has seen so that it reports ``cached_tokens`` as vLLM
does (full ``--block-size`` blocks, never the last prompt token), and exposes vLLM's metric names on /metrics.
POST /control {"mode": ...} changes its behaviour: "ok", "stall" (accept, never answer), "error" (HTTP 500),
"break" (start a stream, then stall mid-way). Tests kill it by pid to take it down.

Also the tests' process helpers: :func:`start_backend` and :func:`start_serve` start real processes and return once
they listen; :func:`stop` ends one by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from aiohttp import web

NAME = "tiny"


class Backend:
    def __init__(self, block_size: int, token_delay: float) -> None:
        self.block_size = block_size
        self.token_delay = token_delay
        self.mode = "ok"
        self.seen: set[tuple[int, ...]] = set()
        self.running = 0
        self.queries = 0
        self.hits = 0
        self.served = 0

    def cached_tokens(self, prompt: list[int]) -> int:
        """Full blocks of ``prompt`` seen before (as a prefix), at most ``len(prompt) - 1`` tokens; records them."""
        full = (len(prompt) - 1) // self.block_size if prompt else 0
        hit = 0
        for k in range(1, full + 1):
            if tuple(prompt[: k * self.block_size]) not in self.seen:
                break
            hit = k * self.block_size
        for k in range(1, len(prompt) // self.block_size + 1):
            self.seen.add(tuple(prompt[: k * self.block_size]))
        self.queries += len(prompt)
        self.hits += hit
        return hit

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if self.mode == "stall":
            await asyncio.sleep(3600)
        if self.mode == "error":
            return web.json_response({"error": {"message": "boom", "code": 500}}, status=500)
        prompt = body.get("prompt", [])
        tokens = prompt if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt) else []
        cached = self.cached_tokens(tokens)
        count = int(body.get("max_tokens") or 16)
        usage = {"prompt_tokens": len(tokens), "completion_tokens": count, "prompt_tokens_details": {"cached_tokens": cached}}
        self.running += 1
        try:
            if not body.get("stream"):
                await asyncio.sleep(self.token_delay * count)
                self.served += 1
                text = "".join(f"t{i} " for i in range(count))
                return web.json_response(
                    {
                        "id": f"cmpl-{time.time_ns()}",
                        "object": "text_completion",
                        "model": NAME,
                        "choices": [{"index": 0, "text": text, "finish_reason": "length"}],
                        "usage": usage,
                    }
                )
            out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await out.prepare(request)
            for i in range(count):
                if self.mode == "break" and i == count // 2:
                    await asyncio.sleep(3600)
                chunk = {"object": "text_completion", "model": NAME, "choices": [{"index": 0, "text": f"t{i} "}]}
                await out.write(f"data: {json.dumps(chunk)}\n\n".encode())
                await asyncio.sleep(self.token_delay)
            final = {"object": "text_completion", "model": NAME, "choices": [], "usage": usage}
            await out.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
            self.served += 1
            await out.write_eof()
            return out
        finally:
            self.running -= 1

    async def control(self, request: web.Request) -> web.Response:
        self.mode = (await request.json())["mode"]
        return web.json_response({"mode": self.mode})

    async def metrics(self, request: web.Request) -> web.Response:
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f'vllm:num_requests_running{{model_name="{NAME}"}} {self.running}',
            "# TYPE vllm:num_requests_waiting gauge",
            f'vllm:num_requests_waiting{{model_name="{NAME}"}} 0',
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f'vllm:kv_cache_usage_perc{{model_name="{NAME}"}} {min(self.running / 10, 1.0)}',
            "# TYPE vllm:prefix_cache_queries counter",
            f'vllm:prefix_cache_queries_total{{model_name="{NAME}"}} {self.queries}',
            "# TYPE vllm:prefix_cache_hits counter",
            f'vllm:prefix_cache_hits_total{{model_name="{NAME}"}} {self.hits}',
            f"# served {self.served}",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self.generate)
        app.router.add_post("/v1/chat/completions", self.generate)
        app.router.add_post("/control", self.control)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/health", lambda r: web.json_response({"ok": True}))
        app.router.add_get("/v1/models", lambda r: web.json_response({"object": "list", "data": [{"id": NAME}]}))
        return app


async def main(port: int, block_size: int, token_delay: float) -> None:
    runner = web.AppRunner(Backend(block_size, token_delay).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"backend listening on {site._server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


@dataclass
class Process:
    """A started process and the URL it listens on."""

    popen: subprocess.Popen
    url: str
    stderr: Path

    def control(self, mode: str) -> None:
        """Switch a test backend's behaviour ("ok", "stall", "error", "break")."""
        requests.post(f"{self.url}/control", json={"mode": mode}, timeout=5).raise_for_status()


def read_until(popen: subprocess.Popen, marker: str, timeout: float) -> str | None:
    """The rest of the first stdout line of ``popen`` containing ``marker``; None if it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([popen.stdout], [], [], max(deadline - time.monotonic(), 0))
        line = popen.stdout.readline() if ready else ""
        if marker in line:
            return line.split(marker, 1)[1].strip()
        if popen.poll() is not None:
            return None
    return None


def _start(cmd: list[str], marker: str, stderr: Path, timeout: float) -> tuple[subprocess.Popen, str]:
    """Start ``cmd`` and return it with the rest of the first stdout line that contains ``marker``."""
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr.open("w"), text=True, env=os.environ.copy())
    rest = read_until(popen, marker, timeout)
    if rest is None:
        stop(popen)
        raise RuntimeError(f"{cmd} did not start: {stderr.read_text()[-2000:]}")
    return popen, rest


def start_backend(tmp: Path, name: str, token_delay: float = 0.0, block_size: int = 16, port: int = 0) -> Process:
    """A test backend process on ``port`` (0: a free one)."""
    cmd = [sys.executable, __file__, "--token-delay", str(token_delay), "--block-size", str(block_size), "--port", str(port)]
    err = tmp / f"{name}.err"
    popen, port = _start(cmd, "backend listening on", err, 30)
    return Process(popen, f"http://127.0.0.1:{port}", err)


SERVE_READY = "warmroute serve: listening on"


def serve_command(urls: list[str], *args: str) -> list[str]:
    """``warmroute serve`` (without importing Ray) on a free port in front of ``urls``."""
    return [sys.executable, "-m", "warmroute.cli.serve", "--backend", ",".join(urls), "--port", "0", *args]


def start_serve(tmp: Path, backends: list[Process], *args: str, timeout: float = 120) -> Process:
    """A ``warmroute serve`` process in front of ``backends``, once it listens."""
    err = tmp / "serve.err"
    popen, url = _start(serve_command([b.url for b in backends], *args), SERVE_READY, err, timeout)
    return Process(popen, url, err)


def stop(process: Process | subprocess.Popen) -> None:
    """End one process by its pid (SIGTERM, then SIGKILL after 5 s)."""
    popen = process.popen if isinstance(process, Process) else process
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(5)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5)
    if popen.stdout:
        popen.stdout.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--token-delay", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.block_size, args.token_delay))
