"""``warmroute``: the command-line entry point.

Subcommands:
  evaluate        run routing policies (heuristics or saved policies) over held-out seeds
  collect-demos   record heuristic routing decisions with parallel Ray env runners (Parquet)
  pretrain        behaviour-clone the PPO routing module from demonstrations
  train           PPO, cold or warm-started from a cloned policy with a scheduled KL to it
  compare         cold vs warm runs from their own logs, by env-step bucket

Any bad input exits with status 2 and one line naming the flag or file and the fix.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from envs.evaluation import HeuristicPolicy, Policy, evaluate_policy, evaluation_seeds, format_table
from envs.heuristics import is_router, router_names
from envs.observation import ObservationLayout
from envs.simulation import PredictorDataUnavailable
from envs.workload import WorkloadError
from rllib_ext.artifacts import ArtifactError
from warmroute.workload_args import add_workload_args, env_config_from_args


class UsageError(ValueError):
    """Bad command-line input; printed as one line, exit status 2."""


def _evaluate(args: argparse.Namespace) -> int:
    env_config = env_config_from_args(args)
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1 (got {args.episodes})")
    names = [name.strip() for name in args.policy.split(",") if name.strip()]
    if not names:
        raise UsageError("--policy: give at least one router name or checkpoint path")
    policies = [_make_policy(name, env_config.layout, args.greedy) for name in names]
    seeds = evaluation_seeds(env_config.workload.seed, args.episodes)
    results = {}
    with tqdm(total=len(policies) * len(seeds), desc="evaluate", unit="episode", disable=args.quiet) as bar:
        for policy in policies:
            bar.set_postfix_str(policy.name)
            results[policy.name] = evaluate_policy(policy, env_config, seeds, progress=bar)
    w = env_config.workload
    fleet = " + ".join(f"{w.devices.count(d)} x {d}" for d in dict.fromkeys(w.devices))
    print(f"workload {w.name}: {fleet}, qps {w.qps:g}, {w.num_requests} requests x {len(seeds)} held-out seeds")
    print(format_table(results))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"env_config": env_config.to_dict(), "policies": results}
        path.write_text(json.dumps(payload, indent=2))
        print(f"wrote {path}")
    return 0


def _make_policy(name: str, layout: ObservationLayout, greedy: bool) -> Policy:
    """A heuristic router by name, or a saved policy directory (BC or PPO) by path."""
    if is_router(name):
        return HeuristicPolicy(name, layout)
    if not Path(name).exists():
        raise UsageError(f"--policy: '{name}' is neither a router ({router_names()}) nor an existing policy directory")
    from rllib_ext.policy_io import CheckpointPolicy  # torch/ray import only when needed

    return CheckpointPolicy(name, layout, greedy=greedy)


def _collect_demos(args: argparse.Namespace) -> int:
    from rllib_ext.demos import DemoConfig, collect_demos

    config = DemoConfig(
        env=env_config_from_args(args), teachers=tuple(p.strip() for p in args.policy.split(",") if p.strip()),
        steps=args.steps, num_env_runners=args.num_env_runners, epsilon=args.epsilon,
        steps_per_round=args.steps_per_round, seed=args.seed if args.seed is not None else 0,
    )
    summary = collect_demos(config, args.output, progress=not args.quiet)
    print(f"wrote {summary['num_rows']} decisions to {args.output} "
          f"({summary['decisions_per_s']:.0f} decisions/s with {config.num_env_runners} env runners)")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from rllib_ext.bc import BCConfig, pretrain

    config = BCConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, label_smoothing=args.label_smoothing,
        validation_fraction=args.validation_fraction, patience=args.patience, architecture=args.architecture,
        hidden=args.hidden, num_replicas=args.replicas, seed=args.seed,
    )
    result = pretrain(args.demo, args.output, config, progress=not args.quiet)
    val = result["validation"]
    per_teacher = ", ".join(f"{t} {a:.3f}" for t, a in val["accuracy_per_teacher"].items())
    print(f"best epoch {result['best_epoch']}: validation accuracy {val['accuracy']:.3f} ({per_teacher}), "
          f"loss {val['loss']:.4f}; wrote {args.output}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from rllib_ext.train import train
    from rllib_ext.train_config import KLRefConfig, PPOSettings, TrainConfig

    config = TrainConfig(
        env=env_config_from_args(args),
        ppo=PPOSettings(
            lr=args.lr, gamma=args.gamma, lambda_=args.lambda_, train_batch_size=args.train_batch_size,
            minibatch_size=args.minibatch_size, num_epochs=args.num_epochs, clip_param=args.clip_param,
            entropy_coeff=args.entropy_coeff, vf_loss_coeff=args.vf_loss_coeff, vf_clip_param=args.vf_clip_param,
            grad_clip=args.grad_clip, architecture=args.architecture, hidden=args.hidden,
        ),
        kl=KLRefConfig(
            enable_warm_start=args.enable_warm_start, pretrained_actor_path=args.pretrained_actor_path,
            kl_ref_coef_initial=args.kl_ref_coef_initial, kl_ref_coef_final=args.kl_ref_coef_final,
            kl_ref_decay_steps=args.kl_ref_decay_steps, kl_ref_schedule=args.kl_ref_schedule,
            warmup_steps=args.warmup_steps if args.warmup_steps is not None else (DEFAULT_WARMUP_STEPS if args.enable_warm_start else 0),
            entropy_warmup_coef=args.entropy_warmup_coef,
            critic_warmup_steps=args.critic_warmup_steps, adaptive_warmup=args.adaptive_warmup,
            adaptive_balance_threshold=args.adaptive_balance_threshold, adaptive_kl_speedup=args.adaptive_kl_speedup,
        ),
        iterations=args.iterations if args.iterations is not None else (0 if args.resume else DEFAULT_ITERATIONS),
        num_env_runners=args.num_env_runners, num_learners=args.num_learners,
        checkpoint_every=args.checkpoint_every, seed=args.seed if args.seed is not None else 0,
    )
    if args.resume is None and args.output is None:
        raise UsageError("--output DIR is required (or --resume DIR to continue a run)")
    result = train(config, args.resume or args.output, resume=args.resume is not None, progress=not args.quiet)
    print(f"exported policy to {result['policy']}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from rllib_ext.compare import format_comparison, load_progress, plot_learning_curves

    names = [Path(run).name for run in args.runs]
    runs = {(name if names.count(name) == 1 else str(Path(run))): load_progress(run) for name, run in zip(names, args.runs)}
    print(format_comparison(runs))
    if args.plot:
        plot_learning_curves(runs, args.plot)
        print(f"wrote {args.plot}")
    return 0


DEFAULT_ITERATIONS = 30
DEFAULT_WARMUP_STEPS = 10_000


def _widths(text: str) -> tuple[int, ...]:
    """argparse type for ``--hidden 64,64`` (argparse turns the ValueError into a one-line usage error)."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 64,64 (got '{text}')") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive (got '{text}')")
    return widths


def _flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str, **kwargs: object) -> None:
    """Add ``--kebab-case`` with the ``--snake_case`` spelling as an alias."""
    spellings = [name] + ([name.replace("-", "_").replace("__", "--", 1)] if "-" in name[2:] else [])
    parser.add_argument(*spellings, **kwargs)


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("run")
    _flag(run, "--iterations", type=int, default=None,
          help=f"training iterations, each --train-batch-size env steps (default {DEFAULT_ITERATIONS}; with --resume: the saved run's)")
    _flag(run, "--num-env-runners", type=int, default=2, help="parallel env runners (0: sample in the driver)")
    _flag(run, "--num-learners", type=int, default=0, help="remote learner workers (0: learn in the driver)")
    _flag(run, "--output", default=None, help="new run directory (checkpoints/, tensorboard/, progress.jsonl, policy/)")
    _flag(run, "--checkpoint-every", type=int, default=10, help="iterations between checkpoints")
    _flag(run, "--resume", default=None, help="continue the run in this directory from its latest checkpoint")
    _flag(run, "--quiet", action="store_true", help="no per-iteration line")
    ppo = parser.add_argument_group("PPO")
    _flag(ppo, "--lr", type=float, default=3e-4)
    _flag(ppo, "--gamma", type=float, default=0.99)
    ppo.add_argument("--lambda", dest="lambda_", type=float, default=0.95, help="GAE lambda")
    _flag(ppo, "--train-batch-size", type=int, default=2048)
    _flag(ppo, "--minibatch-size", type=int, default=256)
    _flag(ppo, "--num-epochs", type=int, default=5)
    _flag(ppo, "--clip-param", type=float, default=0.2)
    _flag(ppo, "--entropy-coeff", type=float, default=0.0, help="entropy bonus after the warm-up")
    _flag(ppo, "--vf-loss-coeff", type=float, default=0.5)
    _flag(ppo, "--vf-clip-param", type=float, default=1e4)
    _flag(ppo, "--grad-clip", type=float, default=0.5)
    _flag(ppo, "--architecture", default="scorer", help="scorer or mlp (a warm start uses the checkpoint's)")
    _flag(ppo, "--hidden", type=_widths, default=(64, 64), help="hidden widths (a warm start uses the checkpoint's)")
    warm = parser.add_argument_group("warm start")
    _flag(warm, "--enable-warm-start", action="store_true", help="load --pretrained-actor-path and regularise towards it")
    _flag(warm, "--pretrained-actor-path", default=None, help="policy directory written by `warmroute pretrain`")
    _flag(warm, "--kl-ref-coef-initial", type=float, default=0.5)
    _flag(warm, "--kl-ref-coef-final", type=float, default=0.0)
    _flag(warm, "--kl-ref-decay-steps", type=int, default=60_000)
    _flag(warm, "--kl-ref-schedule", default="linear", help="linear, cosine, exponential or constant")
    _flag(warm, "--warmup-steps", type=int, default=None,
          help=f"env steps with the raised entropy coefficient (default {DEFAULT_WARMUP_STEPS} with --enable-warm-start, "
               "0 otherwise: plain cold-start PPO)")
    _flag(warm, "--entropy-warmup-coef", type=float, default=0.01)
    _flag(warm, "--critic-warmup-steps", type=int, default=4096, help="env steps training only the critic (warm start)")
    _flag(warm, "--adaptive-warmup", action="store_true", help="extend warm-up on low balance; faster KL decay once better than the teacher")
    _flag(warm, "--adaptive-balance-threshold", type=float, default=0.9)
    _flag(warm, "--adaptive-kl-speedup", type=float, default=2.0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warmroute", description="Warm-started RL request routing in Vidur.")
    sub = parser.add_subparsers(dest="command", required=True)

    evaluate = sub.add_parser("evaluate", help="evaluate routing policies on held-out seeds")
    evaluate.add_argument("--policy", required=True, help=f"comma-separated router names ({router_names()}) "
                          "and/or saved policy directories")
    evaluate.add_argument("--greedy", action="store_true", help="saved policies take their most likely action")
    evaluate.add_argument("--episodes", type=int, default=5, help="episodes (held-out seeds) per policy")
    evaluate.add_argument("--json", default=None, help="write per-policy metrics to this JSON file")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    add_workload_args(evaluate)
    evaluate.set_defaults(func=_evaluate)

    demos = sub.add_parser("collect-demos", help="record heuristic routing decisions with parallel Ray env runners")
    _flag(demos, "--policy", default="least_outstanding", help="comma-separated teacher routers (mixed into one dataset)")
    _flag(demos, "--steps", type=int, default=20_000, help="decisions to record per teacher")
    _flag(demos, "--num-env-runners", type=int, default=2, help="parallel env runners (Ray actors)")
    _flag(demos, "--epsilon", type=float, default=0.0, help="probability of a random action (labels stay the teacher's)")
    _flag(demos, "--steps-per-round", type=int, default=1024, help="decisions per runner per progress tick / shard")
    _flag(demos, "--output", required=True, help="new directory for Parquet shards and metadata.json")
    _flag(demos, "--quiet", action="store_true", help="no progress bar")
    add_workload_args(demos)
    demos.set_defaults(func=_collect_demos)

    bc = sub.add_parser("pretrain", help="behaviour-clone the PPO routing module from demonstrations")
    _flag(bc, "--demo", required=True, help="directory written by collect-demos")
    _flag(bc, "--output", required=True, help="new directory for the policy (RLlib module + metadata)")
    _flag(bc, "--epochs", type=int, default=60)
    _flag(bc, "--batch-size", type=int, default=256)
    _flag(bc, "--lr", type=float, default=3e-3)
    _flag(bc, "--label-smoothing", type=float, default=0.05, help="> 0 keeps the clone soft (finite KL later)")
    _flag(bc, "--validation-fraction", type=float, default=0.1, help="fraction of episodes held out")
    _flag(bc, "--patience", type=int, default=8, help="epochs without improvement before stopping")
    _flag(bc, "--architecture", default="scorer", help="scorer (permutation-equivariant) or mlp")
    _flag(bc, "--hidden", type=_widths, default=(64, 64), help="comma-separated hidden layer widths")
    _flag(bc, "--replicas", type=int, default=None, help="refuse demos made for another replica count")
    _flag(bc, "--seed", type=int, default=0)
    _flag(bc, "--quiet", action="store_true", help="no progress bar")
    bc.set_defaults(func=_pretrain)

    train = sub.add_parser("train", help="PPO, cold or warm-started (KL to the cloned policy)")
    _add_train_args(train)
    add_workload_args(train, reward_scale_s=10.0)
    train.set_defaults(func=_train)

    compare = sub.add_parser("compare", help="compare training runs by env-step bucket")
    compare.add_argument("--runs", nargs="+", required=True, help="run directories (e.g. COLD_DIR WARM_DIR)")
    compare.add_argument("--plot", default=None, help="also write learning curves to this PNG")
    compare.set_defaults(func=_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, WorkloadError, ArtifactError, PredictorDataUnavailable, ValueError, OSError) as exc:
        print(f"warmroute {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
