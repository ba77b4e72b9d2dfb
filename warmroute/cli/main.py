"""``warmroute``: the command-line entry point. Each subcommand lives in its own module of this package and offers
``HELP``, ``add_args(parser)`` and ``run(args) -> int``:

  evaluate        run routing policies (heuristics or saved policies) over held-out seeds
  collect-demos   record heuristic routing decisions with parallel Ray env runners (Parquet)
  pretrain        behaviour-clone the PPO routing module from demonstrations
  train           PPO, cold or warm-started from a cloned policy with a scheduled KL to it
  compare         cold vs warm runs from their own logs, by env-step bucket
  report          rebuild a pipeline directory's report (report.md, report.json, PNGs)
  export          a saved policy as a TorchScript router for deployment (docs/deploy.md)
  serve           an OpenAI-compatible HTTP router in front of real engines, with any router (docs/serve_router.md)
  replay          replay a trace window against OpenAI-compatible endpoints (TTFT, e2e, hit rate)
  pipeline        the whole recipe in one resumable command (warmroute/pipeline/)
  sweep           Ray Tune sweep over the warm-start settings (tuning/)
  submit          run any of these on a Ray cluster through Ray Jobs

Flags follow one rule set (``warmroute.cli.flags``, docs/cli.md): ``--kebab-case``, with the ``--snake_case``
spelling accepted for every multi-word flag; every flag has help, and ``choices`` where its values are a fixed set.
Each subcommand parses into its config dataclass, which defines every default: ``--help`` shows them, and the CLI
passes on only what was typed.

Any bad input exits with status 2 and one line naming the flag or file and the fix (a ``WarmRouteError``, whose
config field names this module spells as the subcommand's flags); any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from types import ModuleType

from envs.errors import WarmRouteError
from warmroute.cli import (
    collect_demos,
    compare,
    evaluate,
    export,
    pipeline,
    pretrain,
    replay,
    report,
    serve,
    submit,
    sweep,
    train,
)
from warmroute.cli.flags import HelpFormatter, OneLineParser, flag_of

SUBCOMMANDS: dict[str, ModuleType] = {
    "evaluate": evaluate,
    "collect-demos": collect_demos,
    "pretrain": pretrain,
    "train": train,
    "compare": compare,
    "report": report,
    "export": export,
    "serve": serve,
    "replay": replay,
    "pipeline": pipeline,
    "submit": submit,
    "sweep": sweep,
}


def _runner(name: str, module: ModuleType) -> Callable[[argparse.Namespace], int]:
    if name == "submit":  # submit parses the job's command with this parser, which it cannot import back
        return lambda args: submit.run(args, build_parser)
    return module.run


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="warmroute", description="Warm-started RL request routing in Vidur.", formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=module.HELP, description=module.HELP, formatter_class=HelpFormatter)
        module.add_args(command)
        command.set_defaults(func=_runner(name, module))
    return parser


def flag_speller(parser: argparse.ArgumentParser, command: str) -> Callable[[str], str]:
    """Config field -> the flag that sets it on ``command`` (its own flags first: ``num_replicas`` is ``--replicas``
    on ``export``), else the field's ``--kebab-case`` spelling."""
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    own = {a.dest: a.option_strings[0] for a in subcommands.choices[command]._actions if a.option_strings}
    return lambda field: own.get(field) or flag_of(field)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except WarmRouteError as exc:
        print(f"warmroute {args.command}: error: {exc.render(flag_speller(parser, args.command))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
