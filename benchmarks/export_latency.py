"""Latency per routing decision: the exported TorchScript router vs the eager RLlib RLModule it came from.

One decision = batch 1: raw replica statistics (R x F) and request features in, replica index out. The router
includes the normalisation; the eager path is what serving the RLModule would take: ``layout.build`` on the raw
numbers, ``forward_inference`` and an argmax. Both run the same scorer network (hidden 64,64, seeded weights; the
latency does not depend on their values), single-threaded, after a warm-up; medians over repeats.

Run:    PYTHONPATH=$PWD python benchmarks/export_latency.py [--repeats 2000]
Expect: (2-core VM, torch 2.13 CPU, one thread, measured under load: load average ~12 from other jobs)
        replicas 4: router 30.3 us, eager RLModule 120.5 us per decision (3.98x);
        replicas 8: router 31.0 us, eager 121.7 us (3.93x).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from ray.rllib.core.columns import Columns

from envs.observation import ObservationLayout
from rllib_ext.models import module_model_config
from rllib_ext.policy_io import build_module, load_policy, save_policy
from warmroute.deploy.export import ExportConfig, export_router
from warmroute.deploy.router_file import load_router


def median_us(fn, repeats: int) -> float:
    for _ in range(50):  # warm-up (the TorchScript profiling executor optimises after a few calls)
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)


def scripted_decision(router: torch.jit.ScriptModule, replicas: torch.Tensor, request: torch.Tensor) -> int:
    with torch.no_grad():
        return int(router(replicas, request))


def eager_decision(module: torch.nn.Module, layout: ObservationLayout, replicas: np.ndarray, request: np.ndarray) -> int:
    obs = torch.as_tensor(layout.build(replicas, request))[None, :]
    with torch.no_grad():
        return int(module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS].argmax(-1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000, help="timed decisions per case")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        layout4 = ObservationLayout(num_replicas=4)
        policy = Path(tmp) / "policy"
        policy.mkdir()
        module = build_module(layout4, module_model_config(layout4))
        save_policy(module, policy, layout4, rng.random((8, layout4.dim)).astype(np.float32), source="benchmark")
        export_router(ExportConfig(policy=str(policy), output=str(Path(tmp) / "router.pt")))
        router, _ = load_router(Path(tmp) / "router.pt")
        print(f"{'replicas':>8} | {'router us':>9} | {'eager us':>8} | ratio")
        for count in (4, 8):
            layout = ObservationLayout(num_replicas=count)
            eager, _ = load_policy(policy, layout)
            replicas = rng.random((count, layout.num_replica_features)) * layout.replica_scales
            request = rng.random(layout.num_request_features) * layout.request_scales
            raw = (torch.as_tensor(replicas, dtype=torch.float32), torch.as_tensor(request, dtype=torch.float32))
            scripted = partial(scripted_decision, router, *raw)
            rl_module = partial(eager_decision, eager, layout, replicas, request)
            assert scripted() == rl_module()
            router_us, eager_us = median_us(scripted, args.repeats), median_us(rl_module, args.repeats)
            print(f"{count:>8} | {router_us:>9.1f} | {eager_us:>8.1f} | {eager_us / router_us:.2f}x")


if __name__ == "__main__":
    main()
