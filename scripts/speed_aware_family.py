"""Is ``speed_aware`` a lucky setting or the top of its family? A grid over its parameters on the test seeds.

The family routes to ``argmin (outstanding + offset + prefill_weight * pending_prefill_tokens / 1000) / speed**alpha``:
``offset`` 1, ``alpha`` 1 and ``prefill_weight`` 0 is ``speed_aware``; ``alpha`` 0 is least-outstanding-like. A flat
optimum near ``speed_aware`` means a learned router has little to gain from re-weighting these features.

Run:
    .venv/bin/python scripts/speed_aware_family.py --workload heterogeneous   # ~2 min on 2 cores

Expect (2-core x86, heterogeneous, 5 test seeds): the best of the grid is within about 1% of speed_aware
(docs/warm_start.md, "Headroom").
"""

from __future__ import annotations

import argparse
import itertools
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from envs.evaluation.evaluate import evaluate_policy, evaluation_seeds
from envs.observation import REPLICA_FEATURE_INDEX, REPLICA_FEATURES
from envs.sim.workload import PRESETS, preset
from envs.vidur_env import VidurEnvConfig

SCALES = dict(REPLICA_FEATURES)


class FamilyRouter:
    def __init__(self, env_config: VidurEnvConfig, offset: float, alpha: float, prefill_weight: float) -> None:
        self.layout = env_config.layout
        self.offset, self.alpha, self.prefill_weight = offset, alpha, prefill_weight

    def reset(self, seed: int) -> None:
        pass

    def act(self, obs: np.ndarray) -> int:
        replicas, _ = self.layout.split(obs)
        outstanding = replicas[:, REPLICA_FEATURE_INDEX["outstanding_requests"]] * SCALES["outstanding_requests"]
        prefill = replicas[:, REPLICA_FEATURE_INDEX["pending_prefill_tokens"]] * SCALES["pending_prefill_tokens"]
        speed = replicas[:, REPLICA_FEATURE_INDEX["relative_speed"]]
        score = (outstanding + self.offset + self.prefill_weight * prefill / 1000.0) / speed**self.alpha
        return int(np.argmin(score))  # ties: lowest index, like the built-in routers


def _mean_latency(workload: str, episodes: int, params: tuple[float, float, float]) -> float:
    env_config = VidurEnvConfig(workload=preset(workload))
    return evaluate_policy(FamilyRouter(env_config, *params), env_config, evaluation_seeds(0, episodes))["mean_e2e_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="heterogeneous", help="workload preset")
    parser.add_argument("--episodes", type=int, default=5, help="test seeds per setting")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.workload not in PRESETS:
        raise SystemExit(
            f"speed_aware_family.py: --workload: unknown preset '{args.workload}'; choose one of: {', '.join(PRESETS)}"
        )
    if args.episodes < 1 or args.workers < 1:
        raise SystemExit("speed_aware_family.py: --episodes and --workers must be >= 1")
    grid = [(1.0, 1.0, 0.0)]  # speed_aware first: the reference
    grid += [p for p in itertools.product((0.0, 1.0, 4.0), (0.7, 0.85, 1.0, 1.15, 1.3), (0.0, 0.5, 2.0)) if p != grid[0]]
    with ProcessPoolExecutor(args.workers) as pool:
        latencies = list(pool.map(_mean_latency, [args.workload] * len(grid), [args.episodes] * len(grid), grid))
    reference = latencies[0]
    print(f"{args.workload}, {args.episodes} test seeds; speed_aware = offset 1, alpha 1, prefill weight 0: {reference:.3f} s")
    for (offset, alpha, weight), latency in sorted(zip(grid, latencies), key=lambda row: row[1]):
        print(
            f"offset {offset:g}  alpha {alpha:<4g}  prefill weight {weight:<3g}  mean e2e {latency:.3f} s  "
            f"vs speed_aware {latency / reference - 1:+.2%}"
        )


if __name__ == "__main__":
    main()
