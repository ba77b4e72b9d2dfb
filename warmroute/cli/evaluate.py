"""``warmroute evaluate``: run routing policies (heuristics or saved policies) over held-out seeds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from envs.errors import WarmRouteError
from envs.evaluation.evaluate import EvaluationConfig, HeuristicPolicy, Policy, evaluate_policy, format_table, save_latencies
from envs.observation import ObservationLayout
from envs.routers.heuristics import is_router, router_names
from rllib_ext.policy_io import CheckpointPolicy
from warmroute.cli.flags import add_config_flags, add_flag, default_of, given
from warmroute.cli.workload_args import add_workload_args, env_config_from_args

HELP = "evaluate routing policies on held-out seeds"


def run(args: argparse.Namespace) -> int:
    config = EvaluationConfig(
        env=env_config_from_args(args, default_of(EvaluationConfig, "env")), **given(args, EvaluationConfig)
    )
    if config.greedy and all(is_router(name) for name in config.policies):
        raise WarmRouteError("--greedy only changes saved policies and --policy lists routers only; drop it")
    latencies = getattr(args, "latencies", None)
    if latencies is not None and not latencies.endswith(".npz"):
        raise WarmRouteError(f"--latencies {latencies}: give a path ending in .npz")
    policies = [make_policy(name, config.env.layout, config.greedy) for name in config.policies]
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
    episodes = f"{config.episodes} {'trace windows' if w.is_trace else 'held-out seeds'}"
    print(f"workload {w.name}: {w.fleet}, {w.traffic}, {w.num_requests} requests x {episodes}")
    print(format_table(results))
    if hasattr(args, "json"):
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"env_config": config.env.to_dict(), "policies": results}, indent=2))
        print(f"wrote {path}")
    return 0


def make_policy(name: str, layout: ObservationLayout, greedy: bool) -> Policy:
    """A heuristic router by name, or a saved policy directory (BC or PPO) by path."""
    if is_router(name):
        return HeuristicPolicy(name, layout)
    if not Path(name).exists():
        raise WarmRouteError(f"--policy: '{name}' is neither a router ({router_names()}) nor an existing policy directory")
    return CheckpointPolicy(name, layout, greedy=greedy)


def add_args(parser: argparse.ArgumentParser) -> None:
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
