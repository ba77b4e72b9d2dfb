"""``warmroute``: the command-line entry point.

Subcommands:
  evaluate   run routing policies over held-out seeds and print/save latency, throughput and balance

Any bad input exits with status 2 and one line naming the flag or file and the fix.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from envs.evaluation import HeuristicPolicy, evaluate_policy, evaluation_seeds, format_table
from envs.simulation import PredictorDataUnavailable
from envs.workload import WorkloadError
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
    policies = [HeuristicPolicy(name, env_config.layout) for name in names]
    seeds = evaluation_seeds(env_config.workload.seed, args.episodes)
    results = {}
    with tqdm(total=len(policies) * len(seeds), desc="evaluate", unit="episode", disable=args.quiet) as bar:
        for policy in policies:
            bar.set_postfix_str(policy.name)
            results[policy.name] = evaluate_policy(policy, env_config, seeds, progress=bar)
    print(f"workload {env_config.workload.name}: {env_config.workload.num_replicas} x {','.join(sorted(set(env_config.workload.devices)))}, "
          f"qps {env_config.workload.qps:g}, {env_config.workload.num_requests} requests x {len(seeds)} held-out seeds")
    print(format_table(results))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"env_config": env_config.to_dict(), "policies": results}
        path.write_text(json.dumps(payload, indent=2))
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warmroute", description="Warm-started RL request routing in Vidur.")
    sub = parser.add_subparsers(dest="command", required=True)

    evaluate = sub.add_parser("evaluate", help="evaluate routing policies on held-out seeds")
    evaluate.add_argument("--policy", required=True, help="comma-separated router names (round_robin, random, lor, "
                          "least_outstanding, least_work, power_of_two, speed_aware)")
    evaluate.add_argument("--episodes", type=int, default=5, help="episodes (held-out seeds) per policy")
    evaluate.add_argument("--json", default=None, help="write per-policy metrics to this JSON file")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    add_workload_args(evaluate)
    evaluate.set_defaults(func=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, WorkloadError, PredictorDataUnavailable, ValueError, FileNotFoundError) as exc:
        print(f"warmroute {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
