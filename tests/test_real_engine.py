"""`warmroute serve` in front of real vLLM replicas (tiny random Llama, CPU), and the simulator held to them.

Marked ``real_engine``: left out of ``make test`` and run by ``make test-real-engine`` (``.ci/run`` runs it after
the rest). The first test installs the engine if needed (``scripts/real_engine/install.sh``, ~200 s once); if it
cannot be installed here, every test SKIPS with the install script's reason (``-rs`` prints it), never passes.
Two replicas are started once for the module (cold caches) and stopped by process group at the end; the fault test
runs last because it kills one of them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envs.prefix.workloads import MOONCAKE_TRACE, load_trace
from warmroute.realengine.engines import (
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
from warmroute.realengine.fidelity import FidelitySetup, compare, simulated_cached_tokens
from warmroute.realengine.prompts import ScaleConfig, scale_window
from warmroute.realengine.replay import replay, summarize

pytestmark = pytest.mark.real_engine

ENGINE = EngineConfig(num_gpu_blocks=512)
SCALE = ScaleConfig()
CACHE_AWARE = "least_ttft:queue_weight=0.5"
REQUEST_BOUND_S = 60.0
"""Every request must end (answer or HTTP error) within this, faults included."""


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[ManagedProcess], list[str]]]:
    reason = install_engine()
    if reason is not None:
        pytest.skip(f"real engine unavailable: {reason}")
    logs = tmp_path_factory.mktemp("engines")
    ports = [free_port(), free_port()]
    procs = [start_engine(port, ENGINE, logs / f"engine{k}.log", cpu=k % 2) for k, port in enumerate(ports)]
    try:
        for proc, port in zip(procs, ports):
            wait_engine(proc, port)
        yield procs, [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        stop_all(procs)


def _serve(urls: list[str], router: str, tmp_path: Path, **flags: object) -> tuple[ManagedProcess, str, Path]:
    port = free_port()
    log = tmp_path / "decisions.jsonl"
    blocks = reported_gpu_blocks(urls[0])
    serve = start_serve(urls, router, port, tmp_path / "serve.log", decision_log=log, block_size=32, cache_blocks=blocks, **flags)
    serve.wait_http(f"http://127.0.0.1:{port}/health", 120)
    return serve, f"http://127.0.0.1:{port}", log


def test_a_cache_aware_router_in_front_of_vllm_reuses_prefixes_and_the_simulator_agrees(
    engines: tuple[list[ManagedProcess], list[str]], tmp_path: Path
) -> None:
    _, urls = engines
    requests = scale_window(load_trace(str(MOONCAKE_TRACE)), 2000, 80, SCALE, time_scale=0.25)
    serve, url, log = _serve(urls, CACHE_AWARE, tmp_path)
    try:
        records = asyncio.run(replay(requests, [url], model="tiny-llama", timeout_s=REQUEST_BOUND_S))
    finally:
        serve.stop()
    assert all(r.status == 200 and not r.error for r in records), [r.error for r in records if r.error][:3]
    summary = summarize(records)
    assert summary["cached_tokens"] > 0
    decisions = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(d["id"] for d in decisions) == sorted(f"replay-{r.index}" for r in records)
    assert {d["id"]: str(d["backend"]) for d in decisions} == {f"replay-{r.index}": r.backend for r in records}
    engine_cached = [r.cached_tokens for r in records]
    setup = FidelitySetup(engine_blocks=reported_gpu_blocks(urls[0]), chunk_tokens=ENGINE.max_num_batched_tokens)
    fidelity = compare(engine_cached, simulated_cached_tokens(requests, records, SCALE, setup))
    assert abs(fidelity["ratio"] - 1.0) <= 0.10, fidelity


def test_killing_a_replica_mid_run_ends_every_request_in_bounded_time_and_the_router_keeps_serving(
    engines: tuple[list[ManagedProcess], list[str]], tmp_path: Path
) -> None:
    procs, urls = engines
    requests = scale_window(load_trace(str(MOONCAKE_TRACE)), 3000, 40, SCALE, time_scale=0.25)
    serve, url, _ = _serve(urls, "round_robin", tmp_path, backoff=1.0)
    killed_at = requests[len(requests) // 2].arrival_s

    async def run() -> list:
        replaying = asyncio.ensure_future(replay(requests, [url], model="tiny-llama", timeout_s=REQUEST_BOUND_S))
        await asyncio.sleep(killed_at)
        procs[1].kill()
        return await replaying

    began = time.perf_counter()
    try:
        records = asyncio.run(run())
    finally:
        serve.stop()
    assert time.perf_counter() - began < killed_at + 2 * REQUEST_BOUND_S
    for r in records:
        ended = (r.status == 200 and not r.error) or r.status >= 400 or r.error
        assert ended and 0 <= r.e2e_s <= REQUEST_BOUND_S, r
    after = [r for r in records if r.sent_s > killed_at + 1.0]
    assert after and all(r.status == 200 and not r.error and r.backend == "0" for r in after), after
