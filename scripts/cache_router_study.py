"""Tune every cache-aware router family on training episodes, then compare them all on held-out episodes.

Tuning: each family's parameter grid (below) is run on training episodes and the setting with the lowest mean e2e
latency is kept. Evaluation: ``least_outstanding``, ``speed_aware``, every family with its published defaults and
tuned, on held-out episodes. Training and evaluation never share an episode: on a trace they are disjoint slices
(training windows start at 2000/4000/6000, evaluation windows at 9000/10000/11000, each after a 2000-request
unscored lead-in); on a generated workload training seeds are < 2^31 and evaluation seeds >= 2^31.

Run:
    .venv/bin/python scripts/cache_router_study.py --workload shared_prefix --json results/study_shared_prefix.json
    .venv/bin/python scripts/cache_router_study.py --workload mooncake --num-requests 256 --json results/study_mooncake.json

Expect (2-core x86, under load from other jobs; docs/prefix_caching.md has the tables): 10-30 minutes per preset.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from envs.evaluation.evaluate import HeuristicPolicy, evaluation_seeds, format_table, play_episode
from envs.routers.cache_aware import CACHE_ROUTERS, router_name
from envs.sim.metrics import request_latencies, summarize
from envs.sim.workload import WorkloadConfig, WorkloadError
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv
from warmroute.cli.flags import flag_of
from warmroute.cli.workload_args import add_workload_args, env_config_from_args

GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "prefix_affinity": {"cache_threshold": (0.1, 0.3, 0.5), "balance_abs": (4.0, 16.0, 64.0)},
    "weighted_scorer": {"prefix_weight": (1.0, 3.0, 6.0, 12.0), "queue_weight": (1.0, 2.0, 4.0)},
    "session_hash": {"load_factor": (0.0, 1.25, 1.5, 2.0, 3.0)},
}
TRAIN_TRACE_STARTS = (2000, 4000, 6000)
EVAL_TRACE_STARTS = (9000, 10000, 11000)
TRACE_LEAD_IN = 2000
TRAIN_SEEDS = (1, 2, 3)
BASELINES = ("least_outstanding", "speed_aware")


def episodes(
    workload: WorkloadConfig, count: int, held_out: bool, trace_starts: Sequence[int] | None = None
) -> list[tuple[WorkloadConfig, int]]:
    """``count`` (workload, seed) episodes: trace slices for a trace (``trace_starts``, default the held-out or
    training windows), seeds for a generated stream."""
    if workload.prefix_workload in ("none", "shared_prefix", "multi_turn"):
        seeds = evaluation_seeds(workload.seed, count) if held_out else list(TRAIN_SEEDS[:count])
        return [(workload, seed) for seed in seeds]
    starts = (trace_starts or (EVAL_TRACE_STARTS if held_out else TRAIN_TRACE_STARTS))[:count]
    return [(workload.replace(trace_start=s, trace_lead_in=TRACE_LEAD_IN), 0) for s in starts]


def _run(args: tuple[str, VidurEnvConfig, list[tuple[WorkloadConfig, int]]]) -> tuple[str, dict]:
    """Metrics of router ``name`` pooled over the episodes (percentiles over all their requests)."""
    name, env_config, eps = args
    latencies, counts, throughputs = [], 0, []
    for workload, seed in eps:
        config = VidurEnvConfig(workload=workload, reward=env_config.reward)
        env = VidurRoutingEnv(config)
        info = play_episode(env, HeuristicPolicy(name, config.layout), seed)
        latencies.append(request_latencies(env.routed_requests))
        counts = counts + np.bincount([env._replica_of[r.id] for r in env.routed_requests], minlength=workload.num_replicas)
        throughputs.append(info["throughput_rps"])
    pooled = {key: np.concatenate([lat[key] for lat in latencies]) for key in latencies[0]}
    result = summarize(pooled, counts)
    result.update(throughput_rps=float(np.mean(throughputs)), decisions_per_s=0.0, episodes=len(eps))
    return name, result


def tune(
    env_config: VidurEnvConfig, count: int, workers: int, grids: dict[str, dict[str, tuple[float, ...]]] = GRIDS
) -> dict[str, dict]:
    """Best setting of each family of ``grids`` by training mean e2e: ``{family: {"name", "mean_e2e_s", "grid"}}``."""
    eps = episodes(env_config.workload, count, held_out=False)
    jobs = []
    for family, grid in grids.items():
        defaults = CACHE_ROUTERS[family][1]
        for values in itertools.product(*grid.values()):
            jobs.append((router_name(family, {**defaults, **dict(zip(grid, values))}), env_config, eps))
    with ProcessPoolExecutor(workers) as pool:
        scores = dict(pool.map(_run, jobs))
    best = {}
    for family in grids:
        tried = {name: r["mean_e2e_s"] for name, r in scores.items() if name.split(":")[0] == family}
        winner = min(tried, key=tried.get)
        best[family] = {"name": winner, "mean_e2e_s": tried[winner], "grid": tried}
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_workload_args(parser, VidurEnvConfig())
    parser.add_argument("--train-episodes", type=int, default=2, help="training episodes per grid point (max 3)")
    parser.add_argument("--eval-episodes", type=int, default=3, help="held-out episodes per router (max 3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="routers evaluated in parallel")
    parser.add_argument("--json", default=None, help="write tuning and evaluation results to this JSON file")
    args = parser.parse_args()
    try:
        env_config = env_config_from_args(args, VidurEnvConfig())
    except WorkloadError as error:
        raise SystemExit(f"cache_router_study.py: {error.render(flag_of)}") from None
    if not (1 <= args.train_episodes <= 3 and 1 <= args.eval_episodes <= 3 and args.workers >= 1):
        raise SystemExit("cache_router_study.py: --train-episodes and --eval-episodes must be in 1..3, --workers >= 1")
    tuned = tune(env_config, args.train_episodes, args.workers)
    for family, row in tuned.items():
        print(f"tuned {family}: {row['name']} (training mean e2e {row['mean_e2e_s']:.3f} s)", flush=True)
    names = [*BASELINES, *GRIDS, *dict.fromkeys(row["name"] for row in tuned.values() if row["name"] not in GRIDS)]
    eval_eps = episodes(env_config.workload, args.eval_episodes, held_out=True)
    with ProcessPoolExecutor(args.workers) as pool:
        results = dict(pool.map(_run, [(name, env_config, eval_eps) for name in names]))
    print(f"{env_config.workload.name}: {len(eval_eps)} held-out episodes of {env_config.workload.num_requests} requests")
    print(format_table(results))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"env_config": env_config.to_dict(), "tuned": tuned, "results": results}, indent=2))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
