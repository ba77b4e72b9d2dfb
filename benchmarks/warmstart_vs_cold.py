"""Warm-start PPO against cold-start PPO: same budget, network and seeds, judged on held-out seeds.

Per workload:
 1. pick the teacher: the best heuristic on validation seeds (never the test seeds);
 2. collect its demonstrations (2 env runners) and behaviour-clone the routing module;
 3. train cold PPO and warm PPO (BC actor + KL to it) for the same number of iterations;
 4. evaluate every heuristic, the clone, and both final policies on held-out test seeds.

Printed figures (the acceptance criteria of the warm-start issue):
 * iteration 0 of the warm start (the loaded clone, before any update) vs its teacher: latency ratio, balance;
   cold start's iteration 0 for comparison (both from the runs' ``iter_0000`` checkpoints, on the test seeds);
 * env steps until a run first reaches the teacher's mean latency (within ``--reach-tolerance``): every
   ``--eval-every`` iterations the checkpoint's policy (sampled) is evaluated on the same held-out seeds as the
   teacher, a paired comparison free of the seed-to-seed noise of training episodes;
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
from ray.rllib.core.rl_module.rl_module import RLModule

from envs.evaluation.evaluate import HeuristicPolicy, evaluate_policy, evaluation_seeds
from envs.routers.heuristics import ROUTERS
from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig
from rllib_ext.bc import BCConfig, pretrain
from rllib_ext.demos import DemoConfig, collect_demos
from rllib_ext.metrics import BALANCE, MEAN_E2E
from rllib_ext.policy_io import CheckpointPolicy
from rllib_ext.train import train
from rllib_ext.train_config import WARM_START_ENTROPY_WARMUP_STEPS, KLRefConfig, PPOSettings, TrainConfig
from warmroute.artifacts.run_dir import RunDir, checkpoint_iteration, checkpoint_module
from warmroute.report.compare import first_step_reaching, format_comparison, load_progress, plot_learning_curves

VALIDATION_BASE_SEED = 1  # evaluation_seeds(1, n) and evaluation_seeds(0, n) never overlap
TRAINING_SEEDS = list(range(1000, 1010))  # seeds of the kind training episodes draw (below 2**31)


def run_workload(name: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    env = VidurEnvConfig(workload=preset(name), reward_scale_s=10.0)
    layout = env.layout
    test_seeds = evaluation_seeds(0, args.episodes)
    validation = {
        h: evaluate_policy(HeuristicPolicy(h, layout), env, evaluation_seeds(VALIDATION_BASE_SEED, 3))["mean_e2e_s"]
        for h in ROUTERS
    }
    teacher = min(validation, key=validation.get)
    print(f"[{name}] teacher (best on validation seeds): {teacher}")
    demos, clone = root / "demos", root / "bc"
    collect_demos(
        DemoConfig(env=env, teachers=(teacher,), steps=args.demo_steps, num_env_runners=2, epsilon=0.1, seed=1),
        demos,
        progress=False,
    )
    bc = pretrain(demos, clone, BCConfig(), progress=False)
    print(f"[{name}] BC validation accuracy {bc['validation']['accuracy']:.3f}")
    ppo = PPOSettings(train_batch_size=args.train_batch_size)
    runs = {}
    for label, warm in (("cold", False), ("warm", True)):
        # Both runs get the warm start's entropy warm-up, so the start is the only difference.
        kl = KLRefConfig(
            enable_warm_start=warm,
            pretrained_actor_path=str(clone) if warm else None,
            kl_ref_decay_steps=args.kl_decay_steps,
            warmup_steps=WARM_START_ENTROPY_WARMUP_STEPS,
        )
        cfg = TrainConfig(
            env=env,
            ppo=ppo,
            kl=kl,
            iterations=args.iterations,
            num_env_runners=args.num_env_runners,
            checkpoint_every=args.eval_every,
            seed=args.seed,
        )
        train(cfg, root / label, progress=not args.quiet)
        runs[label] = load_progress(root / label)

    results: dict[str, Any] = {h: evaluate_policy(HeuristicPolicy(h, layout), env, test_seeds) for h in ROUTERS}
    results["bc_clone"] = evaluate_policy(CheckpointPolicy(clone, layout), env, test_seeds)
    for label in runs:
        for greedy in (False, True):
            key = f"{label}_ppo{'_greedy' if greedy else ''}"
            results[key] = evaluate_policy(
                CheckpointPolicy(RunDir(root / label).policy.path, layout, greedy=greedy), env, test_seeds
            )
    teacher_train = evaluate_policy(HeuristicPolicy(teacher, layout), env, TRAINING_SEEDS)["mean_e2e_s"]
    curve_seeds = test_seeds[: args.curve_episodes]
    teacher_curve = evaluate_policy(HeuristicPolicy(teacher, layout), env, curve_seeds)["mean_e2e_s"]
    curves = {label: checkpoint_curve(root / label, env, curve_seeds) for label in runs}
    threshold = teacher_curve * (1 + args.reach_tolerance)
    reach = {label: next((step for step, latency, _ in curve if latency <= threshold), None) for label, curve in curves.items()}
    best_heuristic = min(ROUTERS, key=lambda h: results[h]["mean_e2e_s"])
    best = results[best_heuristic]["mean_e2e_s"]
    summary = {
        "teacher": teacher,
        "best_heuristic": best_heuristic,
        "iteration0_warm_latency_ratio": results["bc_clone"]["mean_e2e_s"] / results[teacher]["mean_e2e_s"],
        "iteration0_warm_balance": results["bc_clone"]["balance_score"],
        "iteration0_checkpoint": {
            label: {"latency_ratio_to_teacher": curve[0][1] / teacher_curve, "balance": curve[0][2]}
            for label, curve in curves.items()
        },
        "checkpoint_curves": {
            label: [{"env_steps": s, "mean_e2e_s": lat, "balance": b} for s, lat, b in curve] for label, curve in curves.items()
        },
        "teacher_latency_curve_seeds_s": teacher_curve,
        "steps_to_teacher_latency_checkpoints": reach,
        "iteration0_training_episodes": {
            k: {"mean_e2e_s": r[0].get(MEAN_E2E), "balance": r[0].get(BALANCE)} for k, r in runs.items()
        },
        "teacher_latency_training_seeds_s": teacher_train,
        "steps_to_teacher_latency": {k: first_step_reaching(r, teacher_train) for k, r in runs.items()},
        "final_vs_best_heuristic": {
            k: results[k]["mean_e2e_s"] / best - 1.0
            for k in ("warm_ppo", "warm_ppo_greedy", "cold_ppo", "cold_ppo_greedy", "bc_clone")
        },
        "test_results": results,
    }
    print(format_comparison(runs))
    plot_learning_curves(runs, root / "learning_curves.png", {f"{teacher} (training seeds)": teacher_train})
    return summary


def checkpoint_curve(run_dir: Path, env: VidurEnvConfig, seeds: list[int]) -> list[tuple[int, float, float]]:
    """(env steps, mean latency, balance) of every checkpoint's sampled policy on ``seeds``."""
    rows = load_progress(run_dir)
    steps_at = {0: 0, **{r["iteration"]: r["perf/env_steps_lifetime"] for r in rows}}
    curve = []
    for checkpoint in RunDir(run_dir).complete_checkpoints():
        module = RLModule.from_checkpoint(str(checkpoint_module(checkpoint).absolute()))
        metrics = evaluate_policy(CheckpointPolicy.from_module(module, checkpoint.name), env, seeds)
        curve.append((steps_at[checkpoint_iteration(checkpoint)], metrics["mean_e2e_s"], metrics["balance_score"]))
    return curve


def print_summary(name: str, s: dict[str, Any]) -> None:
    r = s["test_results"]
    print(f"\n=== {name}: held-out test seeds, mean end-to-end latency (s) ===")
    for key in sorted(r, key=lambda k: r[k]["mean_e2e_s"]):
        print(f"  {key:<20} {r[key]['mean_e2e_s']:.3f}   p99 {r[key]['p99_e2e_s']:.2f}   balance {r[key]['balance_score']:.3f}")
    print(
        f"  iteration 0 (warm = loaded clone): latency / teacher {s['iteration0_warm_latency_ratio']:.3f}, "
        f"balance {s['iteration0_warm_balance']:.3f}"
    )
    print(
        "  iteration 0 checkpoints (before any update) vs teacher, same seeds: "
        + ", ".join(
            f"{k} latency x{v['latency_ratio_to_teacher']:.3f} balance {v['balance']:.3f}"
            for k, v in s["iteration0_checkpoint"].items()
        )
    )
    for label, curve in s["checkpoint_curves"].items():
        print(f"  {label} checkpoints: " + " ".join(f"{p['env_steps']}:{p['mean_e2e_s']:.3f}" for p in curve))
    print(
        f"  env steps to reach teacher latency {s['teacher_latency_curve_seeds_s']:.3f}s (+tolerance) on the same seeds: "
        f"{s['steps_to_teacher_latency_checkpoints']}"
    )
    print(
        f"  (training-episode criterion, noisy: teacher {s['teacher_latency_training_seeds_s']:.3f}s on training seeds: "
        f"{s['steps_to_teacher_latency']})"
    )
    print(
        "  final vs best heuristic ("
        + s["best_heuristic"]
        + "): "
        + ", ".join(f"{k} {v:+.1%}" for k, v in s["final_vs_best_heuristic"].items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="default,heterogeneous")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--train-batch-size", type=int, default=2048)
    parser.add_argument("--kl-decay-steps", type=int, default=60_000)
    parser.add_argument("--num-env-runners", type=int, default=2)
    parser.add_argument("--demo-steps", type=int, default=20_000)
    parser.add_argument("--episodes", type=int, default=5, help="held-out test episodes per policy")
    parser.add_argument("--eval-every", type=int, default=5, help="iterations between evaluated checkpoints")
    parser.add_argument("--curve-episodes", type=int, default=3, help="held-out episodes per checkpoint evaluation")
    parser.add_argument("--reach-tolerance", type=float, default=0.01, help="'reached' = within this fraction of the teacher")
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
