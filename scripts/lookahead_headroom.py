"""How much better than a heuristic can any router be? A clairvoyant one-step lookahead estimate (envs/evaluation/lookahead.py).

At every decision the episode is forked once per replica, each fork routes there and then follows the base
heuristic to the end on the true future arrivals, and the best replica is taken. A router that sees only the
observation cannot know the future, so the gain printed here is a generous estimate of the headroom a learned
router has over the base heuristic.

Run:
    .venv/bin/python scripts/lookahead_headroom.py --workload heterogeneous --episodes 2   # ~25 min per episode and core
    .venv/bin/python scripts/lookahead_headroom.py --workload long_context --reward slo --base least_work --num-requests 100
        # the lookahead maximises SLOs met and prints SLO attainment; ~45 min per episode under load

Expect (2-core x86, heterogeneous, base speed_aware): about 1 decision in 18 changed and about 1.4% lower mean
latency than speed_aware on each episode (docs/warm_start.md, "Headroom on the mixed fleet"). long_context with
--reward slo over size_aware (16,384 tokens, 2 dedicated): SLO attainment 0.905 -> 0.915, 1 decision in 100 changed
(docs/memory_and_slo.md).
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from envs.evaluation.evaluate import evaluation_seeds
from envs.evaluation.lookahead import lookahead_episode
from envs.routers.heuristics import is_router, router_names
from envs.sim.workload import WorkloadError
from envs.vidur_env import VidurEnvConfig
from warmroute.cli.flags import flag_of
from warmroute.cli.workload_args import add_workload_args, env_config_from_args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_workload_args(parser, VidurEnvConfig())  # --workload PRESET plus overrides such as --qps
    parser.add_argument("--base", default="speed_aware", help="heuristic router the lookahead improves on")
    parser.add_argument("--episodes", type=int, default=2, help="held-out test seeds, one process each")
    parser.add_argument(
        "--horizon", type=int, default=None, help="decisions each rollout plays before it is cut (default: to the end)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="episodes run in parallel")
    args = parser.parse_args()
    try:
        env_config = env_config_from_args(args, VidurEnvConfig())
    except WorkloadError as error:
        raise SystemExit(f"lookahead_headroom.py: {error.render(flag_of)}") from None
    if not is_router(args.base):
        raise SystemExit(f"lookahead_headroom.py: --base: unknown router '{args.base}'; choose one of: {router_names()}")
    if args.episodes < 1 or args.workers < 1 or (args.horizon is not None and args.horizon < 1):
        raise SystemExit("lookahead_headroom.py: --episodes, --workers and --horizon must be >= 1")
    seeds = evaluation_seeds(0, args.episodes)
    print(
        f"{env_config.workload.name} (qps {env_config.workload.qps:g}): clairvoyant one-step lookahead over {args.base} on {len(seeds)} test seed(s); "
        f"each takes minutes",
        flush=True,
    )
    with ProcessPoolExecutor(min(args.workers, len(seeds))) as pool:
        n = len(seeds)
        rows = list(pool.map(lookahead_episode, [env_config] * n, [args.base] * n, seeds, [args.horizon] * n))
    for row in rows:
        print(
            f"seed {row.seed}: {args.base} {row.base_mean_e2e_s:.3f} s (waiting for a first batch "
            f"{row.base_scheduling_delay_s:.3f} s), lookahead {row.lookahead_mean_e2e_s:.3f} s "
            f"({row.lookahead_mean_e2e_s / row.base_mean_e2e_s - 1:+.2%}); p90 TTFT {row.base_p90_ttft_s:.3f} s -> "
            f"{row.lookahead_p90_ttft_s:.3f} s ({row.lookahead_p90_ttft_s / row.base_p90_ttft_s - 1:+.2%}); "
            f"decisions changed {row.changed_fraction:.1%}, "
            f"{row.seconds:.0f} s"
        )
    base = np.mean([r.base_mean_e2e_s for r in rows])
    ahead = np.mean([r.lookahead_mean_e2e_s for r in rows])
    print(f"mean over episodes: {args.base} {base:.3f} s, lookahead {ahead:.3f} s ({ahead / base - 1:+.2%})")
    base_p90 = np.mean([r.base_p90_ttft_s for r in rows])
    ahead_p90 = np.mean([r.lookahead_p90_ttft_s for r in rows])
    print(
        f"p90 TTFT, mean over episodes: {args.base} {base_p90:.3f} s, lookahead {ahead_p90:.3f} s ({ahead_p90 / base_p90 - 1:+.2%})"
    )
    if rows[0].base_slo_attainment is not None:
        base_slo = np.mean([r.base_slo_attainment for r in rows])
        ahead_slo = np.mean([r.lookahead_slo_attainment for r in rows])
        print(
            f"SLO attainment: {args.base} {base_slo:.3f}, lookahead {ahead_slo:.3f} ({100 * (ahead_slo - base_slo):+.1f} points)"
        )


if __name__ == "__main__":
    main()
