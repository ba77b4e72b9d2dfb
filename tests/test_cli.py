"""The real ``warmroute`` CLI end to end on tiny workloads, and its one-line errors."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from rllib_ext.train_config import WARM_START_ENTROPY_WARMUP_STEPS, KLRefConfig, PPOSettings, TrainConfig
from warmroute.cli import main as cli
from warmroute.cli.main import build_parser


def _in_process(cli_in_process: Callable[..., subprocess.CompletedProcess], *args: str) -> tuple[int, str, str]:
    result = cli_in_process(*args)
    return result.returncode, result.stdout, result.stderr


def test_evaluate_writes_json_for_each_policy(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "eval.json"
    result = run_cli(
        "evaluate",
        "--policy",
        "round_robin,least_outstanding",
        "--num-requests",
        "40",
        "--episodes",
        "2",
        "--json",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert "least_outstanding" in result.stdout
    data = json.loads(out.read_text())
    assert data["env_config"]["workload"]["num_requests"] == 40
    for name in ("round_robin", "least_outstanding"):
        metrics = data["policies"][name]
        for key in (
            "mean_e2e_s",
            "p50_e2e_s",
            "p99_e2e_s",
            "mean_ttft_s",
            "p99_ttft_s",
            "mean_tbt_s",
            "throughput_rps",
            "action_distribution",
            "balance_score",
            "decisions_per_s",
        ):
            assert key in metrics, key
        assert len(metrics["action_distribution"]) == 4
        assert metrics["episodes"] == 2


def test_heterogeneous_flags(cli_in_process) -> None:
    status, out, err = _in_process(
        cli_in_process,
        "evaluate",
        "--policy",
        "speed_aware",
        "--replicas",
        "3",
        "--replica-devices",
        "h100,a100,l40",
        "--num-requests",
        "30",
        "--episodes",
        "1",
        "--quiet",
        "--qps",
        "10",
    )
    assert status == 0, err
    assert "1 x h100 + 1 x a100 + 1 x l40" in out


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
def test_bad_input_is_one_line_naming_the_flag(args: list[str], flag: str, cli_in_process) -> None:
    base = ["evaluate", "--policy", "round_robin", "--num-requests", "10", "--episodes", "1", "--quiet"]
    if "--policy" in args:
        base = ["evaluate", "--num-requests", "10", "--episodes", "1", "--quiet"]
    status, _, err = _in_process(cli_in_process, *base, *args)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert flag in lines[0]


@pytest.mark.parametrize(
    ("content", "needle"),
    [("a,b\n1,2\n", "lacks column"), ("num_prefill_tokens,num_decode_tokens\n100,20\n", "has 1 requests")],
)
def test_bad_trace_file_is_one_line(tmp_path: Path, content: str, needle: str, cli_in_process) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(content)
    status, _, err = _in_process(
        cli_in_process,
        "evaluate",
        "--policy",
        "round_robin",
        "--lengths",
        f"trace:{trace}",
        "--num-requests",
        "10",
        "--episodes",
        "1",
        "--quiet",
    )
    assert status == 2 and needle in err and "--lengths" in err
    assert len(err.strip().splitlines()) == 1


def test_trace_workload_runs(tmp_path: Path, cli_in_process) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("num_prefill_tokens,num_decode_tokens\n" + "".join(f"{200 + 7 * i},{20 + i}\n" for i in range(30)))
    status, out, err = _in_process(
        cli_in_process,
        "evaluate",
        "--policy",
        "least_outstanding",
        "--lengths",
        f"trace:{trace}",
        "--num-requests",
        "30",
        "--episodes",
        "1",
        "--quiet",
        "--qps",
        "5",
    )
    assert status == 0, err
    assert "workload default+overrides" in out and "30 requests x 1 held-out seeds" in out


def test_seed_underscore_spellings_parse_like_kebab_case() -> None:
    parser = build_parser()
    kebab = parser.parse_args(
        [
            "train",
            "--enable-warm-start",
            "--pretrained-actor-path",
            "bc",
            "--kl-ref-coef-initial",
            "0.3",
            "--kl-ref-decay-steps",
            "500",
            "--warmup-steps",
            "7",
            "--num-env-runners",
            "1",
        ]
    )
    snake = parser.parse_args(
        [
            "train",
            "--enable_warm_start",
            "--pretrained_actor_path",
            "bc",
            "--kl_ref_coef_initial",
            "0.3",
            "--kl_ref_decay_steps",
            "500",
            "--warmup_steps",
            "7",
            "--num_env_runners",
            "1",
        ]
    )
    assert vars(kebab) == vars(snake)
    assert snake.kl_ref_coef_initial == 0.3 and snake.enable_warm_start
    demos = parser.parse_args(["collect-demos", "--output", "d", "--num_env_runners", "3", "--steps_per_round", "64"])
    assert (demos.num_env_runners, demos.steps_per_round) == (3, 64)
    bc = parser.parse_args(["pretrain", "--demo", "d", "--output", "p", "--label_smoothing", "0.1", "--batch_size", "32"])
    assert (bc.label_smoothing, bc.batch_size) == (0.1, 32)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_every_flag_has_help_and_takes_no_default_from_the_cli() -> None:
    for name, parser in _subparsers().items():
        for action in _flags(parser):
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings[0]}: no help"
            assert action.default is argparse.SUPPRESS, f"{name} {action.option_strings[0]}: default set in the CLI"
    for name, module in cli.SUBCOMMANDS.items():  # and no DEFAULT_* constant or default= keyword in their modules
        if name == "submit":  # its DEFAULT_ADDRESS is Ray's dashboard address, not a config default
            continue
        tree = ast.parse(Path(module.__file__).read_text())
        assert not [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id.startswith("DEFAULT")], name
        assert not [k for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords if k.arg == "default"], name


def test_multi_word_flags_accept_the_underscore_spelling_on_every_subcommand() -> None:
    for name, parser in _subparsers().items():
        for action in _flags(parser):
            for flag in (s for s in action.option_strings if "-" in s[2:]):
                assert "--" + flag[2:].replace("-", "_") in action.option_strings, f"{name} {flag}"
    args = build_parser().parse_args(["evaluate", "--policy", "round_robin", "--num_requests", "40"])
    assert args.num_requests == 40


def test_flags_with_a_fixed_set_of_values_offer_choices() -> None:
    parsers = _subparsers()
    for command, dests in {
        "train": ("architecture", "kl_ref_schedule", "workload", "model", "device", "replica_scheduler", "predictor", "reward"),
        "pretrain": ("architecture",),
    }.items():
        actions = {a.dest: a for a in _flags(parsers[command])}
        for dest in dests:
            assert actions[dest].choices, f"{command} --{dest}"


def test_help_shows_the_dataclass_defaults() -> None:
    actions = {a.dest: a for a in _flags(_subparsers()["train"])}
    assert f"(default: {TrainConfig().iterations})" in actions["iterations"].help
    assert f"(default: {PPOSettings().lr})" in actions["lr"].help
    assert f"(default: {TrainConfig().env.reward_scale_s})" in actions["reward_scale_s"].help


def test_untyped_flags_leave_every_setting_to_the_config_dataclasses() -> None:
    from warmroute.cli.train import _train_config

    cold, _, resume = _train_config(build_parser().parse_args(["train", "--output", "run"]))
    assert cold == TrainConfig() and not resume and cold.kl.warmup_steps == 0  # a cold start is plain PPO
    warm, _, _ = _train_config(
        build_parser().parse_args(["train", "--output", "run", "--enable-warm-start", "--pretrained-actor-path", "bc"])
    )
    assert warm.kl == KLRefConfig(enable_warm_start=True, pretrained_actor_path="bc")
    assert warm.kl.warmup_steps == WARM_START_ENTROPY_WARMUP_STEPS  # same rule in the Python API and the CLI


def test_parse_errors_are_one_line_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "--kl-ref-schedule", "sigmoid"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warmroute train: error:") and "--kl-ref-schedule" in err[0]
