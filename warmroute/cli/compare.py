"""``warmroute compare``: training runs side by side by env-step bucket, from their own logs."""

from __future__ import annotations

import argparse
from pathlib import Path

from warmroute.cli.flags import add_flag
from warmroute.report.compare import format_comparison, load_progress, plot_learning_curves

HELP = "compare training runs by env-step bucket"


def run(args: argparse.Namespace) -> int:
    names = [Path(run).name for run in args.runs]
    runs = {(name if names.count(name) == 1 else str(Path(run))): load_progress(run) for name, run in zip(names, args.runs)}
    print(format_comparison(runs))
    if hasattr(args, "plot"):
        plot_learning_curves(runs, args.plot)
        print(f"wrote {args.plot}")
    return 0


def add_args(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "--runs", "run directories (e.g. COLD_DIR WARM_DIR)", nargs="+", required=True, metavar="DIR")
    add_flag(
        parser,
        "--plot",
        "also write training-episode curves (sampled policy, training seeds) to this PNG; "
        "for held-out curves see `warmroute report`",
        metavar="PATH",
    )
