"""``warmroute serve``: an OpenAI-compatible HTTP router in front of N backends (vLLM or any OpenAI server).

Usage::

    warmroute serve --backend http://127.0.0.1:8001 --backend http://127.0.0.1:8002 \\
        --router round_robin --port 8000 --block-size 32 --decision-log decisions.jsonl
    warmroute serve --backend http://127.0.0.1:8001,http://127.0.0.1:8002 --router router.pt    # exported policy
    warmroute serve --backend ... --router kv_cost:overlap_score_weight=2                       # production router

It prints ``warmroute serve: listening on http://HOST:PORT`` once it accepts requests and runs until SIGINT or
SIGTERM. Endpoints: POST /v1/completions and /v1/chat/completions (``"stream": true`` passes SSE through),
GET /v1/models, /health, /metrics. Each answer carries ``X-WarmRoute-Backend`` (index in --backend order) and
``X-Request-Id`` (the client's, or a new one). More in docs/serve_router.md.
"""

from __future__ import annotations

import argparse
import asyncio

from warmroute.cli.flags import add_config_flags, add_flag, comma_list, given
from warmroute.serve.config import ServeConfig
from warmroute.serve.server import serve

HELP = "route OpenAI-style requests to N backends with any WarmRoute router (docs/serve_router.md)"


def run(args: argparse.Namespace) -> int:
    values = given(args, ServeConfig)
    values["backends"] = tuple(url for group in values.get("backends", ()) for url in group)
    asyncio.run(serve(ServeConfig(**values)))
    return 0


def add_args(parser: argparse.ArgumentParser) -> None:
    add_flag(
        parser,
        "--backend",
        "backend base URL (an OpenAI-compatible server such as vLLM); repeat the flag or give a comma list",
        dest="backends",
        action="append",
        type=comma_list,
        metavar="URL",
        required=True,
    )
    add_config_flags(
        parser,
        ServeConfig,
        (
            "router",
            "host",
            "port",
            "block_size",
            "index_blocks",
            "cache_blocks",
            "device",
            "backend_devices",
            "model",
            "request_timeout",
            "connect_timeout",
            "first_byte_timeout",
            "stream_idle_timeout",
            "scrape_interval",
            "backoff",
            "decision_log",
            "seed",
        ),
    )
