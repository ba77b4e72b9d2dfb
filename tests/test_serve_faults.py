"""``warmroute serve`` when backends fail, with real processes: a backend killed mid-run, one that stalls, one
that answers 500, one that breaks a stream. Every client request must end, within a bound, with an answer or a
clear HTTP error, and the router must keep serving. Also each bad input at start: one line, exit status 2."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import torch
from serve_backend import SERVE_READY, read_until, serve_command, start_backend, start_serve, stop

from warmroute.deploy.router_file import ROUTER_METADATA
from warmroute.serve.app import SHUTDOWN_GRACE_S

FAST_FAILOVER = ("--first-byte-timeout", "1", "--stream-idle-timeout", "1", "--request-timeout", "4", "--backoff", "0.5")
BOUND_S = 6.0
"""Longest any request may take under FAST_FAILOVER: the request timeout plus slack for a loaded machine."""


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest):
    """Three test backends (20 ms per token) and a round-robin ``warmroute serve`` with short timeouts (and the
    flags of an indirect parameter, which come last and win)."""
    backends = [start_backend(tmp_path, f"b{i}", token_delay=0.02) for i in range(3)]
    serve = start_serve(tmp_path, backends, "--router", "round_robin", *FAST_FAILOVER, *getattr(request, "param", ()))
    yield serve, backends
    for process in (serve, *backends):
        stop(process)


def timed_request(url: str, stream: bool = False, max_tokens: int = 5) -> tuple[int, float, list[bytes] | dict]:
    """``(status, seconds, SSE events or JSON body)`` of one completion; never waits more than 30 s."""
    start = time.monotonic()
    body = {"prompt": list(range(24)), "max_tokens": max_tokens, "stream": stream}
    with requests.post(f"{url}/v1/completions", json=body, timeout=30, stream=stream) as answer:
        if stream and answer.status_code == 200:
            content: list[bytes] | dict = [line for line in answer.iter_lines() if line]
        else:
            content = answer.json()
        return answer.status_code, time.monotonic() - start, content


def assert_all_served(results: list[tuple[int, float, object]]) -> None:
    for status, seconds, _ in results:
        assert status == 200 and seconds < BOUND_S, (status, seconds)


def test_a_backend_killed_mid_run_costs_no_request_and_the_router_keeps_serving(cluster):
    serve, backends = cluster
    with ThreadPoolExecutor(9) as pool:
        running = [pool.submit(timed_request, serve.url, False, 25) for _ in range(12)]  # 0.5 s each
        streams = [pool.submit(timed_request, serve.url, True, 50) for _ in range(3)]  # 1 s each, one on each backend
        time.sleep(0.3)
        backends[1].popen.send_signal(signal.SIGKILL)
        backends[1].popen.wait(5)
        results = [f.result() for f in running]
        streamed = [f.result() for f in streams]
    assert_all_served(results)  # the ones in flight on the killed backend failed over before answering
    for status, seconds, events in streamed:  # a stream cut by the kill ends with an error event, not a hang
        assert status == 200 and seconds < BOUND_S and events[-1] == b"data: [DONE]"
        assert b'"text": "t49 "' in events[-3] or json.loads(events[-2][6:])["error"]["code"] == 502
    assert_all_served([timed_request(serve.url) for _ in range(6)])
    metrics = requests.get(f"{serve.url}/metrics", timeout=5).text
    errors = [
        line.split("{")[1].split("}")[0]
        for line in metrics.splitlines()
        if line.startswith("warmroute_serve_backend_errors_total")
    ]
    assert errors and all(labels.startswith('backend="1"') for labels in errors), errors


@pytest.mark.parametrize("cluster", [("--backoff", "60")], indirect=True)  # no retry of the stalled one in this test
def test_a_stalling_backend_is_left_out_after_one_first_byte_timeout(cluster):
    serve, backends = cluster
    backends[0].control("stall")
    results = [timed_request(serve.url, stream=i % 2 == 1) for i in range(6)]
    assert_all_served(results)
    assert results[0][1] >= 1.0  # the first request met the stall, waited the 1 s first-byte timeout, moved on
    health = requests.get(f"{serve.url}/health", timeout=5).json()
    assert [b["healthy"] for b in health["backends"]] == [False, True, True]
    metrics = requests.get(f"{serve.url}/metrics", timeout=5).text
    assert 'warmroute_serve_backend_errors_total{backend="0",kind="timeout"} 1.0' in metrics  # and only it
    assert "warmroute_serve_failovers_total 1.0" in metrics


def test_a_backend_answering_500_is_skipped_and_clients_never_see_it(cluster):
    serve, backends = cluster
    backends[2].control("error")
    results = [timed_request(serve.url, stream=i % 2 == 0) for i in range(9)]
    assert_all_served(results)
    metrics = requests.get(f"{serve.url}/metrics", timeout=5).text
    assert 'warmroute_serve_backend_errors_total{backend="2",kind="status"}' in metrics


def test_when_every_backend_fails_the_client_gets_502_or_504_as_json_in_bounded_time(cluster):
    serve, backends = cluster
    for backend in backends:
        backend.control("error")
    status, seconds, body = timed_request(serve.url)
    assert status == 502 and seconds < BOUND_S and "answered 500" in body["error"]["message"]
    for backend in backends:
        backend.control("stall")
    status, seconds, body = timed_request(serve.url)
    assert status == 504 and seconds < BOUND_S and body["error"]["type"] == "timeout"
    for backend in backends:
        backend.control("ok")
    time.sleep(0.6)  # the backoff of the last failures (0.5 s, doubled once) passes for at least one backend
    assert_all_served([timed_request(serve.url) for _ in range(3)])


def test_a_stream_broken_after_it_started_ends_with_an_error_event_not_a_hang(cluster):
    serve, backends = cluster
    backends[0].control("break")
    status, seconds, events = timed_request(serve.url, stream=True, max_tokens=10)  # round robin starts at 0
    assert status == 200 and seconds < BOUND_S
    assert events[-1] == b"data: [DONE]" and json.loads(events[-2][6:])["error"]["code"] == 502
    assert json.loads(events[0][6:])["choices"][0]["text"] == "t0 "  # the tokens before the break arrived
    assert_all_served([timed_request(serve.url, stream=True) for _ in range(3)])


@pytest.mark.slow  # about 15 s on the loaded 2-core VM
def test_sigterm_ends_open_streams_with_an_error_event_and_exits_within_the_grace_period(tmp_path):
    backend = start_backend(tmp_path, "slow", token_delay=0.5)
    serve = start_serve(tmp_path, [backend])
    try:
        with ThreadPoolExecutor(1) as pool:
            streaming = pool.submit(timed_request, serve.url, True, 100)  # 50 s of tokens
            time.sleep(1.5)
            start = time.monotonic()
            serve.popen.send_signal(signal.SIGTERM)
            assert serve.popen.wait(SHUTDOWN_GRACE_S + 5) == 0
            stopped = time.monotonic() - start
            status, _, events = streaming.result(timeout=5)
        assert stopped < SHUTDOWN_GRACE_S + 5 and status == 200
        assert events[-1] == b"data: [DONE]" and json.loads(events[-2][6:])["error"]["code"] == 502
    finally:
        stop(serve)
        stop(backend)


# -- bad input at start: one line, exit status 2 ---------------------------------------------------------------


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr)
    assert lines[0].startswith("warmroute serve: error:")
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_backend_at_start_is_one_line(cli_in_process):
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(cli_in_process("serve", "--backend", url, "--port", "0"))
    assert f"--backend {url}: unreachable" in line and "start the engine" in line


def test_with_a_startup_wait_the_router_waits_for_an_engine_still_loading(tmp_path):
    port = free_port()
    with (tmp_path / "serve.err").open("w") as err:
        popen = subprocess.Popen(
            serve_command([f"http://127.0.0.1:{port}"], "--startup-wait", "60"), stdout=subprocess.PIPE, stderr=err, text=True
        )
    started = [popen]
    try:
        assert read_until(popen, "warmroute serve: waiting for", 120) is not None
        started.append(start_backend(tmp_path, "late", port=port))
        url = read_until(popen, SERVE_READY, 30)
        assert url is not None and timed_request(url)[0] == 200
    finally:
        for process in started:
            stop(process)


def test_an_unknown_router_is_one_line(cli_in_process):
    line = one_line_error(cli_in_process("serve", "--backend", "http://127.0.0.1:1", "--router", "fastest_please"))
    assert "--router fastest_please: unknown router" in line and "round_robin" in line
    line = one_line_error(cli_in_process("serve", "--backend", "http://127.0.0.1:1", "--router", "kv_cost:speed=2"))
    assert "--router kv_cost:speed=2" in line


def test_a_router_pt_for_another_observation_version_is_one_line(cli_in_process, tmp_path):
    from test_serve import export_rule_router

    router = export_rule_router(tmp_path)
    extra = {ROUTER_METADATA: ""}
    module = torch.jit.load(str(router), _extra_files=extra)
    meta = json.loads(extra[ROUTER_METADATA])
    meta["observation_version"] = 2
    old = tmp_path / "old.pt"
    torch.jit.save(module, str(old), _extra_files={ROUTER_METADATA: json.dumps(meta)})
    line = one_line_error(cli_in_process("serve", "--backend", "http://127.0.0.1:1", "--router", str(old)))
    assert f"--router {old}: made for observation version 2" in line and "re-export" in line


def test_a_port_in_use_or_an_unwritable_decision_log_is_one_line(cli_in_process, tmp_path):
    backend = start_backend(tmp_path, "b0")
    try:
        log = tmp_path / "missing" / "decisions.jsonl"
        line = one_line_error(cli_in_process("serve", "--backend", backend.url, "--port", "0", "--decision-log", str(log)))
        assert f"--decision-log {log}: cannot write" in line
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            line = one_line_error(cli_in_process("serve", "--backend", backend.url, "--port", str(port)))
        assert f"--port {port}: cannot listen on 127.0.0.1" in line and "choose a free port" in line
    finally:
        stop(backend)
