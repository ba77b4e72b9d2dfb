"""Warm-start PPO against cold-start PPO: same budget, network and seeds, judged on held-out seeds.

Per workload:
 1. pick the teacher: the best heuristic on validation seeds (never the test seeds);
 2. collect its demonstrations (2 env runners) and behaviour-clone the routing module;
 3. train cold PPO and warm PPO (BC actor + KL to it) for the same number of iterations;
 4. evaluate every heuristic, the clone, and both final policies on held-out test seeds.

Printed figures (the acceptance criteria of the warm-start issue):
 * iteration 0 of the warm start (the loaded clone, before any update) vs its teacher: latency ratio, balance;
   cold start's iteration 0 (first training iteration's episodes) for comparison;
 * env steps until training episodes first reach the teacher's mean latency, warm vs cold;
 * final mean latency of warm and cold PPO vs the best heuristic on the test seeds.

Run:
    .venv/bin/python benchmarks/warmstart_vs_cold.py --output results/warmstart     # ~30 min on 2 cores
    .venv/bin/python benchmarks/warmstart_vs_cold.py --workloads heterogeneous --iterations 20 --output /tmp/ws

Expect: see docs/warm_start.md for the figures measured on a 2-core machine and their command.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import ray

from envs.evaluation import HeuristicPolicy, evaluate_policy, evaluation_seeds
from envs.heuristics import ROUTERS
from envs.vidur_env import VidurEnvConfig
from envs.workload import preset
from rllib_ext.bc import BCConfig, pretrain
from rllib_ext.compare import first_step_reaching, format_comparison, load_progress, plot_learning_curves
from rllib_ext.demos import DemoConfig, collect_demos
from rllib_ext.metrics import BALANCE, MEAN_E2E
from rllib_ext.policy_io import CheckpointPolicy
from rllib_ext.train import train
from rllib_ext.train_config import KLRefConfig, PPOSettings, TrainConfig

VALIDATION_BASE_SEED = 1  # evaluation_seeds(1, n) and evaluation_seeds(0, n) never overlap
TRAINING_SEEDS = list(range(1000, 1010))  # seeds of the kind training episodes draw (below 2**31)


def run_workload(name: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    env = VidurEnvConfig(workload=preset(name), reward_scale_s=10.0)
    layout = env.layout
    test_seeds = evaluation_seeds(0, args.episodes)
    validation = {h: evaluate_policy(HeuristicPolicy(h, layout), env, evaluation_seeds(VALIDATION_BASE_SEED, 3))["mean_e2e_s"]
                  for h in ROUTERS}
    teacher = min(validation, key=validation.get)
    print(f"[{name}] teacher (best on validation seeds): {teacher}")
    demos, clone = root / "demos", root / "bc"
    collect_demos(DemoConfig(env=env, teachers=(teacher,), steps=args.demo_steps, num_env_runners=2, epsilon=0.1, seed=1),
                  demos, progress=False)
    bc = pretrain(demos, clone, BCConfig(), progress=False)
    print(f"[{name}] BC validation accuracy {bc['validation']['accuracy']:.3f}")
    ppo = PPOSettings(train_batch_size=args.train_batch_size)
    runs = {}
    for label, warm in (("cold", False), ("warm", True)):
        kl = KLRefConfig(enable_warm_start=warm, pretrained_actor_path=str(clone) if warm else None,
                         kl_ref_decay_steps=args.kl_decay_steps)
        cfg = TrainConfig(env=env, ppo=ppo, kl=kl, iterations=args.iterations, num_env_runners=args.num_env_runners,
                          checkpoint_every=args.iterations, seed=args.seed)
        train(cfg, root / label, progress=not args.quiet)
        runs[label] = load_progress(root / label)

    results: dict[str, Any] = {h: evaluate_policy(HeuristicPolicy(h, layout), env, test_seeds) for h in ROUTERS}
    results["bc_clone"] = evaluate_policy(CheckpointPolicy(clone, layout), env, test_seeds)
    for label in runs:
        for greedy in (False, True):
            key = f"{label}_ppo{'_greedy' if greedy else ''}"
            results[key] = evaluate_policy(CheckpointPolicy(root / label / "policy", layout, greedy=greedy), env, test_seeds)
    teacher_train = evaluate_policy(HeuristicPolicy(teacher, layout), env, TRAINING_SEEDS)["mean_e2e_s"]
    best_heuristic = min(ROUTERS, key=lambda h: results[h]["mean_e2e_s"])
    best = results[best_heuristic]["mean_e2e_s"]
    summary = {
        "teacher": teacher,
        "best_heuristic": best_heuristic,
        "iteration0_warm_latency_ratio": results["bc_clone"]["mean_e2e_s"] / results[teacher]["mean_e2e_s"],
        "iteration0_warm_balance": results["bc_clone"]["balance_score"],
        "iteration0_training_episodes": {k: {"mean_e2e_s": r[0].get(MEAN_E2E), "balance": r[0].get(BALANCE)} for k, r in runs.items()},
        "teacher_latency_training_seeds_s": teacher_train,
        "steps_to_teacher_latency": {k: first_step_reaching(r, teacher_train) for k, r in runs.items()},
        "final_vs_best_heuristic": {k: results[k]["mean_e2e_s"] / best - 1.0 for k in
                                    ("warm_ppo", "warm_ppo_greedy", "cold_ppo", "cold_ppo_greedy", "bc_clone")},
        "test_results": results,
    }
    print(format_comparison(runs))
    plot_learning_curves(runs, root / "learning_curves.png", {f"{teacher} (training seeds)": teacher_train})
    return summary


def print_summary(name: str, s: dict[str, Any]) -> None:
    r = s["test_results"]
    print(f"\n=== {name}: held-out test seeds, mean end-to-end latency (s) ===")
    for key in sorted(r, key=lambda k: r[k]["mean_e2e_s"]):
        print(f"  {key:<20} {r[key]['mean_e2e_s']:.3f}   p99 {r[key]['p99_e2e_s']:.2f}   balance {r[key]['balance_score']:.3f}")
    print(f"  iteration 0 (warm = loaded clone): latency / teacher {s['iteration0_warm_latency_ratio']:.3f}, "
          f"balance {s['iteration0_warm_balance']:.3f}")
    print(f"  first training iteration episodes: {s['iteration0_training_episodes']}")
    print(f"  env steps to reach teacher latency ({s['teacher_latency_training_seeds_s']:.3f}s on training seeds): "
          f"{s['steps_to_teacher_latency']}")
    print("  final vs best heuristic (" + s["best_heuristic"] + "): "
          + ", ".join(f"{k} {v:+.1%}" for k, v in s["final_vs_best_heuristic"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="default,heterogeneous")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--train-batch-size", type=int, default=2048)
    parser.add_argument("--kl-decay-steps", type=int, default=60_000)
    parser.add_argument("--num-env-runners", type=int, default=2)
    parser.add_argument("--demo-steps", type=int, default=20_000)
    parser.add_argument("--episodes", type=int, default=5, help="held-out test episodes per policy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True, help="directory for demos, clones, runs, JSON and plots (replaced)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    out = Path(args.output)
    shutil.rmtree(out, ignore_errors=True)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    summaries = {}
    for name in args.workloads.split(","):
        summaries[name] = run_workload(name, args, out / name)
        (out / "summary.json").write_text(json.dumps({"args": vars(args), "workloads": summaries}, indent=2, default=str))
    for name, summary in summaries.items():
        print_summary(name, summary)


if __name__ == "__main__":
    main()
