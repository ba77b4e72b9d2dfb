"""``warmroute replay``: replay a window of a Mooncake-format trace against OpenAI-compatible endpoints.

Usage::

    warmroute replay --url http://127.0.0.1:8000 --trace-start 2000 --num-requests 60 --output requests.jsonl
    warmroute replay --url http://127.0.0.1:8001,http://127.0.0.1:8002 --time-scale 0.25   # round robin itself

Prompts are token ids (``hash_ids`` become fixed token blocks, so shared blocks are shared tokens), scaled to a tiny
model (warmroute/realengine/prompts.py). It prints mean/p50/p90 TTFT, mean e2e and the hit rate (cached / prompt
tokens, from each response's ``usage.prompt_tokens_details.cached_tokens``). More in docs/serve.md.
"""

from __future__ import annotations

import argparse
import asyncio

from envs.prefix.workloads import load_trace, trace_file
from warmroute.cli.flags import add_config_flags, add_flag, comma_list, given
from warmroute.realengine.prompts import ScaleConfig, scale_window
from warmroute.realengine.replay import (
    TABLE_HEADER,
    ReplayConfig,
    format_summary,
    replay,
    summarize,
    write_records,
)

HELP = "replay a trace window against OpenAI-compatible endpoints; TTFT, e2e, hit rate (docs/serve.md)"


def run(args: argparse.Namespace) -> int:
    values = given(args, ReplayConfig)
    values["urls"] = tuple(url for group in values.get("urls", ()) for url in group)
    config = ReplayConfig(**values)
    scale = ScaleConfig(**given(args, ScaleConfig))
    source = config.trace if config.trace == "mooncake" else f"jsonl:{config.trace}"
    rows = load_trace(trace_file(source))
    requests = scale_window(rows, config.trace_start, config.num_requests, scale, config.time_scale)
    records = asyncio.run(replay(requests, list(config.urls), model=config.model, timeout_s=config.timeout))
    if config.output:
        write_records(records, config.output)
        print(f"wrote {config.output}")
    print(TABLE_HEADER)
    print(format_summary(",".join(config.urls) if len(config.urls) == 1 else "client round robin", summarize(records)))
    return 0


def add_args(parser: argparse.ArgumentParser) -> None:
    add_flag(
        parser,
        "--url",
        "endpoint base URL; repeat the flag or give a comma list (several: the replayer routes round robin)",
        dest="urls",
        action="append",
        type=comma_list,
        metavar="URL",
        required=True,
    )
    add_config_flags(parser, ReplayConfig, ("trace", "trace_start", "num_requests", "time_scale", "model", "timeout", "output"))
    add_config_flags(parser, ScaleConfig, ("block_size", "max_blocks", "max_output_tokens", "vocab_size"))
