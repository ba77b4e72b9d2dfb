"""``warmroute``: the command-line entry point.

Subcommands:
  evaluate        run routing policies (heuristics or saved policies) over held-out seeds
  collect-demos   record heuristic routing decisions with parallel Ray env runners (Parquet)
  pretrain        behaviour-clone the PPO routing module from demonstrations

Any bad input exits with status 2 and one line naming the flag or file and the fix.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from envs.evaluation import HeuristicPolicy, Policy, evaluate_policy, evaluation_seeds, format_table
from envs.heuristics import ROUTERS
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
    if name in ROUTERS:
        return HeuristicPolicy(name, layout)
    if not Path(name).exists():
        raise UsageError(f"--policy: '{name}' is neither a router ({', '.join(ROUTERS)}) nor an existing policy directory")
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
        hidden=tuple(int(h) for h in args.hidden.split(",")), num_replicas=args.replicas, seed=args.seed,
    )
    result = pretrain(args.demo, args.output, config, progress=not args.quiet)
    val = result["validation"]
    per_teacher = ", ".join(f"{t} {a:.3f}" for t, a in val["accuracy_per_teacher"].items())
    print(f"best epoch {result['best_epoch']}: validation accuracy {val['accuracy']:.3f} ({per_teacher}), "
          f"loss {val['loss']:.4f}; wrote {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warmroute", description="Warm-started RL request routing in Vidur.")
    sub = parser.add_subparsers(dest="command", required=True)

    evaluate = sub.add_parser("evaluate", help="evaluate routing policies on held-out seeds")
    evaluate.add_argument("--policy", required=True, help=f"comma-separated router names ({', '.join(ROUTERS)}) "
                          "and/or saved policy directories")
    evaluate.add_argument("--greedy", action="store_true", help="saved policies take their most likely action")
    evaluate.add_argument("--episodes", type=int, default=5, help="episodes (held-out seeds) per policy")
    evaluate.add_argument("--json", default=None, help="write per-policy metrics to this JSON file")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    add_workload_args(evaluate)
    evaluate.set_defaults(func=_evaluate)

    demos = sub.add_parser("collect-demos", help="record heuristic routing decisions with parallel Ray env runners")
    demos.add_argument("--policy", default="least_outstanding", help="comma-separated teacher routers (mixed into one dataset)")
    demos.add_argument("--steps", type=int, default=20_000, help="decisions to record per teacher")
    demos.add_argument("--num-env-runners", type=int, default=2, help="parallel env runners (Ray actors)")
    demos.add_argument("--epsilon", type=float, default=0.0, help="probability of a random action (labels stay the teacher's)")
    demos.add_argument("--steps-per-round", type=int, default=1024, help="decisions per runner per progress tick / shard")
    demos.add_argument("--output", required=True, help="new directory for Parquet shards and metadata.json")
    demos.add_argument("--quiet", action="store_true", help="no progress bar")
    add_workload_args(demos)
    demos.set_defaults(func=_collect_demos)

    bc = sub.add_parser("pretrain", help="behaviour-clone the PPO routing module from demonstrations")
    bc.add_argument("--demo", required=True, help="directory written by collect-demos")
    bc.add_argument("--output", required=True, help="new directory for the policy (RLlib module + metadata)")
    bc.add_argument("--epochs", type=int, default=60)
    bc.add_argument("--batch-size", type=int, default=256)
    bc.add_argument("--lr", type=float, default=3e-3)
    bc.add_argument("--label-smoothing", type=float, default=0.05, help="> 0 keeps the clone soft (finite KL later)")
    bc.add_argument("--validation-fraction", type=float, default=0.1, help="fraction of episodes held out")
    bc.add_argument("--patience", type=int, default=8, help="epochs without improvement before stopping")
    bc.add_argument("--architecture", default="scorer", help="scorer (permutation-equivariant) or mlp")
    bc.add_argument("--hidden", default="64,64", help="comma-separated hidden layer widths")
    bc.add_argument("--replicas", type=int, default=None, help="refuse demos made for another replica count")
    bc.add_argument("--seed", type=int, default=0)
    bc.add_argument("--quiet", action="store_true", help="no progress bar")
    bc.set_defaults(func=_pretrain)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, WorkloadError, ArtifactError, PredictorDataUnavailable, ValueError) as exc:
        print(f"warmroute {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
