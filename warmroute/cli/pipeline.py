"""``warmroute pipeline``: the whole warm-start recipe in one resumable command (warmroute.pipeline.run, docs/pipeline.md).

``--budget`` picks a named budget; a budget flag (``--iterations``, ``--episodes``, ...) overrides one of its fields.
The workload flags are those of ``train``. Running it again on the same ``--output`` reuses finished stages.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from envs.evaluation.evaluate import format_table
from rllib_ext.ray_runtime import configure
from warmroute.artifacts.run_dir import PipelineDir
from warmroute.cli.flags import add_config_flags, add_flag, default_of, given
from warmroute.cli.workload_args import add_workload_args, env_config_from_args
from warmroute.pipeline.config import BUDGETS, Budget, PipelineConfig
from warmroute.pipeline.run import run_pipeline

HELP = "demos, BC, warm and cold PPO, evaluation, report; resumable"

PIPELINE_FIELDS = ("teacher", "num_env_runners", "held_out_trace_start", "held_out_trace_windows")
BUDGET_FIELDS = tuple(f.name for f in dataclasses.fields(Budget) if f.name != "name")


def add_args(parser: argparse.ArgumentParser) -> None:
    default_budget = default_of(PipelineConfig, "budget")
    add_flag(parser, "--output", "pipeline directory (a new one, or one to resume)", required=True, metavar="DIR")
    add_flag(
        parser,
        "--force",
        "redo the first stage whose settings changed and every stage after it (default: refuse the changed settings)",
        action="store_true",
    )
    add_flag(parser, "--quiet", "stage banners only (no progress bars or per-iteration lines)", action="store_true")
    add_flag(parser, "--verbose", "also stream Ray's and the workers' logs (default: in DIR/ray-logs)", action="store_true")
    add_config_flags(parser, PipelineConfig, PIPELINE_FIELDS)
    group = parser.add_argument_group(f"budget (override fields of the --budget preset; defaults shown: {default_budget.name})")
    add_flag(group, "--budget", "named stage sizes", choices=tuple(BUDGETS), shown_default=default_budget.name)
    add_config_flags(group, default_budget, BUDGET_FIELDS)
    add_workload_args(parser, default_of(PipelineConfig, "env"))


def pipeline_config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The typed flags over the config's defaults: the ``--budget`` preset with the typed budget fields replaced."""
    budget = BUDGETS[args.budget] if hasattr(args, "budget") else default_of(PipelineConfig, "budget")
    changes = given(args, Budget)
    if changes:
        budget = dataclasses.replace(budget, name=f"{budget.name}+overrides", **changes)
    settings = {k: v for k, v in given(args, PipelineConfig).items() if k in PIPELINE_FIELDS}
    return PipelineConfig(env=env_config_from_args(args, default_of(PipelineConfig, "env")), budget=budget, **settings)


def run(args: argparse.Namespace) -> int:
    config = pipeline_config_from_args(args)
    quiet = hasattr(args, "quiet")
    configure(verbose=hasattr(args, "verbose"), log_dir=args.output)
    state = run_pipeline(config, args.output, force=hasattr(args, "force"), progress=not quiet)
    pipeline = PipelineDir(args.output)
    print(format_table(json.loads(pipeline.evaluation.read_text())["policies"]))
    print(f"teacher {state['teacher']}; held-out seeds {state['seeds']['test']}")
    if pipeline.report.is_dir():
        print(f"report: {pipeline.report}/report.md")
    print(f"TensorBoard: tensorboard --logdir {pipeline.path}  (warm/tensorboard, cold/tensorboard)")
    return 0
