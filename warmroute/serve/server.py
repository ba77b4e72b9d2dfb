"""Start ``warmroute serve``: check the input, listen, run until SIGINT or SIGTERM.

Everything a user can get wrong is found before the first request and is one line (``WarmRouteError``, exit 2):
an unknown router name or a router.pt made for another observation version (``ServeRouter``), a backend URL
nothing answers at, a port another process holds.
"""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
from aiohttp import web

from envs.errors import WarmRouteError
from warmroute.serve.app import SHUTDOWN_GRACE_S, RouterService
from warmroute.serve.config import ServeConfig
from warmroute.serve.routing import ServeRouter


async def check_backends(config: ServeConfig) -> None:
    """Refuse a backend that does not answer HTTP at all (any status will do: it is there), after retrying for
    ``config.startup_wait`` seconds."""
    timeout = aiohttp.ClientTimeout(total=config.connect_timeout + 3.0, connect=config.connect_timeout)
    deadline = time.monotonic() + config.startup_wait
    async with aiohttp.ClientSession() as session:
        for url in config.backends:
            reason = await _unreachable(session, url, timeout)
            if reason and time.monotonic() < deadline:
                print(f"warmroute serve: waiting for {url} ({reason})", flush=True)
            while reason and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                reason = await _unreachable(session, url, timeout)
            if reason:
                waited = f" for {config.startup_wait:g} s" if config.startup_wait else ""
                raise WarmRouteError(
                    f"{{flag:backends}} {url}: unreachable{waited} ({reason}); start the engine first, fix the URL "
                    "or give it time with {flag:startup_wait}"
                )


async def _unreachable(session: aiohttp.ClientSession, url: str, timeout: aiohttp.ClientTimeout) -> str:
    """Why ``url`` does not answer ``GET /health`` ("" when it answers with any status)."""
    try:
        async with session.get(f"{url.rstrip('/')}/health", timeout=timeout) as response:
            await response.read()
    except aiohttp.ClientConnectorError as exc:
        return (exc.os_error.strerror or str(exc)).lower()
    except TimeoutError:
        return "no answer in time"
    except aiohttp.ClientError as exc:
        return type(exc).__name__
    return ""


async def serve(config: ServeConfig) -> None:
    """Run the router until SIGINT or SIGTERM; print the URL once it listens."""
    router = ServeRouter(config.router, len(config.backends), config.seed)
    await check_backends(config)
    service = RouterService(config, router)
    runner = web.AppRunner(service.application(), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_S + 1)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise WarmRouteError(
            f"{{flag:port}} {config.port}: cannot listen on {config.host} ({exc.strerror}); choose a free port"
        ) from None
    port = site._server.sockets[0].getsockname()[1]  # the real one when --port 0
    print(f"warmroute serve: listening on http://{config.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
