"""``warmroute report``: rebuild a pipeline directory's report (report.md, report.json, PNGs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from warmroute.cli.flags import add_flag
from warmroute.report.build import write_report

HELP = "rebuild a pipeline's report: tables, held-out learning curves, plots"


def run(args: argparse.Namespace) -> int:
    path = write_report(Path(args.pipeline))
    plots = sorted(p.name for p in path.parent.glob("*.png"))
    print(f"wrote {path}, {path.with_suffix('.json').name} and {len(plots)} plots ({', '.join(plots)})")
    return 0


def add_args(parser: argparse.ArgumentParser) -> None:
    add_flag(
        parser, "--pipeline", "directory written by `warmroute pipeline` (its report/ is replaced)", required=True, metavar="DIR"
    )
