"""Demonstrations from the clairvoyant lookahead: label training states with the replica that rollouts find best.

The "mixed teachers" idea of issue 19, taken to its end: at every decision of a training episode the simulator is
forked once per replica, each fork follows the base router for ``--horizon`` further decisions on the true future
arrivals, and the replica with the best return is the label (envs/evaluation/lookahead.py). The episode then goes
on with that choice, so the states are the lookahead's own. The output is a demonstrations directory in the format
of ``warmroute collect-demos`` (teacher ``lookahead``), so ``warmroute pretrain --demo DIR`` clones it as it is.
Each finished episode is kept in ``<output>.episodes/`` (npz), so a killed run resumes where it stopped.
With ``--driver POLICY_DIR`` the episodes follow that (cloned) policy, greedy, and the lookahead only labels the
states it visits: one DAgger round. Clone the rounds together with ``warmroute pretrain --demo ROUND0,ROUND1``.
``--base POLICY_DIR`` makes the rollouts follow a clone (greedy) instead of a router: its labels are one more
policy-improvement step (approximate policy iteration). Every replica's rollout return is kept (``teacher_returns``)
beside the base's own choice (``base_action``), for ``warmroute pretrain --cost-weight``.

Run (the 13 training windows of `mooncake`, 512 requests each, two processes):
    PYTHONPATH=$PWD .venv/bin/python scripts/lookahead_demos.py --workload mooncake --trace-start 2000 \
        --trace-lead-in 2000 --trace-windows 13 --episodes 13 --horizon 256 --output runs/lookahead_demos

Expect (2-core x86): the cost per decision grows with the horizon (4 forks x horizon env steps). The horizon must
cover a request's life: with `--horizon 64` (about 1.5 simulated seconds of arrivals against a 6 s mean e2e) the
labelled episodes of windows 2000 and 2512 were 4.9% and 7.2% *slower* than `least_ttft:queue_weight=0.5` alone
(473-494 s per episode on a heavily shared machine), so those labels teach a myopic router (docs/prefix_caching.md).
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from envs.evaluation.lookahead import LookaheadResult, lookahead_episode
from envs.routers.heuristics import is_router, router_names
from envs.sim.workload import WorkloadError
from envs.vidur_env import VidurEnvConfig
from rllib_ext.policy_io import CheckpointPolicy
from warmroute.artifacts.atomic import staged_dir
from warmroute.artifacts.metadata import ArtifactError, require_fresh_output, write_metadata
from warmroute.artifacts.run_dir import DemoDir
from warmroute.cli.flags import flag_of
from warmroute.cli.workload_args import add_workload_args, env_config_from_args

TEACHER = "lookahead"


def _episode(env_config: VidurEnvConfig, base: str, seed: int, horizon: int, cache: Path, driver: str | None) -> dict:
    """One labelled episode, read from ``cache`` if an earlier run finished it."""
    path = cache / f"seed{seed}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            if "returns" not in data.files:  # cached by a version that kept only the labels: label it again
                path.unlink()
    if not path.exists():
        torch.set_num_threads(1)
        policy = CheckpointPolicy(driver, env_config.layout, greedy=True) if driver else None
        rollout = base if is_router(base) else CheckpointPolicy(base, env_config.layout, greedy=True)
        result = lookahead_episode(env_config, rollout, seed, horizon=horizon, record=True, driver=policy)
        labels = result.labels
        stats = {k: v for k, v in vars(result).items() if k != "labels"}
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            obs=labels.obs,
            action=labels.action,
            base_action=labels.base_action,
            best=labels.best,
            reward=labels.reward,
            returns=labels.returns,
            stats=np.array(json.dumps(stats)),
        )
        os.replace(tmp, path)
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _table(episode: dict, seed: int, tag: str) -> pa.Table:
    n, dim = episode["obs"].shape
    replicas = episode["best"].shape[1]
    return pa.table(
        {
            "episode_id": pa.array([f"{tag}seed{seed}"] * n, pa.string()),
            "step": pa.array(np.arange(n), pa.int64()),
            "obs": pa.FixedSizeListArray.from_arrays(pa.array(episode["obs"].reshape(-1), pa.float32()), dim),
            "action": pa.array(episode["action"], pa.int64()),
            "teacher_action": pa.array(episode["action"], pa.int64()),
            "teacher_ties": pa.FixedSizeListArray.from_arrays(pa.array(episode["best"].reshape(-1), pa.bool_()), replicas),
            "teacher": pa.array([TEACHER] * n, pa.string()),
            "reward": pa.array(episode["reward"], pa.float64()),
            "base_action": pa.array(episode["base_action"], pa.int64()),
            "teacher_returns": pa.FixedSizeListArray.from_arrays(
                pa.array(episode["returns"].reshape(-1), pa.float64()), replicas
            ),
            "explored": pa.array(np.zeros(n, dtype=bool), pa.bool_()),
            "worker": pa.array(np.full(n, seed, dtype=np.int32), pa.int32()),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_workload_args(parser, VidurEnvConfig())
    parser.add_argument(
        "--base",
        default="least_ttft:queue_weight=0.5",
        help="router the rollouts follow, or a policy directory (greedy): a second policy-improvement step over a clone",
    )
    parser.add_argument("--horizon", type=int, default=256, help="decisions each rollout plays before it is cut")
    parser.add_argument("--episodes", type=int, default=13, help="training episodes (seeds 0..N-1; seed picks the window)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="episodes run in parallel")
    parser.add_argument("--driver", default=None, help="policy directory whose greedy choices the episodes follow (DAgger)")
    parser.add_argument("--output", required=True, help="new demonstrations directory")
    args = parser.parse_args()
    try:
        env_config = env_config_from_args(args, VidurEnvConfig())
        final = require_fresh_output(args.output)
    except WorkloadError as error:
        raise SystemExit(f"lookahead_demos.py: {error.render(flag_of)}") from None
    if not is_router(args.base):
        if not Path(args.base).is_dir():
            raise SystemExit(
                f"lookahead_demos.py: --base: '{args.base}' is neither a router ({router_names()}) nor a policy directory"
            )
        try:
            CheckpointPolicy(args.base, env_config.layout)
        except ArtifactError as error:
            spelt = error.render(lambda field: "--base" if field == "policy" else flag_of(field))
            raise SystemExit(f"lookahead_demos.py: {spelt}") from None
    if min(args.horizon, args.episodes, args.workers) < 1:
        raise SystemExit("lookahead_demos.py: --horizon, --episodes and --workers must be >= 1")
    cache = Path(f"{final}.episodes")
    cache.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.episodes))
    print(
        f"{env_config.workload.describe()}: lookahead over {args.base}, horizon {args.horizon}, {len(seeds)} episode(s)",
        flush=True,
    )
    episodes: dict[int, dict] = {}
    with ProcessPoolExecutor(min(args.workers, len(seeds))) as pool:
        futures = {pool.submit(_episode, env_config, args.base, s, args.horizon, cache, args.driver): s for s in seeds}
        for future in as_completed(futures):
            seed = futures[future]
            episodes[seed] = future.result()
            r = LookaheadResult(**json.loads(str(episodes[seed]["stats"])))
            print(
                f"seed {seed}: mean e2e {r.base_mean_e2e_s:.3f} -> {r.lookahead_mean_e2e_s:.3f} s "
                f"({r.lookahead_mean_e2e_s / r.base_mean_e2e_s - 1:+.1%}), p90 TTFT {r.base_p90_ttft_s:.3f} -> "
                f"{r.lookahead_p90_ttft_s:.3f} s, changed {r.changed_fraction:.1%}, {r.seconds:.0f} s",
                flush=True,
            )
    stats = [json.loads(str(episodes[s]["stats"])) for s in seeds]
    tables = [_table(episodes[seed], seed, "") for seed in seeds]
    rows = sum(t.num_rows for t in tables)
    with staged_dir(final) as staging:
        for index, table in enumerate(tables):
            pq.write_table(table, DemoDir(staging).shard(TEACHER, index, 0))
        write_metadata(
            staging,
            DemoDir.KIND,
            layout=env_config.layout.to_dict(),
            env_config=env_config.to_dict(),
            teachers=[TEACHER],
            lookahead={"base": args.base, "horizon": args.horizon, "driver": args.driver, "episodes": stats},
            num_rows=rows,
            seed=0,
        )
    base = np.mean([s["base_mean_e2e_s"] for s in stats])
    ahead = np.mean([s["lookahead_mean_e2e_s"] for s in stats])
    print(f"wrote {rows} decisions to {final}; mean e2e over episodes {base:.3f} -> {ahead:.3f} s ({ahead / base - 1:+.1%})")


if __name__ == "__main__":
    main()
