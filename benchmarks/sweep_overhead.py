"""Overhead of running training as a Tune trial: a 1-trial sweep against plain ``warmroute train``, same settings.

Both run in this one process against one local Ray instance, with the same TrainConfig and seed (the sweep's space
is a single ``choice`` of the base lr, so the trial trains exactly the base settings). Throughput is env steps per
second of training iterations (``perf/env_steps_per_s``: sampling + learning, from each run's own per-iteration
rows), median over iterations after the first (warm-up). Start-up (Ray Tune, the trial actor, the algorithm build)
is reported separately as wall time per run. ``--repeats`` alternates train/sweep to even out drift.

Run:
    .venv/bin/python benchmarks/sweep_overhead.py --iterations 6 --repeats 2   # default preset, 1 env runner, 1024-step batches
    .venv/bin/python benchmarks/sweep_overhead.py --iterations 4 --train-batch-size 512 --repeats 1   # quick check

Expect (2-core x86, quiet): train 293 env steps/s, 1-trial sweep 314 env steps/s (medians of 2 repeats), ratio 1.07
    (target >= 0.9). Shared with other jobs it was 118 vs 161 (load ~7-9, ratio 1.37) and 31 vs 73 (load ~24, 2.37).
    The trial's worker runs torch with 1 thread (Ray sets OMP_NUM_THREADS=1), the driver with one per core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig
from rllib_ext import metrics as M
from rllib_ext.ray_runtime import ensure_ray
from rllib_ext.train import train
from rllib_ext.train_config import PPOSettings, TrainConfig
from tuning.sweep import EXPERIMENT_DIR, SweepConfig, run_sweep
from warmroute.report.compare import load_progress


def _median_after_first(rows: list[dict]) -> float:
    return statistics.median(r[M.ENV_STEPS_PER_S] for r in rows[1:])


def run_train(cfg: TrainConfig, root: Path) -> tuple[float, float]:
    start = time.perf_counter()
    train(cfg, root / "train", progress=False, log=lambda line: None)
    return _median_after_first(load_progress(root / "train")), time.perf_counter() - start


def run_one_trial_sweep(cfg: TrainConfig, root: Path) -> tuple[float, float]:
    start = time.perf_counter()
    sweep = SweepConfig(
        train=cfg, space={"lr": {"choice": [cfg.ppo.lr]}}, num_samples=1, search="random", scheduler="fifo", eval_episodes=1
    )
    run_sweep(sweep, root / "sweep", log=lambda line: None)
    (result,) = (root / "sweep" / EXPERIMENT_DIR).glob("*/result.json")
    rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
    return _median_after_first(rows), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="default")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--train-batch-size", type=int, default=1024)
    parser.add_argument("--num-env-runners", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cfg = TrainConfig(
        env=VidurEnvConfig(workload=preset(args.workload), reward_scale_s=10.0),
        ppo=PPOSettings(train_batch_size=args.train_batch_size, minibatch_size=256, num_epochs=5),
        iterations=args.iterations,
        num_env_runners=args.num_env_runners,
        checkpoint_every=args.iterations,
        seed=0,
    )
    ensure_ray()
    plain, tuned = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            plain.append(run_train(cfg, Path(tmp) / f"r{repeat}"))
            tuned.append(run_one_trial_sweep(cfg, Path(tmp) / f"r{repeat}"))
            print(
                f"repeat {repeat}: train {plain[-1][0]:.0f} steps/s ({plain[-1][1]:.0f} s wall), "
                f"1-trial sweep {tuned[-1][0]:.0f} steps/s ({tuned[-1][1]:.0f} s wall)",
                flush=True,
            )
    train_sps = statistics.median(p[0] for p in plain)
    sweep_sps = statistics.median(t[0] for t in tuned)
    print(
        f"workload {args.workload}, {args.num_env_runners} env runner(s), {args.iterations} x {args.train_batch_size} env steps"
    )
    print(f"warmroute train : {train_sps:8.0f} env steps/s (median), wall {statistics.median(p[1] for p in plain):.0f} s")
    print(f"1-trial sweep   : {sweep_sps:8.0f} env steps/s (median), wall {statistics.median(t[1] for t in tuned):.0f} s")
    print(f"ratio sweep/train: {sweep_sps / train_sps:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
