"""Fit the ``latency_model`` router: log a router with exploration on training episodes, regress TTFT, save JSON.

The library function is ``envs.evaluation.latency_fit.fit_latency_model``; this script picks the training episodes
(never the held-out ones) and prints the fit's statistics. On a trace the episodes are the 512-request windows
starting at request 2000, 2512, ... (each after a 2000-request lead-in), all before the held-out windows from 9000;
on a generated workload they are seeds 1, 2, ... (held-out seeds are >= 2^31). Route with the fitted file as
``--policy latency_model:model=PATH``.

Run:
    PYTHONPATH=$PWD .venv/bin/python scripts/fit_latency_model.py --workload mooncake --episodes 6 \\
        --output results/latency_model_mooncake.json

Expect (2-core x86 shared with other jobs; the same fit run inside scripts/production_router_study.py): mooncake,
6 windows x 512 decisions, 90-186 s depending on the load, held-out MAPE of the TTFT 0.09 (mooncake_mixed 0.11,
shared_prefix 0.07, multi_turn 0.16; llm-d reports about 5% on its traffic).
"""

from __future__ import annotations

import argparse
import json

from envs.errors import WarmRouteError
from envs.evaluation.latency_fit import fit_latency_model
from envs.sim.workload import WorkloadConfig, WorkloadError
from envs.vidur_env import VidurEnvConfig
from warmroute.cli.workload_args import add_workload_args, env_config_from_args

TRAIN_TRACE_START = 2000
"""First training window of a trace; windows follow each other up to the held-out part (request 9000)."""
HELD_OUT_TRACE_START = 9000
TRACE_LEAD_IN = 2000


def training_episodes(workload: WorkloadConfig, count: int) -> list[tuple[WorkloadConfig, int]]:
    """``count`` (workload, seed) training episodes: consecutive trace windows before 9000, or seeds 1..count."""
    if workload.prefix_workload in ("none", "shared_prefix", "multi_turn"):
        return [(workload, seed) for seed in range(1, count + 1)]
    starts = [TRAIN_TRACE_START + k * workload.num_requests for k in range(count)]
    if starts[-1] + workload.num_requests > HELD_OUT_TRACE_START:
        raise WarmRouteError(f"--episodes {count}: the training windows would reach the held-out part of the trace")
    return [(workload.replace(trace_start=s, trace_lead_in=TRACE_LEAD_IN), 0) for s in starts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_workload_args(parser, VidurEnvConfig())
    parser.add_argument("--output", required=True, help="the fitted model (XGBoost JSON with WarmRoute metadata)")
    parser.add_argument("--episodes", type=int, default=6, help="training episodes to log")
    parser.add_argument("--router", default="least_ttft", help="logging router")
    parser.add_argument("--explore", type=float, default=0.2, help="share of logged decisions taken at random")
    parser.add_argument("--rounds", type=int, default=300, help="boosting rounds")
    parser.add_argument("--seed", type=int, default=0, help="exploration and XGBoost seed")
    args = parser.parse_args()
    try:
        env_config = env_config_from_args(args, VidurEnvConfig())
        if args.episodes < 1:
            raise WarmRouteError(f"--episodes must be >= 1 (got {args.episodes})")
        episodes = training_episodes(env_config.workload, args.episodes)
        meta = fit_latency_model(
            env_config, episodes, args.output, router=args.router, explore=args.explore, seed=args.seed, rounds=args.rounds
        )
    except (WarmRouteError, WorkloadError) as error:
        raise SystemExit(f"fit_latency_model.py: {error}") from None
    summary = {k: meta[k] for k in ("workload", "logging_router", "explore", "decisions", "holdout_mape", "fit_seconds")}
    print(json.dumps(summary))
    print(f"wrote {args.output}; route with --policy latency_model:model={args.output}")


if __name__ == "__main__":
    main()
