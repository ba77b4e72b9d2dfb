"""Behaviour-cloning quality: how well the cloned PPO module imitates and performs like its teacher.

For each workload: collect ``least_outstanding`` demonstrations with 2 env runners, clone them, and evaluate the
clone (sampled and greedy) against the teacher on held-out seeds. On ``default`` also clone ``round_robin`` and
report the clone's balance score: the "balanced start" PPO gets from it.

Run:
    .venv/bin/python benchmarks/bc_quality.py                 # ~4 min on 2 cores
    .venv/bin/python benchmarks/bc_quality.py --steps 5000 --episodes 3

Expect (2-core x86): validation accuracy >= 0.95, clone latency within a few % of the teacher, round-robin clone
balance >= 0.95. The measured figures are quoted in docs/warm_start.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import ray

from envs.evaluation.evaluate import HeuristicPolicy, evaluate_policy, evaluation_seeds
from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig
from rllib_ext.bc import BCConfig, pretrain
from rllib_ext.demos import DemoConfig, collect_demos
from rllib_ext.policy_io import CheckpointPolicy


def clone(env: VidurEnvConfig, teacher: str, steps: int, epsilon: float, root: Path) -> tuple[Path, dict]:
    demos, policy = root / f"{teacher}-demos", root / f"{teacher}-bc"
    collect_demos(
        DemoConfig(env=env, teachers=(teacher,), steps=steps, num_env_runners=2, epsilon=epsilon, seed=1), demos, progress=False
    )
    return policy, pretrain(demos, policy, BCConfig(), progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="default,heterogeneous")
    parser.add_argument("--steps", type=int, default=20_000, help="demonstration decisions per teacher")
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--episodes", type=int, default=5, help="held-out evaluation episodes")
    args = parser.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.workloads.split(","):
            env = VidurEnvConfig(workload=preset(name))
            seeds = evaluation_seeds(env.workload.seed, args.episodes)
            root = Path(tmp) / name
            teachers = ["least_outstanding"] + (["round_robin"] if name == "default" else [])
            for teacher in teachers:
                policy_dir, result = clone(env, teacher, args.steps, args.epsilon, root)
                teacher_metrics = evaluate_policy(HeuristicPolicy(teacher, env.layout), env, seeds)
                print(
                    f"[{name}] {teacher}: validation accuracy {result['validation']['accuracy']:.3f} "
                    f"(epoch {result['best_epoch']}, {result['train_rows']} train rows)"
                )
                print(
                    f"[{name}]   teacher           mean e2e {teacher_metrics['mean_e2e_s']:.3f} s  "
                    f"balance {teacher_metrics['balance_score']:.3f}"
                )
                for greedy in (False, True):
                    metrics = evaluate_policy(CheckpointPolicy(policy_dir, env.layout, greedy=greedy), env, seeds)
                    ratio = metrics["mean_e2e_s"] / teacher_metrics["mean_e2e_s"]
                    print(
                        f"[{name}]   clone {'greedy ' if greedy else 'sampled'}   mean e2e {metrics['mean_e2e_s']:.3f} s  "
                        f"balance {metrics['balance_score']:.3f}  latency ratio clone/teacher {ratio:.3f}"
                    )


if __name__ == "__main__":
    main()
