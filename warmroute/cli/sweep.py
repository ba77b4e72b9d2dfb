"""``warmroute sweep``: a Ray Tune sweep over train flags (tuning/), with the train and workload flags of ``train``.

The train flags set every trial's base settings; ``--space FILE`` (or the default space) says which of them vary.
``--output DIR`` is new; ``--output DIR --resume`` continues a killed sweep there without redoing finished trials.
"""

from __future__ import annotations

import argparse

from envs.errors import WarmRouteError
from tuning.sweep import SweepConfig
from warmroute.cli.flags import add_config_flags, add_flag, given
from warmroute.cli.train import add_train_config_flags, train_config_from_args

HELP = "Ray Tune sweep over warm-start/PPO settings"

SWEEP_FIELDS = (
    "num_samples",
    "max_concurrent",
    "search",
    "scheduler",
    "grace_period",
    "perturbation_interval",
    "eval_episodes",
    "max_failures",
)


def add_args(sweep: argparse.ArgumentParser) -> None:
    """Every train flag (the trials' base settings) plus the sweep's own."""
    from tuning.sweep import SCHEDULERS, SEARCHERS

    add_train_config_flags(sweep)
    group = sweep.add_argument_group("sweep")
    add_flag(group, "--output", "sweep directory: experiment/ (Tune), results.csv, results.md, best/", metavar="DIR")
    add_flag(group, "--resume", "continue the sweep in --output (finished trials are kept)", action="store_true")
    add_flag(
        group,
        "--space",
        "YAML/JSON file: train flag -> {uniform|loguniform|choice|grid: [...]} (default: the warm-start settings)",
        metavar="FILE",
    )
    add_config_flags(group, SweepConfig, SWEEP_FIELDS, choices={"search": SEARCHERS, "scheduler": SCHEDULERS})


def run(args: argparse.Namespace) -> int:
    from tuning.spaces import load_space
    from tuning.sweep import run_sweep

    if not hasattr(args, "output"):
        raise WarmRouteError("--output DIR is required (a new directory, or an existing sweep with --resume)")
    log = (lambda line: None) if hasattr(args, "quiet") else (lambda line: print(line, flush=True))
    if hasattr(args, "resume"):
        summary = run_sweep(None, args.output, resume=True, log=log)
    else:
        base = train_config_from_args(args)
        space = load_space(args.space, base) if hasattr(args, "space") else {}
        settings = {k: v for k, v in given(args, SweepConfig).items() if k in SWEEP_FIELDS}
        sweep = SweepConfig(train=base, space=space, **settings)
        summary = run_sweep(sweep, args.output, log=log)
    print(f"wrote {args.output}/results.csv and results.md ({len(summary['rows'])} trials)")
    best = summary["best"]
    if best is None:
        print("no trial finished its held-out evaluation: no best/")
        return 1
    print(f"best trial {best['trial']}: held-out {best['held_out_s']:.4f}s; policy in {args.output}/best")
    return 0
