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

``python -m warmroute.cli.serve ...`` is the same command without importing the other subcommands (and with them
Ray): a serving host then needs torch and vidur only, and the router starts in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from envs.errors import WarmRouteError
from envs.sim.devices import DEVICE_NAMES
from warmroute.cli.flags import HelpFormatter, OneLineParser, add_config_flags, add_flag, comma_list, flag_of, given
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
            "startup_wait",
            "request_timeout",
            "connect_timeout",
            "first_byte_timeout",
            "stream_idle_timeout",
            "scrape_interval",
            "backoff",
            "decision_log",
            "seed",
        ),
        choices={"device": DEVICE_NAMES},
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m warmroute.cli.serve``: parse, run, and report bad input in one line (exit 2) as ``warmroute`` does."""
    parser = OneLineParser(prog="warmroute serve", description=HELP, formatter_class=HelpFormatter)
    add_args(parser)
    args = parser.parse_args(argv)
    own = {action.dest: action.option_strings[0] for action in parser._actions if action.option_strings}
    try:
        return run(args)
    except WarmRouteError as exc:
        print(f"warmroute serve: error: {exc.render(lambda field: own.get(field) or flag_of(field))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
