"""Today's production routers against the older cache-aware ones: tune every family on training episodes, compare
default and tuned settings on held-out episodes.

Extends scripts/cache_router_study.py (same episodes, same pooled metrics): every family of
``envs.routers.cache_aware`` and ``envs.routers.production`` is run over the small grid below on training episodes
(trace windows 2000/4000, or seeds 1/2), the setting with the lowest mean e2e is kept, and ``least_outstanding``,
every family with its published defaults and tuned, and a ``latency_model`` fitted on 6 training episodes
(scripts/fit_latency_model.py: ``least_ttft`` logging with 20% random exploration) are run on the held-out episodes
(trace windows 9000/10000/11000, or seeds 2^31 + k). Prints a markdown table: mean e2e, p50/p90/p99 TTFT, hit
rate, throughput.

Run:
    PYTHONPATH=$PWD .venv/bin/python scripts/production_router_study.py --workload mooncake --workers 2 \\
        --json results/production_mooncake.json

Expect (2-core x86 shared with four other jobs): mooncake's tuning took about 30 minutes with 2 workers, a generated
preset with --train-episodes 1 and 1 worker about 10 minutes in all; docs/prefix_caching.md has the tables.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from cache_router_study import _run, episodes, tune
from fit_latency_model import training_episodes

from envs.evaluation.latency_fit import fit_latency_model
from envs.sim.workload import WorkloadError
from envs.vidur_env import VidurEnvConfig
from warmroute.cli.workload_args import add_workload_args, env_config_from_args

GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "prefix_affinity": {"cache_threshold": (0.1, 0.5), "balance_abs": (4.0, 16.0)},
    "weighted_scorer": {"prefix_weight": (3.0, 12.0), "queue_weight": (1.0, 2.0)},
    "session_hash": {"load_factor": (0.0, 1.25, 2.0)},
    "kv_cost": {"overlap_score_weight": (1.0, 4.0, 8.0, 16.0), "pending_weight": (0.0, 1.0)},
    "sticky_load": {"theta": (0.5, 0.8), "tau": (16384.0, 65536.0, 286720.0)},
    "least_ttft": {"queue_weight": (0.5, 1.0, 2.0)},
}
LATENCY_MODEL_EPISODES = 6


def markdown(results: dict[str, dict]) -> str:
    rows = [
        "| router | mean e2e | p50 TTFT | p90 TTFT | p99 TTFT | hit rate | req/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in sorted(results.items(), key=lambda item: item[1]["mean_e2e_s"]):
        label = "latency_model" if name.startswith("latency_model") else name
        rows.append(
            f"| `{label}` | {r['mean_e2e_s']:.3f} s | {r['p50_ttft_s']:.3f} s | {r['p90_ttft_s']:.3f} s | "
            f"{r['p99_ttft_s']:.3f} s | {100 * r['cache_hit_rate']:.1f}% | {r['throughput_rps']:.2f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_workload_args(parser, VidurEnvConfig())
    parser.add_argument("--train-episodes", type=int, default=2, help="training episodes per grid point (max 3)")
    parser.add_argument("--eval-episodes", type=int, default=3, help="held-out episodes per router (max 3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="routers evaluated in parallel")
    parser.add_argument("--json", default=None, help="write tuning and evaluation results to this JSON file")
    parser.add_argument(
        "--tuned", default=None, help="comma-separated tuned router names from an earlier run's 'tuned' lines: skip tuning"
    )
    args = parser.parse_args()
    try:
        env_config = env_config_from_args(args, VidurEnvConfig())
    except WorkloadError as error:
        raise SystemExit(f"production_router_study.py: {error}") from None
    if not (1 <= args.train_episodes <= 3 and 1 <= args.eval_episodes <= 3 and args.workers >= 1):
        raise SystemExit("production_router_study.py: --train-episodes and --eval-episodes must be in 1..3, --workers >= 1")
    if args.tuned:
        tuned = {name.split(":")[0]: {"name": name} for name in args.tuned.split(",")}
    else:
        tuned = tune(env_config, args.train_episodes, args.workers, GRIDS)
    for family, row in tuned.items():
        print(f"tuned {family}: {row['name']} (training mean e2e {row.get('mean_e2e_s', float('nan')):.3f} s)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.json).with_suffix(".latency_model.json") if args.json else Path(tmp) / "latency_model.json"
        fit = fit_latency_model(env_config, training_episodes(env_config.workload, LATENCY_MODEL_EPISODES), model)
        print(f"latency_model: {fit['decisions']} decisions, held-out MAPE {fit['holdout_mape']:.2f}, {fit['fit_seconds']:.0f} s")
        names = ["least_outstanding", *GRIDS, *dict.fromkeys(r["name"] for r in tuned.values() if r["name"] not in GRIDS)]
        names.append(f"latency_model:model={model}")
        eval_eps = episodes(env_config.workload, args.eval_episodes, held_out=True)
        # spawn: this process has run XGBoost, and its OpenMP state deadlocks forked children (envs/routers/latency_model.py)
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = dict(pool.map(_run, [(name, env_config, eval_eps) for name in names]))
    print(f"{env_config.workload.name}: {len(eval_eps)} held-out episodes of {env_config.workload.num_requests} requests")
    print(markdown(results))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"env_config": env_config.to_dict(), "tuned": tuned, "latency_model": fit, "results": results}
        path.write_text(json.dumps(payload, indent=2))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
