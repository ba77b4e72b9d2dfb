"""Prefix-sharing workloads through the real ``warmroute`` CLI: one-line errors, and the new table columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envs.sim.workload import preset


@pytest.fixture
def evaluate(tmp_path: Path, cli_in_process):
    """``warmroute evaluate --policy round_robin ... ARGS`` in this process, writing ``tmp_path/out.json``."""
    out = tmp_path / "out.json"
    return lambda *args: cli_in_process(
        "evaluate", "--policy", "round_robin", "--episodes", "1", "--quiet", "--json", str(out), *args
    )


def _trace(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return f"jsonl:{path}"


GOOD = '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}'


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--prefix-workload", "shared_prefix", "--question-tokens", "0"], "--question-tokens"),
        (["--prefix-workload", "shared_prefix", "--prefix-groups", "0"], "--prefix-groups"),
        (["--prefix-workload", "multi_turn", "--sessions", "0"], "--sessions"),
        (["--prefix-workload", "multi_turn", "--sessions", "2", "--think-time-s", "-1"], "--think-time-s"),
        (["--prefix-workload", "mooncake", "--trace-start", "12000", "--num-requests", "100"], "past the end"),
        (["--prefix-workload", "mooncake", "--trace-start", "10", "--trace-lead-in", "20"], "--trace-lead-in"),
        (["--prefix-workload", "mooncake", "--trace-time-scale", "0"], "--trace-time-scale"),
        (["--prefix-workload", "mooncake", "--trace-windows", "0"], "--trace-windows"),
        (["--prefix-workload", "mooncake", "--trace-start", "12000", "--trace-windows", "4"], "--trace-windows"),
        (["--prefix-workload", "mooncake", "--replica-scheduler", "vllm"], "--prefix-workload"),
        (["--prefix-workload", "radix"], "--prefix-workload"),
        (["--prefix-caching", "maybe"], "--prefix-caching"),
        (["--host-cache-gb", "-1"], "--host-cache-gb"),
        (["--policy", "prefix_affinity:cache_threshold=x"], "--policy"),
    ],
)
def test_bad_prefix_flags_are_one_line_errors_with_exit_2(tmp_path: Path, args: list[str], needle: str, evaluate) -> None:
    result = evaluate("--num-requests", "10", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ([GOOD, "{not json"], ":2: not a trace record"),
        ([GOOD, '{"timestamp": 1, "input_length": 1100, "output_length": 5, "hash_ids": [1, 2]}'], ":2: 2 hash_ids cover 1024"),
        ([GOOD, '{"timestamp": 1, "input_length": 100}'], ":2: not a trace record"),
    ],
)
def test_a_bad_trace_line_is_named_by_file_and_line(tmp_path: Path, lines: list[str], needle: str, evaluate) -> None:
    result = evaluate("--num-requests", "1", "--prefix-workload", _trace(tmp_path, lines))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr and "trace.jsonl" in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_evaluate_reports_hit_rate_and_p90_ttft_on_a_shared_prefix_workload(tmp_path: Path, run_cli) -> None:
    result = run_cli(
        "evaluate",
        "--episodes",
        "1",
        "--quiet",
        "--json",
        str(tmp_path / "out.json"),
        "--prefix-workload",
        "shared_prefix",
        "--num-requests",
        "40",
        "--qps",
        "10",
        "--prefix-groups",
        "2",
        "--policy",
        "round_robin,prefix_affinity,session_hash:load_factor=1.5",
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "out.json").read_text())["policies"]
    assert set(results) == {"round_robin", "prefix_affinity", "session_hash:load_factor=1.5"}
    for metrics in results.values():
        assert 0 < metrics["cache_hit_rate"] < 1 and metrics["p90_ttft_s"] >= metrics["p50_ttft_s"]


def test_workload_kinds_are_named_once_by_has_prefix_and_is_trace() -> None:
    kinds = {name: (preset(name).has_prefix, preset(name).is_trace) for name in ("default", "mooncake", "multi_turn")}
    assert kinds == {"default": (False, False), "mooncake": (True, True), "multi_turn": (True, False)}
    assert preset("heterogeneous").describe() == (
        "2 x h100 + 2 x a100; meta-llama/Llama-3-8B; qps 32.2; 512 requests per episode"
    )
    assert preset("mooncake").traffic == "trace time scale 0.7 from trace request 10000"
