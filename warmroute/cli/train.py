"""``warmroute train``: PPO, cold or warm-started from a cloned policy with a scheduled KL to it.

Its flag builder (:func:`add_train_config_flags`) and parser (:func:`train_config_from_args`) are shared with
``warmroute sweep``, whose trials run the same ``TrainConfig``. Flags that would be ignored (PPO flags with
``--resume``, KL flags on a cold start, ...) are refused.
"""

from __future__ import annotations

import argparse
import dataclasses

from envs.errors import WarmRouteError
from rllib_ext.models import ARCHITECTURES
from rllib_ext.ray_runtime import configure
from rllib_ext.schedules import KL_SCHEDULES
from rllib_ext.train import train
from rllib_ext.train_config import PLACEMENTS, KLRefConfig, PPOSettings, TrainConfig
from warmroute.cli.flags import add_config_flags, add_flag, default_of, flag_of, given
from warmroute.cli.workload_args import add_workload_args, env_config_from_args

HELP = "PPO, cold or warm-started (KL to the cloned policy)"


WARM_ONLY = KLRefConfig.warm_only_fields()
"""Flags that only matter for a warm start (marked on their ``KLRefConfig`` fields)."""
# Flags a warm start takes from the checkpoint instead.
FROM_CHECKPOINT = ("architecture", "hidden")


RESUME_FLAGS = ("resume", "iterations", "quiet", "verbose")


def _refuse(names: list[str], why: str) -> None:
    if names:
        raise WarmRouteError(f"{flag_of(names[0])} {why}; drop it")


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A new run's config from the typed train and workload flags; refuses flags a cold or warm start would ignore."""
    typed = [name for name in vars(args) if name not in ("command", "func")]
    if hasattr(args, "enable_warm_start"):
        _refuse([n for n in typed if n in FROM_CHECKPOINT], "is ignored with --enable-warm-start (the clone's network is used)")
    else:
        _refuse([n for n in typed if n in WARM_ONLY], "only applies with --enable-warm-start")
    return TrainConfig(
        env=env_config_from_args(args, default_of(TrainConfig, "env")),
        ppo=PPOSettings(**given(args, PPOSettings)),
        kl=KLRefConfig(**given(args, KLRefConfig)),
        **given(args, TrainConfig),
    )


def _train_config(args: argparse.Namespace) -> tuple[TrainConfig, str, bool]:
    """The run's config, its directory and whether it resumes; refuses flags that would be ignored."""
    if hasattr(args, "resume"):
        typed = [name for name in vars(args) if name not in ("command", "func")]
        _refuse([n for n in typed if n not in RESUME_FLAGS], "is ignored with --resume (the run keeps its saved settings)")
        saved = TrainConfig.from_run(args.resume)
        return dataclasses.replace(saved, **given(args, TrainConfig)), args.resume, True
    if not hasattr(args, "output"):
        raise WarmRouteError("--output DIR is required (or --resume DIR to continue a run)")
    _refuse(
        ["placement"] if hasattr(args, "placement") else [],
        "only applies to `warmroute sweep` trials (a plain run reserves no placement group: docs/cluster.md)",
    )
    return train_config_from_args(args), args.output, False


def run(args: argparse.Namespace) -> int:
    config, run_dir, resume = _train_config(args)
    configure(verbose=hasattr(args, "verbose"), log_dir=run_dir)
    result = train(config, run_dir, resume=resume, progress=not hasattr(args, "quiet"))
    print(f"exported policy to {result['policy']}")
    return 0


def add_train_config_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of a TrainConfig (run, PPO, warm start, workload): shared by ``train`` and ``sweep``."""
    run = parser.add_argument_group("run")
    add_config_flags(
        run,
        TrainConfig,
        ("iterations", "num_env_runners", "num_learners", "cpus_per_env_runner", "placement", "checkpoint_every"),
        choices={"placement": tuple(PLACEMENTS)},
    )
    add_flag(run, "--quiet", "no per-iteration line", action="store_true")
    add_config_flags(
        parser.add_argument_group("PPO"),
        PPOSettings,
        [f.name for f in dataclasses.fields(PPOSettings)],
        choices={"architecture": ARCHITECTURES},
    )
    add_config_flags(
        parser.add_argument_group("warm start"),
        KLRefConfig,
        [f.name for f in dataclasses.fields(KLRefConfig)],
        choices={"kl_ref_schedule": KL_SCHEDULES},
    )
    add_workload_args(parser, default_of(TrainConfig, "env"))


def add_args(parser: argparse.ArgumentParser) -> None:
    add_train_config_flags(parser)
    run = parser.add_argument_group("output")
    add_flag(run, "--output", "new run directory (checkpoints/, tensorboard/, progress.jsonl, policy/)", metavar="DIR")
    add_flag(
        run,
        "--resume",
        "continue the run in this directory from its latest checkpoint, with its saved settings (only --iterations may change)",
        metavar="DIR",
    )
    add_flag(run, "--verbose", "also stream Ray's and the workers' logs (default: in DIR/ray-logs)", action="store_true")
