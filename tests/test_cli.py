"""The real ``warmroute`` CLI end to end on tiny workloads, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warmroute.cli", *args], capture_output=True, text=True, timeout=120)


def test_evaluate_writes_json_for_each_policy(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = _run("evaluate", "--policy", "round_robin,least_outstanding", "--num-requests", "40", "--episodes", "2",
                  "--json", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "least_outstanding" in result.stdout
    data = json.loads(out.read_text())
    assert data["env_config"]["workload"]["num_requests"] == 40
    for name in ("round_robin", "least_outstanding"):
        metrics = data["policies"][name]
        for key in ("mean_e2e_s", "p50_e2e_s", "p99_e2e_s", "mean_ttft_s", "p99_ttft_s", "mean_tbt_s",
                    "throughput_rps", "action_distribution", "balance_score", "decisions_per_s"):
            assert key in metrics, key
        assert len(metrics["action_distribution"]) == 4
        assert metrics["episodes"] == 2


def test_heterogeneous_flags(tmp_path: Path) -> None:
    result = _run("evaluate", "--policy", "speed_aware", "--replicas", "3", "--replica-devices", "h100,a100,l40",
                  "--num-requests", "30", "--episodes", "1", "--quiet", "--qps", "10")
    assert result.returncode == 0, result.stderr
    assert "1 x h100 + 1 x a100 + 1 x l40" in result.stdout


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--model", "gpt-5"], "--model"),
        (["--device", "tpu"], "--device"),
        (["--policy", "fastest"], "--policy"),
        (["--qps", "0"], "--qps"),
        (["--qps", "-3"], "--qps"),
        (["--replicas", "0"], "--replicas"),
        (["--replica-devices", "h100,a100"], "--replica-devices"),
        (["--lengths", "trace:/nonexistent/trace.csv"], "--lengths"),
        (["--arrival", "gamma:x"], "--arrival"),
        (["--workload", "huge"], "--workload"),
        (["--episodes", "0"], "--episodes"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(args: list[str], flag: str) -> None:
    base = ["evaluate", "--policy", "round_robin", "--num-requests", "10", "--episodes", "1", "--quiet"]
    if "--policy" in args:
        base = ["evaluate", "--num-requests", "10", "--episodes", "1", "--quiet"]
    result = _run(*base, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert flag in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [("a,b\n1,2\n", "lacks column"), ("num_prefill_tokens,num_decode_tokens\n100,20\n", "has 1 requests")],
)
def test_bad_trace_file_is_one_line(tmp_path: Path, content: str, needle: str) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(content)
    result = _run("evaluate", "--policy", "round_robin", "--lengths", f"trace:{trace}", "--num-requests", "10",
                  "--episodes", "1", "--quiet")
    assert result.returncode == 2 and needle in result.stderr and "--lengths" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_trace_workload_runs(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("num_prefill_tokens,num_decode_tokens\n" + "".join(f"{200 + 7 * i},{20 + i}\n" for i in range(30)))
    result = _run("evaluate", "--policy", "least_outstanding", "--lengths", f"trace:{trace}", "--num-requests", "30",
                  "--episodes", "1", "--quiet", "--qps", "5")
    assert result.returncode == 0, result.stderr


def test_seed_underscore_spellings_parse_like_kebab_case() -> None:
    from warmroute.cli import build_parser

    parser = build_parser()
    kebab = parser.parse_args(["train", "--enable-warm-start", "--pretrained-actor-path", "bc", "--kl-ref-coef-initial", "0.3",
                               "--kl-ref-decay-steps", "500", "--warmup-steps", "7", "--num-env-runners", "1"])
    snake = parser.parse_args(["train", "--enable_warm_start", "--pretrained_actor_path", "bc", "--kl_ref_coef_initial", "0.3",
                               "--kl_ref_decay_steps", "500", "--warmup_steps", "7", "--num_env_runners", "1"])
    assert vars(kebab) == vars(snake)
    assert snake.kl_ref_coef_initial == 0.3 and snake.enable_warm_start
    demos = parser.parse_args(["collect-demos", "--output", "d", "--num_env_runners", "3", "--steps_per_round", "64"])
    assert (demos.num_env_runners, demos.steps_per_round) == (3, 64)
    bc = parser.parse_args(["pretrain", "--demo", "d", "--output", "p", "--label_smoothing", "0.1", "--batch_size", "32"])
    assert (bc.label_smoothing, bc.batch_size) == (0.1, 32)
