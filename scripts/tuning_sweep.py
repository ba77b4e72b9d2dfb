"""The sweep in docs/tuning.md: which warm-start settings matter on a fleet where routing matters, and how the best
setting compares with the defaults on held-out seeds.

Steps (all through the same functions as the CLI): demonstrations of the preset's best heuristic (``speed_aware`` on
``heterogeneous``), behaviour cloning, a ``--num-samples``-trial sweep over the default warm-start space (Optuna TPE +
ASHA), one ``warmroute train`` run with the default settings and the same budget, then the best trial's policy, the
defaults' policy, the clone and the teacher on the same held-out seeds.

Run:
    .venv/bin/python scripts/tuning_sweep.py --output results/tuning    # 12 trials x 4 x 1024 env steps

Expect (2-core x86 shared with other jobs, 10 min): 12 completed trials with held-out mean e2e 2.781-2.813 s; best
trial 2.781 s vs default settings 2.807 s (= the clone), speed_aware 2.786 s (docs/tuning.md, "A real sweep").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from envs.evaluation.evaluate import HeuristicPolicy, evaluate_policy, evaluation_seeds, format_table
from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig
from rllib_ext.bc import BCConfig, pretrain
from rllib_ext.demos import DemoConfig, collect_demos
from rllib_ext.policy_io import CheckpointPolicy
from rllib_ext.train import train
from rllib_ext.train_config import KLRefConfig, PPOSettings, TrainConfig
from tuning.results import BEST_DIR
from tuning.sweep import SweepConfig, run_sweep
from warmroute.artifacts.run_dir import RunDir


def _rank(values: list[float]) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(float)


def setting_effects(rows: list[dict], keys: list[str]) -> list[str]:
    """Spearman rank correlation of each numeric setting with the trials' final score (12 trials: a rough guide)."""
    lines = [f"{'setting':<24}{'rho vs score':>14}{'rho vs held-out':>17}"]
    for key in keys:
        if not all(isinstance(r[key], int | float) for r in rows):  # categorical: skip (see results.md)
            continue
        cells = []
        for metric in ("score_s", "held_out_s"):
            pairs = [(float(r[key]), r[metric]) for r in rows if r[metric] is not None]
            x, y = zip(*pairs) if len(pairs) > 2 else ((), ())
            rho = (
                float(np.corrcoef(_rank(list(x)), _rank(list(y)))[0, 1]) if len(set(x)) > 1 and len(set(y)) > 1 else float("nan")
            )
            cells.append(f"{rho:+.2f} (n={len(pairs)})")
        lines.append(f"{key:<24}{cells[0]:>14}{cells[1]:>17}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--workload", default="heterogeneous")
    parser.add_argument("--teacher", default="speed_aware")
    parser.add_argument("--num-requests", type=int, default=128, help="requests per training episode")
    parser.add_argument("--demo-steps", type=int, default=2048, help="teacher decisions recorded for behaviour cloning")
    parser.add_argument("--num-samples", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--train-batch-size", type=int, default=1024)
    parser.add_argument("--eval-episodes", type=int, default=2, help="held-out episodes per trial and in the final table")
    args = parser.parse_args()
    root = Path(args.output)
    env = VidurEnvConfig(workload=preset(args.workload).replace(num_requests=args.num_requests), reward_scale_s=10.0)
    demos, clone = root / "demos", root / "bc"
    collect_demos(
        DemoConfig(env=env, teachers=(args.teacher,), steps=args.demo_steps, num_env_runners=2, epsilon=0.1, seed=1),
        demos,
        progress=False,
    )
    pretrain(demos, clone, BCConfig(), progress=False)
    base = TrainConfig(
        env=env,
        ppo=PPOSettings(train_batch_size=args.train_batch_size),
        kl=KLRefConfig(enable_warm_start=True, pretrained_actor_path=str(clone)),
        iterations=args.iterations,
        num_env_runners=0,
        checkpoint_every=args.iterations,
        seed=0,
    )
    sweep = SweepConfig(
        train=base,
        num_samples=args.num_samples,
        max_concurrent=2,
        search="optuna",
        scheduler="asha",
        eval_episodes=args.eval_episodes,
    )
    summary = run_sweep(sweep, root / "sweep", log=lambda line: print(line, flush=True))
    print("\n".join(setting_effects(summary["rows"], list(sweep.space))))
    train(base, root / "defaults", progress=False)
    seeds = evaluation_seeds(env.workload.seed, args.eval_episodes)
    policies = {"best trial": root / "sweep" / BEST_DIR, "defaults": RunDir(root / "defaults").policy.path, "clone (BC)": clone}
    results = {name: evaluate_policy(CheckpointPolicy(path, env.layout), env, seeds) for name, path in policies.items()}
    results[args.teacher] = evaluate_policy(HeuristicPolicy(args.teacher, env.layout), env, seeds)
    print(format_table(results))
    (root / "comparison.json").write_text(json.dumps({"best": summary["best"], "policies": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
