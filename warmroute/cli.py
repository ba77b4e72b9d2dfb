"""``warmroute``: the command-line entry point.

Subcommands:
  evaluate        run routing policies (heuristics or saved policies) over held-out seeds
  collect-demos   record heuristic routing decisions with parallel Ray env runners (Parquet)
  pretrain        behaviour-clone the PPO routing module from demonstrations
  train           PPO, cold or warm-started from a cloned policy with a scheduled KL to it
  compare         cold vs warm runs from their own logs, by env-step bucket
  report          rebuild a pipeline directory's report (report.md, report.json, PNGs)
  export          a saved policy as a TorchScript router for deployment (rllib_ext/export.py, docs/deploy.md)
  pipeline        the whole recipe in one resumable command (warmroute/pipeline_cmd.py, rllib_ext/pipeline.py)
  sweep           Ray Tune sweep over the warm-start settings (warmroute/sweep_cmd.py, tuning/)
  submit          run any of these on a Ray cluster through Ray Jobs

Flags follow one rule set (``warmroute.flags``, docs/cli.md): ``--kebab-case``, with the ``--snake_case`` spelling
accepted for every multi-word flag; every flag has help, and ``choices`` where its values are a fixed set. Each
subcommand parses into its config dataclass (``EvaluationConfig``, ``DemoConfig``, ``BCConfig``, ``TrainConfig``),
which defines every default: ``--help`` shows them, and the CLI passes on only what was typed. Flags that would be
ignored (PPO flags with ``--resume``, KL flags on a cold start, ...) are refused.

Any bad input exits with status 2 and one line naming the flag or file and the fix (a ``WarmRouteError``); any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from envs.errors import WarmRouteError
from envs.evaluation import EvaluationConfig, HeuristicPolicy, Policy, evaluate_policy, format_table, save_latencies
from envs.heuristics import is_router, router_names
from envs.observation import ObservationLayout
from rllib_ext.bc import BCConfig, pretrain
from rllib_ext.compare import format_comparison, load_progress, plot_learning_curves
from rllib_ext.demos import DemoConfig, collect_demos
from rllib_ext.export import ExportConfig, export_router
from rllib_ext.models import ARCHITECTURES
from rllib_ext.policy_io import CheckpointPolicy
from rllib_ext.report import write_report
from rllib_ext.schedules import KL_SCHEDULES
from rllib_ext.train import train
from rllib_ext.train_config import PLACEMENTS, KLRefConfig, PPOSettings, TrainConfig
from warmroute.flags import HelpFormatter, OneLineParser, add_config_flags, add_flag, default_of, flag_of, given
from warmroute.pipeline_cmd import add_pipeline_args, run_pipeline_command
from warmroute.submit import add_submit_args, run_submit
from warmroute.workload_args import add_workload_args, env_config_from_args

# Flags that only matter for a warm start, and flags a warm start takes from the checkpoint instead.
WARM_ONLY = (
    "pretrained_actor_path",
    "kl_ref_coef_initial",
    "kl_ref_coef_final",
    "kl_ref_decay_steps",
    "kl_ref_schedule",
    "critic_warmup_steps",
    "adaptive_kl_speedup",
)
FROM_CHECKPOINT = ("architecture", "hidden")
RESUME_FLAGS = ("resume", "iterations", "quiet")


def _refuse(names: list[str], why: str) -> None:
    if names:
        raise WarmRouteError(f"{flag_of(names[0])} {why}; drop it")


def _evaluate(args: argparse.Namespace) -> int:
    config = EvaluationConfig(
        env=env_config_from_args(args, default_of(EvaluationConfig, "env")), **given(args, EvaluationConfig)
    )
    if config.greedy and all(is_router(name) for name in config.policies):
        raise WarmRouteError("--greedy only changes saved policies and --policy lists routers only; drop it")
    latencies = getattr(args, "latencies", None)
    if latencies is not None and not latencies.endswith(".npz"):
        raise WarmRouteError(f"--latencies {latencies}: give a path ending in .npz")
    policies = [_make_policy(name, config.env.layout, config.greedy) for name in config.policies]
    results = {}
    quiet = hasattr(args, "quiet")
    with tqdm(total=len(policies) * config.episodes, desc="evaluate", unit="episode", disable=quiet) as bar:
        for policy in policies:
            bar.set_postfix_str(policy.name)
            results[policy.name] = evaluate_policy(
                policy, config.env, config.seeds, progress=bar, per_request=latencies is not None
            )
    if latencies is not None:
        results = save_latencies(latencies, results)
        print(f"wrote per-request latencies to {latencies}")
    w = config.env.workload
    fleet = " + ".join(f"{w.devices.count(d)} x {d}" for d in dict.fromkeys(w.devices))
    if w.prefix_workload in ("none", "shared_prefix", "multi_turn"):
        traffic = f"qps {w.qps:g}, {w.num_requests} requests x {config.episodes} held-out seeds"
    else:  # a trace replays its own arrivals: episodes are windows, not seeds
        traffic = f"trace time scale {w.trace_time_scale:g}, {w.num_requests} requests from trace request {w.trace_start}"
    print(f"workload {w.name}: {fleet}, {traffic}")
    print(format_table(results))
    if hasattr(args, "json"):
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"env_config": config.env.to_dict(), "policies": results}, indent=2))
        print(f"wrote {path}")
    return 0


def _make_policy(name: str, layout: ObservationLayout, greedy: bool) -> Policy:
    """A heuristic router by name, or a saved policy directory (BC or PPO) by path."""
    if is_router(name):
        return HeuristicPolicy(name, layout)
    if not Path(name).exists():
        raise WarmRouteError(f"--policy: '{name}' is neither a router ({router_names()}) nor an existing policy directory")
    return CheckpointPolicy(name, layout, greedy=greedy)


def _collect_demos(args: argparse.Namespace) -> int:
    config = DemoConfig(env=env_config_from_args(args, default_of(DemoConfig, "env")), **given(args, DemoConfig))
    summary = collect_demos(config, args.output, progress=not hasattr(args, "quiet"))
    print(
        f"wrote {summary['num_rows']} decisions to {args.output} "
        f"({summary['decisions_per_s']:.0f} decisions/s with {config.num_env_runners} env runners)"
    )
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    result = pretrain(args.demo, args.output, BCConfig(**given(args, BCConfig)), progress=not hasattr(args, "quiet"))
    val = result["validation"]
    per_teacher = ", ".join(f"{t} {a:.3f}" for t, a in val["accuracy_per_teacher"].items())
    print(
        f"best epoch {result['best_epoch']}: validation accuracy {val['accuracy']:.3f} ({per_teacher}), "
        f"loss {val['loss']:.4f}; wrote {args.output}"
    )
    return 0


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


def _train(args: argparse.Namespace) -> int:
    config, run_dir, resume = _train_config(args)
    result = train(config, run_dir, resume=resume, progress=not hasattr(args, "quiet"))
    print(f"exported policy to {result['policy']}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    names = [Path(run).name for run in args.runs]
    runs = {(name if names.count(name) == 1 else str(Path(run))): load_progress(run) for name, run in zip(names, args.runs)}
    print(format_comparison(runs))
    if hasattr(args, "plot"):
        plot_learning_curves(runs, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _report(args: argparse.Namespace) -> int:
    path = write_report(Path(args.pipeline))
    plots = sorted(p.name for p in path.parent.glob("*.png"))
    print(f"wrote {path}, {path.with_suffix('.json').name} and {len(plots)} plots ({', '.join(plots)})")
    return 0


def _export(args: argparse.Namespace) -> int:
    config = ExportConfig(**given(args, ExportConfig))
    info = export_router(config)
    rule = "any replica count" if info["replicas"] == "any" else f"{info['replicas']} replicas only"
    print(
        f"wrote {config.output}: {info['architecture']} router for {rule} (checked against the policy on "
        f"{info['checked_on_replicas']} replicas, max logit gap {info['probe_max_logit_gap']:.1e})"
    )
    return 0


def _add_export_args(parser: argparse.ArgumentParser) -> None:
    add_config_flags(
        parser,
        ExportConfig,
        ("policy", "output", "num_replicas"),
        flags={"num_replicas": "--replicas"},
        required=("policy", "output"),
    )


def _add_evaluate_args(parser: argparse.ArgumentParser) -> None:
    add_config_flags(
        parser,
        EvaluationConfig,
        ("policies", "episodes", "greedy"),
        flags={"policies": "--policy"},
        required=("policies",),
        help={"policies": f"comma-separated router names ({router_names()}) and/or saved policy directories"},
    )
    add_flag(parser, "--json", "write per-policy metrics to this JSON file", metavar="PATH")
    add_flag(
        parser,
        "--latencies",
        "also write each policy's per-request e2e and TTFT latencies (s) to this .npz (the report's latency CDF)",
        metavar="PATH",
    )
    add_flag(parser, "--quiet", "no progress bar", action="store_true")
    add_workload_args(parser, default_of(EvaluationConfig, "env"))


def _add_demo_args(parser: argparse.ArgumentParser) -> None:
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


def _add_pretrain_args(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "--demo", "directory written by collect-demos", required=True, metavar="DIR")
    add_flag(parser, "--output", "new directory for the policy (RLlib module + metadata)", required=True, metavar="DIR")
    add_config_flags(
        parser,
        BCConfig,
        (
            "epochs",
            "batch_size",
            "lr",
            "label_smoothing",
            "validation_fraction",
            "patience",
            "architecture",
            "hidden",
            "num_replicas",
            "seed",
        ),
        flags={"num_replicas": "--replicas"},
        choices={"architecture": ARCHITECTURES},
    )
    add_flag(parser, "--quiet", "no progress bar", action="store_true")


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


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    add_train_config_flags(parser)
    run = parser.add_argument_group("output")
    add_flag(run, "--output", "new run directory (checkpoints/, tensorboard/, progress.jsonl, policy/)", metavar="DIR")
    add_flag(
        run,
        "--resume",
        "continue the run in this directory from its latest checkpoint, with its saved settings (only --iterations may change)",
        metavar="DIR",
    )


def _add_compare_args(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "--runs", "run directories (e.g. COLD_DIR WARM_DIR)", nargs="+", required=True, metavar="DIR")
    add_flag(
        parser,
        "--plot",
        "also write training-episode curves (sampled policy, training seeds) to this PNG; "
        "for held-out curves see `warmroute report`",
        metavar="PATH",
    )


def _add_report_args(parser: argparse.ArgumentParser) -> None:
    add_flag(
        parser, "--pipeline", "directory written by `warmroute pipeline` (its report/ is replaced)", required=True, metavar="DIR"
    )


SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "evaluate": ("evaluate routing policies on held-out seeds", _add_evaluate_args, _evaluate),
    "collect-demos": ("record heuristic routing decisions with parallel Ray env runners", _add_demo_args, _collect_demos),
    "pretrain": ("behaviour-clone the PPO routing module from demonstrations", _add_pretrain_args, _pretrain),
    "train": ("PPO, cold or warm-started (KL to the cloned policy)", _add_train_args, _train),
    "compare": ("compare training runs by env-step bucket", _add_compare_args, _compare),
    "report": ("rebuild a pipeline's report: tables, held-out learning curves, plots", _add_report_args, _report),
    "export": ("write a saved policy as a TorchScript router (raw features in, replica out)", _add_export_args, _export),
    "pipeline": ("demos, BC, warm and cold PPO, evaluation, report; resumable", add_pipeline_args, run_pipeline_command),
    "submit": ("run a warmroute command on a Ray cluster (Ray Jobs)", add_submit_args, run_submit),
}


def _subcommands() -> dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]]:
    from warmroute.sweep_cmd import add_sweep_args, run_sweep  # it builds on this module's train flags

    return {**SUBCOMMANDS, "sweep": ("Ray Tune sweep over warm-start/PPO settings", add_sweep_args, run_sweep)}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="warmroute", description="Warm-started RL request routing in Vidur.", formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (text, add_args, run) in _subcommands().items():
        command = sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)
        add_args(command)
        command.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WarmRouteError as exc:
        print(f"warmroute {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
