"""Start ``warmroute serve``: check the input, listen, run until SIGINT or SIGTERM.

Everything a user can get wrong is found before the first request and is one line (``WarmRouteError``, exit 2):
an unknown router name or a router.pt made for another observation version (``ServeRouter``), a backend URL
nothing answers at, a port another process holds.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable

import aiohttp
from aiohttp import web

from envs.errors import WarmRouteError
from warmroute.serve.app import RouterService
from warmroute.serve.config import ServeConfig
from warmroute.serve.routing import ServeRouter


async def check_backends(config: ServeConfig) -> None:
    """Refuse a backend that does not answer HTTP at all (any status will do: it is there)."""
    timeout = aiohttp.ClientTimeout(total=config.connect_timeout + 3.0, connect=config.connect_timeout)
    async with aiohttp.ClientSession() as session:
        for url in config.backends:
            try:
                async with session.get(f"{url.rstrip('/')}/health", timeout=timeout) as response:
                    await response.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                if isinstance(exc, aiohttp.ClientConnectorError):
                    reason = (exc.os_error.strerror or str(exc)).lower()
                else:
                    reason = "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
                raise WarmRouteError(
                    f"{{flag:backends}} {url}: unreachable ({reason}); start the engine first or fix the URL"
                ) from None


async def serve(config: ServeConfig, ready: Callable[[str], None] | None = None) -> None:
    """Run the router until a signal arrives; ``ready`` gets the URL it listens on."""
    router = ServeRouter(config.router, len(config.backends), config.seed)
    await check_backends(config)
    service = RouterService(config, router)
    runner = web.AppRunner(service.application(), access_log=None, handle_signals=False)
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
    (ready or _announce)(f"http://{config.host}:{port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _announce(url: str) -> None:
    print(f"warmroute serve: listening on {url}", flush=True)
    sys.stdout.flush()
