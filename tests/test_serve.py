"""``warmroute serve`` with real processes: tiny OpenAI-compatible backends (tests/serve_backend.py) and the router
started by its CLI. Routing with a heuristic, a cache-aware router and an exported router.pt, SSE pass-through,
the decision log, and the Prometheus metrics. Faults and bad input are in tests/test_serve_faults.py."""

from __future__ import annotations

import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from serve_backend import start_backend, start_serve, stop

from envs.observation import REPLICA_FEATURE_INDEX, ObservationLayout
from warmroute.serve.backends import Backend, InFlight, parse_vllm_metrics
from warmroute.serve.openai_api import prompt_of
from warmroute.serve.prefix_index import PrefixIndex, affinity_key, block_hashes, prompt_units
from warmroute.serve.routing import RoutingRequest, ServeRouter, replica_features


@pytest.fixture
def fleet(tmp_path: Path):
    """``fleet(n, token_delay)``: n backend processes, all stopped at the end."""
    started = []

    def make(count: int, token_delay: float = 0.0) -> list:
        backends = [start_backend(tmp_path, f"b{i}", token_delay) for i in range(count)]
        started.extend(backends)
        return backends

    yield make
    for process in started:
        stop(process)


@pytest.fixture
def router_process(tmp_path: Path):
    """``router_process(backends, *args)``: a running ``warmroute serve``, stopped at the end."""
    started = []

    def make(backends: list, *args: str):
        process = start_serve(tmp_path, backends, *args)
        started.append(process)
        return process

    yield make
    for process in started:
        stop(process)


def complete(url: str, prompt: list[int], max_tokens: int = 3, **extra) -> requests.Response:
    return requests.post(f"{url}/v1/completions", json={"prompt": prompt, "max_tokens": max_tokens, **extra}, timeout=30)


def test_round_robin_alternates_backends_passes_streams_through_and_logs_each_decision(fleet, router_process, tmp_path):
    backends = fleet(2)
    log = tmp_path / "decisions.jsonl"
    serve = router_process(backends, "--router", "round_robin", "--decision-log", str(log), "--block-size", "16")
    answers = [complete(serve.url, list(range(40))) for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.headers["X-WarmRoute-Backend"] for a in answers] == ["0", "1", "0", "1"]
    # The third request repeats the first one's prompt on backend 0: the backend reports two cached blocks.
    assert answers[2].json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 32

    direct = requests.post(
        f"{backends[0].url}/v1/completions", json={"prompt": [7, 8, 9], "max_tokens": 4, "stream": True}, timeout=30
    )
    streamed = requests.post(
        f"{serve.url}/v1/completions", json={"prompt": [7, 8, 9], "max_tokens": 4, "stream": True}, timeout=30, stream=True
    )
    assert streamed.status_code == 200 and streamed.headers["Content-Type"].startswith("text/event-stream")
    events = [line for line in streamed.iter_lines() if line]
    assert events == [line for line in direct.iter_lines() if line]
    assert events[-1] == b"data: [DONE]" and json.loads(events[0][6:])["choices"][0]["text"] == "t0 "

    chat = requests.post(f"{serve.url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert chat.status_code == 200
    assert requests.get(f"{serve.url}/v1/models", timeout=10).json()["data"][0]["id"] == "tiny"
    health = requests.get(f"{serve.url}/health", timeout=10).json()
    assert health["status"] == "ok" and [b["healthy"] for b in health["backends"]] == [True, True]

    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 6 and [r["backend"] for r in records[:4]] == [0, 1, 0, 1]
    assert [r["prompt_tokens"] for r in records[:4]] == [40] * 4
    assert [r["estimated_cached_tokens"] for r in records[:4]] == [0, 0, 32, 32]  # what the backends reported
    assert {"id", "time", "url", "attempt", "router"} <= set(records[0])


def test_metrics_expose_decisions_load_routing_latency_and_errors(fleet, router_process):
    serve = router_process(fleet(2), "--router", "least_outstanding")
    for _ in range(3):
        assert complete(serve.url, [1, 2, 3]).status_code == 200
    text = requests.get(f"{serve.url}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert sum(v for k, v in samples.items() if k.startswith("warmroute_serve_decisions_total{")) == 3
    assert samples["warmroute_serve_routing_seconds_count"] == 3
    assert samples['warmroute_serve_responses_total{code="200"}'] == 3
    for gauge in ("inflight_requests", "pending_prefill_tokens", "healthy", "scraped_running_requests"):
        assert f'warmroute_serve_backend_{gauge}{{backend="1"}}' in samples
    assert samples['warmroute_serve_backend_healthy{backend="0"}'] == 1.0
    assert "warmroute_serve_failovers_total" in samples and "# TYPE warmroute_serve_backend_errors_total counter" in text


def test_a_cache_aware_router_keeps_each_shared_prefix_on_one_backend(fleet, router_process, tmp_path):
    backends = fleet(3)
    serve = router_process(backends, "--router", "prefix_affinity", "--block-size", "16")
    rng = np.random.default_rng(0)
    groups = [list(rng.integers(0, 30000, 64)) for _ in range(6)]
    placed: dict[int, set[str]] = defaultdict(set)
    cached = 0
    for _ in range(4):
        for g, prefix in enumerate(groups):
            answer = complete(serve.url, [int(t) for t in prefix] + [int(t) for t in rng.integers(0, 30000, 8)])
            placed[g].add(answer.headers["X-WarmRoute-Backend"])
            cached += answer.json()["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert all(len(where) == 1 for where in placed.values()), placed
    assert len({next(iter(where)) for where in placed.values()}) > 1  # new prefixes go to the emptiest cache
    assert cached == 6 * 3 * 64  # every repeat found its 64-token prefix (4 blocks) where the router sent it


@pytest.mark.slow  # about 15 s on the loaded 2-core VM
def test_an_exported_router_pt_routes_live_requests_by_load(fleet, router_process, exported_router):
    backends = fleet(2, token_delay=0.05)
    serve = router_process(backends, "--router", str(exported_router))
    body = {"prompt": list(range(20)), "max_tokens": 20, "stream": True}

    def stream(_: int) -> str:
        with requests.post(f"{serve.url}/v1/completions", json=body, timeout=30, stream=True) as answer:
            assert answer.status_code == 200 and [line for line in answer.iter_lines() if line][-1] == b"data: [DONE]"
            return answer.headers["X-WarmRoute-Backend"]

    with ThreadPoolExecutor(4) as pool:  # 1 s streams at once: the rule prefers the backend with fewer in flight
        chosen = list(pool.map(stream, range(4)))
    assert sorted(chosen) == ["0", "0", "1", "1"]


def test_a_policy_directory_and_its_router_pt_choose_the_same_backends(rule_policy, exported_router):
    from_dir, from_file = ServeRouter(str(rule_policy), 3), ServeRouter(str(exported_router), 3)
    rng = np.random.default_rng(1)
    for _ in range(50):
        raw = rng.uniform(0, 1, (3, 15)) * ObservationLayout(num_replicas=3).replica_scales
        request = np.array([rng.uniform(1, 4096), rng.uniform()])
        candidates = sorted(rng.choice(3, size=int(rng.integers(1, 4)), replace=False).tolist())
        assert from_dir.choose(raw, request, candidates) == from_file.choose(raw, request, candidates)
        assert from_dir.choose(raw, request, candidates) in candidates


def test_the_prefix_index_matches_vllm_block_rules_and_evicts_the_least_recent():
    index = PrefixIndex(2, block_size=32, capacity=8)
    prompt = list(range(200))
    hashes = block_hashes(prompt, 32)
    assert len(hashes) == 6
    index.insert(0, hashes)
    assert index.cached_tokens(0, hashes, 200) == 192 and index.cached_tokens(1, hashes, 200) == 0
    assert index.cached_tokens(0, block_hashes(prompt[:192], 32), 192) == 160  # the last token is always computed
    shared = block_hashes(prompt[:128] + [9999] * 72, 32)
    assert index.cached_tokens(0, shared, 200) == 128
    other = block_hashes(list(range(1000, 1128)), 32)
    index.insert(0, other)  # 4 more blocks: the two oldest of the first prompt go
    assert index.size(0) == 8 and index.matched_blocks(0, hashes) == 0 and index.matched_blocks(0, other) == 4


def test_the_router_inputs_come_from_own_accounting_scrapes_and_the_prefix_index():
    busy, idle = Backend("http://a"), Backend("http://b")
    busy.inflight = {
        "r1": InFlight(prompt_tokens=300, cached_tokens=256, prefilled=True, generated=7),
        "r2": InFlight(prompt_tokens=500, cached_tokens=0),
        "r3": InFlight(prompt_tokens=100, cached_tokens=64),
    }
    busy.scraped = {"running": 2.0, "waiting": 1.0, "kv_usage": 0.4}
    index = PrefixIndex(2, block_size=32, capacity=100)
    prompt = list(range(130))
    hashes = block_hashes(prompt, 32)
    index.insert(1, hashes[:2])
    request = RoutingRequest(len(prompt), hashes, affinity_key(hashes, prompt), 16)
    device = np.array([[1.0, 2.8e-5, 2.6e-6], [0.38, 7.9e-5, 5.1e-6]])
    raw, cached = replica_features([busy, idle], index, request, device, 0, cache_blocks=8)
    f = {name: raw[:, i].tolist() for name, i in REPLICA_FEATURE_INDEX.items()}
    assert cached == [0, 64]
    assert f["outstanding_requests"] == [3, 0] and f["queued_requests"] == [1, 0] and f["running_requests"] == [2, 0]
    assert f["pending_prefill_tokens"] == [600, 0] and f["pending_uncached_prefill_tokens"] == [536, 0]
    assert f["active_kv_tokens"] == [907, 0] and f["kv_cache_usage"] == [0.4, 0.0]
    assert f["cached_hbm_tokens"] == [0, 64] and f["hbm_cache_fill"] == [0, 0.25] and f["cached_host_tokens"] == [0, 0]
    assert f["last_routed"] == [1, 0] and f["relative_speed"] == [1.0, 0.38]
    assert ServeRouter("kv_cost", 2).choose(raw, np.array([130.0, 0.5]), [0, 1]) == 1


def test_text_and_chat_prompts_share_blocks_when_they_share_a_prefix():
    system = {"role": "system", "content": "You are a careful assistant. " * 20}
    first = prompt_of("/v1/chat/completions", {"messages": [system, {"role": "user", "content": "Hello " * 30}]})
    second = prompt_of("/v1/chat/completions", {"messages": [system, {"role": "user", "content": "Bye " * 30}]})
    (units_a, tokens_a), (units_b, _) = prompt_units(first), prompt_units(second)
    assert tokens_a == -(-len(first) // 4)  # 4 characters per token
    hashes_a, hashes_b = block_hashes(units_a, 16), block_hashes(units_b, 16)
    shared = len(system["content"]) // 64  # whole 64-character blocks of the system prompt
    assert hashes_a[:shared] == hashes_b[:shared] and hashes_a != hashes_b
    assert prompt_of("/v1/completions", {"prompt": [[5, 6, 7], [8]]}) == [5, 6, 7]  # a batch routes by its first
    assert affinity_key(hashes_a, units_a) == affinity_key(hashes_b, units_b) > 0


def test_vllm_metrics_are_read_by_name_and_missing_ones_are_left_out():
    text = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="m",engine="0"} 3\n'
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        'vllm:kv_cache_usage_perc{model_name="m",engine="0"} 0.25\n'
        "# TYPE vllm:prefix_cache_hits counter\n"
        'vllm:prefix_cache_hits_total{model_name="m",engine="0"} 192\n'
    )
    assert parse_vllm_metrics(text) == {"running": 3.0, "kv_usage": 0.25, "prefix_hits": 192.0}


def save_rule_policy(directory: Path) -> Path:
    """A 2-replica scorer policy directory whose network prefers fewer outstanding requests and less pending prefill."""
    from rllib_ext.models import module_model_config
    from rllib_ext.policy_io import build_module, save_policy

    layout = ObservationLayout(num_replicas=2)
    width = layout.num_replica_features + layout.num_request_features
    module = build_module(layout, module_model_config(layout, "scorer", hidden=(width,)))
    with torch.no_grad():
        first, last = module.actor[0], module.actor[2]
        first.weight.copy_(torch.eye(width))
        first.bias.zero_()
        last.weight.zero_()
        last.bias.zero_()
        last.weight[0, REPLICA_FEATURE_INDEX["outstanding_requests"]] = -8.0
        last.weight[0, REPLICA_FEATURE_INDEX["pending_prefill_tokens"]] = -2.0
    directory.mkdir(parents=True)
    probe = np.random.default_rng(0).uniform(0, 1, (16, layout.dim)).astype(np.float32)
    save_policy(module, directory, layout, probe, source="test")
    return directory


def export_rule_router(tmp: Path) -> Path:
    """router.pt of :func:`save_rule_policy`, written by the export code."""
    from warmroute.deploy.export import ExportConfig, export_router

    path = tmp / "router.pt"
    export_router(ExportConfig(policy=str(save_rule_policy(tmp / "rule")), output=str(path)))
    return path


@pytest.fixture(scope="module")
def rule_policy(tmp_path_factory) -> Path:
    return save_rule_policy(tmp_path_factory.mktemp("policy") / "rule")


@pytest.fixture(scope="module")
def exported_router(tmp_path_factory) -> Path:
    return export_rule_router(tmp_path_factory.mktemp("router"))
