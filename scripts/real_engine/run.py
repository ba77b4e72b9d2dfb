"""`make real-engine`: real vLLM replicas behind `warmroute serve`, one trace window per router, and the simulator's
prefix-cache model checked against what the engines reported.

Run:    make real-engine            (or: PYTHONPATH=. .venv/bin/python scripts/real_engine/run.py --help)
Expect: on 2 CPU cores, 135-200 s for the engine install the first time; then 515 s for the four default routers
        (measured on a shared machine: per router, two tiny-model vLLM replicas started cold, Mooncake requests
        2000-2299 at time scale 0.25, 24 s of arrivals; plus ~90 s to build the learned router). It prints a table of
        TTFT, e2e and hit rate per router (round robin 10.7%, least_ttft 12.3%, kv_cost 11.5%, learned 11.4%) and
        the fidelity table (simulator / vLLM cached tokens 0.971-1.000 with vLLM's rules), and writes everything to
        --output (docs/serve.md).

The model is a 2-layer, 128-wide random Llama and prompts are scaled down 16x (docs/serve.md): the absolute
latencies are a CPU's, not a GPU's; the hit rates and how routers rank on them are the point. Every process this
script starts (engines, router) is stopped by its process-group id when a router's run ends, on error and on
Ctrl-C; engines are restarted between routers so that every router starts from cold caches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from envs.errors import WarmRouteError
from envs.prefix.workloads import MOONCAKE_TRACE, load_trace
from warmroute.realengine.engines import (
    REPO,
    EngineConfig,
    ManagedProcess,
    free_port,
    install_engine,
    reported_gpu_blocks,
    start_engine,
    start_serve,
    stop_all,
    wait_engine,
)
from warmroute.realengine.fidelity import RULES, FidelitySetup, compare, simulated_cached_tokens
from warmroute.realengine.prompts import ScaleConfig, scale_window
from warmroute.realengine.replay import TABLE_HEADER, format_summary, replay, summarize, write_records

LEARNED = "learned"
"""Router name that stands for the exported learned router (built by :func:`learned_router` when missing)."""


def learned_router(out: Path, replicas: int) -> Path:
    """A learned router.pt: a behaviour clone of ``least_ttft:queue_weight=0.5`` on the Mooncake workload, exported.

    Tiny budget (2,048 decisions, 20 epochs; about a minute on 2 cores): it shows a learned policy routing real
    traffic, not a tuned one. ``make run``'s pipeline gives a trained policy to export instead (docs/deploy.md).
    """
    path = out / "router.pt"
    if path.exists():
        return path
    cli = [sys.executable, "-m", "warmroute.cli"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    steps = [
        ["collect-demos", "--workload", "mooncake", "--replicas", str(replicas), "--policy",
         "least_ttft:queue_weight=0.5", "--steps", "2048", "--num-env-runners", "1", "--output", str(out / "demos")],
        ["pretrain", "--demo", str(out / "demos"), "--output", str(out / "bc"), "--epochs", "20", "--quiet"],
        ["export", "--policy", str(out / "bc"), "--output", str(path)],
    ]  # fmt: skip
    for step in steps:
        if step[0] in ("collect-demos", "pretrain") and Path(step[step.index("--output") + 1]).exists():
            continue
        print(f"learned router: warmroute {' '.join(step)}", flush=True)
        subprocess.run(cli + step, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    return path


def run_router(router: str, args: argparse.Namespace, requests: list, out: Path, engine: EngineConfig) -> dict:
    """Cold engines + `warmroute serve` with ``router``, one replay, every process stopped; returns the result."""
    started: list[ManagedProcess] = []
    name = Path(router).parent.name if router.endswith(".pt") else router
    tag = name.replace(":", "_").replace("=", "")
    try:
        ports = [free_port() for _ in range(args.replicas)]
        for k, port in enumerate(ports):
            started.append(start_engine(port, engine, out / "logs" / f"{tag}-engine{k}.log", cpu=k % (os.cpu_count() or 1)))
        for proc, port in zip(started, ports):
            wait_engine(proc, port)
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        blocks = reported_gpu_blocks(urls[0])
        serve_port = free_port()
        decisions = out / f"{tag}-decisions.jsonl"
        decisions.unlink(missing_ok=True)
        serve = start_serve(
            urls, router, serve_port, out / "logs" / f"{tag}-serve.log", decision_log=decisions,
            block_size=engine.block_size, cache_blocks=blocks,
        )  # fmt: skip
        started.append(serve)
        serve.wait_http(f"http://127.0.0.1:{serve_port}/health", 120)
        began = time.perf_counter()
        records = asyncio.run(replay(requests, [f"http://127.0.0.1:{serve_port}"], model="tiny-llama"))
        replay_s = time.perf_counter() - began
    finally:
        stop_all(started)
    write_records(records, out / f"{tag}-requests.jsonl")
    summary = summarize(records)
    summary.update(router=router, name=name, engine_blocks=blocks, replay_s=replay_s)
    return {"summary": summary, "records": records}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routers", default=f"round_robin,least_ttft:queue_weight=0.5,kv_cost,{LEARNED}",
                        help="comma list: router names of `warmroute serve`, router.pt paths, or 'learned'")  # fmt: skip
    parser.add_argument("--replicas", type=int, default=2, help="vLLM replicas (2 cores: 2 is the sensible most)")
    parser.add_argument("--trace-start", type=int, default=2000, help="first trace request of the window")
    parser.add_argument("--num-requests", type=int, default=300, help="requests in the window")
    parser.add_argument("--time-scale", type=float, default=0.25, help="multiplies the trace's inter-arrival times")
    parser.add_argument("--gpu-blocks", type=int, default=1024, help="KV blocks per replica (32 tokens each)")
    parser.add_argument("--output", default="runs/real_engine", help="folder for records, logs and results.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the processes as Ctrl-C does
    began = time.perf_counter()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    reason = install_engine()
    if reason is not None:
        print(f"real-engine: cannot run: {reason}", file=sys.stderr)
        return 3
    install_s = time.perf_counter() - began
    scale = ScaleConfig()
    engine = EngineConfig(num_gpu_blocks=args.gpu_blocks)
    requests = scale_window(load_trace(str(MOONCAKE_TRACE)), args.trace_start, args.num_requests, scale, args.time_scale)
    print(
        f"real-engine: {len(requests)} Mooncake requests from {args.trace_start} ({requests[-1].arrival_s:.1f} s of "
        f"arrivals), {sum(len(r.prompt) for r in requests)} prompt tokens, {args.replicas} replicas of "
        f"{args.gpu_blocks} x {engine.block_size}-token KV blocks",
        flush=True,
    )
    results = []
    for router in args.routers.split(","):
        if router == LEARNED:
            router = str(learned_router(out / "learned", args.replicas))
        print(f"real-engine: routing with {router}", flush=True)
        result = run_router(router, args, requests, out, engine)
        engine_cached = [max(0, r.cached_tokens) for r in result["records"]]
        fidelity = {}
        for rules, (blocks, on_schedule) in RULES.items():
            setup = FidelitySetup(
                engine_blocks=result["summary"]["engine_blocks"],
                chunk_tokens=engine.max_num_batched_tokens,
                block_hits=blocks,
                cache_on_schedule=on_schedule,
            )
            simulated = simulated_cached_tokens(requests, result["records"], scale, setup)
            fidelity[rules] = compare(engine_cached, simulated)
        result["summary"]["fidelity"] = fidelity
        results.append(result["summary"])
    print("\n" + TABLE_HEADER)
    for summary in results:
        print(format_summary(summary["name"], summary))
    print(f"\n{'fidelity (cached tokens)':<28} {'rules':<8} {'engine':>8} {'sim':>8} {'ratio':>6} {'exact':>6}")
    for summary in results:
        for rules, f in summary["fidelity"].items():
            print(
                f"{summary['name']:<28} {rules:<8} {f['engine_cached_tokens']:>8} "
                f"{f['sim_cached_tokens']:>8} {f['ratio']:>6.3f} {f['exact_share']:>6.1%}"
            )
    wall_s = time.perf_counter() - began
    print(f"\nreal-engine: wall time {wall_s:.0f} s (install/check {install_s:.0f} s); results in {out}/results.json")
    scale_info = asdict(scale) | {"time_scale": args.time_scale, "trace_start": args.trace_start}
    (out / "results.json").write_text(json.dumps({"scale": scale_info, "wall_s": wall_s, "routers": results}, indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except WarmRouteError as exc:
        print(f"real-engine: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("real-engine: interrupted; every process it started is stopped", file=sys.stderr)
        sys.exit(130)
