"""``warmroute collect-demos``: record heuristic routing decisions with parallel Ray env runners (Parquet)."""

from __future__ import annotations

import argparse

from envs.routers.heuristics import router_names
from rllib_ext.demos import DemoConfig, collect_demos
from warmroute.cli.flags import add_config_flags, add_flag, default_of, given
from warmroute.cli.workload_args import add_workload_args, env_config_from_args

HELP = "record heuristic routing decisions with parallel Ray env runners"


def run(args: argparse.Namespace) -> int:
    config = DemoConfig(env=env_config_from_args(args, default_of(DemoConfig, "env")), **given(args, DemoConfig))
    summary = collect_demos(config, args.output, progress=not hasattr(args, "quiet"))
    print(
        f"wrote {summary['num_rows']} decisions to {args.output} "
        f"({summary['decisions_per_s']:.0f} decisions/s with {config.num_env_runners} env runners)"
    )
    return 0


def add_args(parser: argparse.ArgumentParser) -> None:
    add_config_flags(
        parser,
        DemoConfig,
        ("teachers", "steps", "num_env_runners", "epsilon", "steps_per_round"),
        flags={"teachers": "--policy"},
        help={"teachers": f"comma-separated teacher routers, mixed into one dataset ({router_names()})"},
    )
    add_flag(parser, "--output", "new directory for Parquet shards and metadata.json", required=True, metavar="DIR")
    add_flag(parser, "--quiet", "no progress bar", action="store_true")
    add_workload_args(parser, default_of(DemoConfig, "env"))
