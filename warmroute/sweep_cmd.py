"""``warmroute sweep``: a Ray Tune sweep over train flags (tuning/), with the train and workload flags of ``train``.

The train flags set every trial's base settings; ``--space FILE`` (or the default space) says which of them vary.
``--output DIR`` is new; ``--output DIR --resume`` continues a killed sweep there without redoing finished trials.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from warmroute.cli import DEFAULT_ITERATIONS, DEFAULT_WARMUP_STEPS, UsageError, _add_train_args, _flag
from warmroute.workload_args import add_workload_args, env_config_from_args


def add_sweep_parser(subparsers: Any) -> None:
    # conflict_handler="resolve": the sweep's own --output/--resume replace train's (a sweep resumes in --output)
    sweep = subparsers.add_parser("sweep", help="Ray Tune sweep over warm-start/PPO settings", conflict_handler="resolve")
    _add_train_args(sweep)
    add_workload_args(sweep, reward_scale_s=10.0)
    group = sweep.add_argument_group("sweep")
    _flag(group, "--output", default=None, help="sweep directory: experiment/ (Tune), results.csv, results.md, best/")
    _flag(group, "--resume", action="store_true", help="continue the sweep in --output (finished trials are kept)")
    _flag(group, "--num-samples", type=int, default=12, help="trials (with grid entries: repetitions of the grid)")
    _flag(group, "--max-concurrent", type=int, default=1, help="trials at once (each: 1 CPU + 1 per env runner)")
    _flag(group, "--search", default="optuna", help="optuna (TPE), random or grid")
    _flag(group, "--scheduler", default="asha", help="asha (early stopping), pbt (perturbs lr and KL coefficients) or fifo")
    _flag(group, "--space", default=None, help="YAML/JSON file: train flag -> {uniform|loguniform|choice|grid: [...]}; "
                                                "default: the warm-start settings")
    _flag(group, "--grace-period", type=int, default=None,
          help="ASHA: iterations before a trial may be stopped (default: a quarter of --iterations)")
    _flag(group, "--perturbation-interval", type=int, default=2, help="PBT: iterations between exploits (and checkpoints)")
    _flag(group, "--eval-episodes", type=int, default=3, help="held-out episodes scoring each finished trial")
    _flag(group, "--max-failures", type=int, default=2, help="retries of a failed trial, from its last checkpoint")
    sweep.set_defaults(func=run_sweep)


def train_config_from_args(args: argparse.Namespace) -> Any:
    """The base ``TrainConfig``: train flags are named after its fields, so each field reads its own flag."""
    from rllib_ext.train_config import KLRefConfig, PPOSettings, TrainConfig

    ppo = PPOSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PPOSettings)})
    kl = {f.name: getattr(args, f.name) for f in dataclasses.fields(KLRefConfig)}
    if kl["warmup_steps"] is None:
        kl["warmup_steps"] = DEFAULT_WARMUP_STEPS if args.enable_warm_start else 0
    return TrainConfig(env=env_config_from_args(args), ppo=ppo, kl=KLRefConfig(**kl),
                       iterations=args.iterations if args.iterations is not None else DEFAULT_ITERATIONS,
                       num_env_runners=args.num_env_runners, num_learners=args.num_learners,
                       cpus_per_env_runner=args.cpus_per_env_runner, checkpoint_every=args.checkpoint_every,
                       seed=args.seed if args.seed is not None else 0)


def run_sweep(args: argparse.Namespace) -> int:
    from tuning.spaces import load_space
    from tuning.sweep import SweepConfig
    from tuning.sweep import run_sweep as run

    if args.output is None:
        raise UsageError("--output DIR is required (a new directory, or an existing sweep with --resume)")
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    if args.resume:
        summary = run(None, args.output, resume=True, log=log)
    else:
        base = train_config_from_args(args)
        base.validate()
        sweep = SweepConfig(train=base, space=load_space(args.space, base) if args.space else {},
                            num_samples=args.num_samples, max_concurrent=args.max_concurrent, search=args.search,
                            scheduler=args.scheduler, grace_period=args.grace_period,
                            perturbation_interval=args.perturbation_interval, eval_episodes=args.eval_episodes,
                            max_failures=args.max_failures)
        summary = run(sweep, args.output, log=log)
    print(f"wrote {args.output}/results.csv and results.md ({len(summary['rows'])} trials)")
    best = summary["best"]
    if best is None:
        print("no trial finished its held-out evaluation: no best/")
        return 1
    print(f"best trial {best['trial']}: held-out {best['held_out_s']:.4f}s; policy in {args.output}/best")
    return 0
