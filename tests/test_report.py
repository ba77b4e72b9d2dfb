"""The pipeline report on a tiny real pipeline directory (demos -> BC -> cold and warm PPO -> evaluate --json ->
checkpoint curves): files and plots, numbers equal to a separate ``warmroute evaluate``, one curve row per checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from envs.evaluation.evaluate import HeuristicPolicy, evaluate_policy, evaluation_seeds, load_latencies
from envs.vidur_env import VidurEnvConfig
from rllib_ext.bc import BCConfig, pretrain
from rllib_ext.train import train
from rllib_ext.train_config import KLRefConfig, PPOSettings, TrainConfig
from warmroute.artifacts.run_dir import PipelineDir
from warmroute.cli import main as cli
from warmroute.report.build import checkpoint_curves, heuristic_lines, write_report

BATCH = 128
EPISODES = 2
HEURISTICS = ("round_robin", "least_outstanding", "power_of_two")
TEACHER = "least_outstanding"


def _evaluate_args(pipe: PipelineDir, *extra: str) -> list[str]:
    policies = [*HEURISTICS, str(pipe.path / "bc"), str(pipe.run("cold").policy.path), str(pipe.run("warm").policy.path)]
    return ["evaluate", "--policy", ",".join(policies), "--num-requests", "64", "--episodes", str(EPISODES), "--quiet", *extra]


@pytest.fixture(scope="session")
def pipeline(lo_demos, tmp_path_factory) -> tuple[PipelineDir, VidurEnvConfig, list[int]]:
    """A pipeline-like directory built with the library and the CLI, on the demos' tiny default workload."""
    demos, _, demo_config = lo_demos
    pipe = PipelineDir(tmp_path_factory.mktemp("pipeline") / "run")
    env = VidurEnvConfig(workload=demo_config.env.workload, reward_scale_s=10.0)
    pretrain(demos, pipe.path / "bc", BCConfig(epochs=10), progress=False)
    for label, warm in (("cold", False), ("warm", True)):
        kl = KLRefConfig(
            enable_warm_start=warm,
            pretrained_actor_path=str(pipe.path / "bc") if warm else None,
            kl_ref_decay_steps=2 * BATCH,
            warmup_steps=BATCH,
        )
        cfg = TrainConfig(
            env=env,
            ppo=PPOSettings(train_batch_size=BATCH, minibatch_size=64, num_epochs=1),
            kl=kl,
            iterations=2,
            num_env_runners=0,
            checkpoint_every=1,
            seed=1,
        )
        train(cfg, pipe.run(label).path, progress=False)
    status = cli.main(_evaluate_args(pipe, "--json", str(pipe.evaluation), "--latencies", str(pipe.latencies)))
    assert status == 0
    seeds = evaluation_seeds(env.workload.seed, EPISODES)
    curves = {label: checkpoint_curves(pipe.run(label).path, env, seeds) for label in ("cold", "warm")}
    pipe.curves.write_text(json.dumps({"seeds": seeds, "runs": curves}))
    pipe.config.write_text(json.dumps({"env": env.to_dict(), "budget": "tiny", "teacher": TEACHER, "seeds": seeds}))
    return pipe, env, seeds


@pytest.fixture(scope="session")
def report(pipeline) -> dict:
    pipe, _, _ = pipeline
    path = write_report(pipe.path)
    assert path == pipe.report / "report.md"
    return json.loads((pipe.report / "report.json").read_text())


@pytest.mark.slow  # uses the tiny real pipeline (demos, BC, two PPO runs: about 2 minutes on 2 cores)
def test_report_writes_markdown_json_and_at_least_four_readable_plots(pipeline, report) -> None:
    pipe, _, _ = pipeline
    markdown = (pipe.report / "report.md").read_text()
    pngs = sorted(p.name for p in pipe.report.glob("*.png"))
    assert len(pngs) >= 4 and pngs == sorted(report["plots"])
    assert {"learning_curves.png", "latency_cdf.png", "action_distribution.png", "schedules.png"} <= set(pngs)
    for name in pngs:
        assert f"]({name})" in markdown
        height, width, _ = imread(pipe.report / name).shape
        assert height >= 400 and width >= 800, name
    assert not list(pipe.path.glob(".report.*.tmp"))
    assert report["versions"]["ray"] == "2.60.0" and "matplotlib" in report["versions"]


@pytest.mark.slow
def test_report_numbers_equal_a_separate_warmroute_evaluate(pipeline, report, tmp_path: Path, run_cli) -> None:
    pipe, _, seeds = pipeline
    result = run_cli(*_evaluate_args(pipe, "--json", str(tmp_path / "again.json")))
    assert result.returncode == 0, result.stderr[-2000:]
    separate = json.loads((tmp_path / "again.json").read_text())["policies"]
    comparison = report["comparison"]
    assert set(comparison["policies"]) == set(separate)
    markdown = (pipe.report / "report.md").read_text()
    for name, metrics in separate.items():
        assert metrics["seeds"] == seeds
        for key, _, _ in comparison["columns"]:
            assert comparison["policies"][name][key] == metrics[key], (name, key)
        assert comparison["policies"][name]["action_distribution"] == metrics["action_distribution"]
        assert f"| `{comparison['labels'][name]}` | {metrics['mean_e2e_s']:.3f} | {metrics['p50_e2e_s']:.3f} |" in markdown
    for heuristic in HEURISTICS:  # the learning-curve lines are the same numbers
        assert report["heuristic_lines"][heuristic] == separate[heuristic]["mean_e2e_s"]


@pytest.mark.slow
def test_checkpoint_curves_have_one_row_per_checkpoint_with_env_steps_increasing(pipeline) -> None:
    pipe, _, seeds = pipeline
    curves = json.loads(pipe.curves.read_text())
    evaluation = json.loads(pipe.evaluation.read_text())["policies"]
    for label in ("cold", "warm"):
        rows = curves["runs"][label]
        assert [r["checkpoint"] for r in rows] == [p.name for p in pipe.run(label).complete_checkpoints()]
        assert [r["env_steps"] for r in rows] == [0, BATCH, 2 * BATCH]
        assert all(r["seeds"] == seeds and len(r["action_distribution"]) == 4 for r in rows)
    # The final checkpoint is the exported policy: the same numbers as its evaluation on the same seeds.
    warm_policy = next(name for name in evaluation if name.endswith("warm/policy"))
    assert curves["runs"]["warm"][-1]["mean_e2e_s"] == evaluation[warm_policy]["mean_e2e_s"]


@pytest.mark.slow
def test_latency_file_holds_every_request_of_every_policy(pipeline) -> None:
    pipe, env, _ = pipeline
    evaluation = json.loads(pipe.evaluation.read_text())["policies"]
    latencies = load_latencies(pipe.latencies)
    assert set(latencies) == set(evaluation)
    for name, arrays in latencies.items():
        assert arrays["e2e_s"].size == arrays["ttft_s"].size == EPISODES * env.workload.num_requests
        assert np.mean(arrays["e2e_s"]) == pytest.approx(evaluation[name]["mean_e2e_s"], rel=1e-12)
        assert "per_request" not in evaluation[name]  # evaluate --json keeps its format


@pytest.mark.slow
def test_heuristic_lines_are_rerun_on_the_curve_seeds_when_the_evaluation_used_others(pipeline) -> None:
    pipe, env, seeds = pipeline
    evaluation = json.loads(pipe.evaluation.read_text())["policies"]
    other = evaluation_seeds(env.workload.seed + 1, 1)
    lines = heuristic_lines({TEACHER: evaluation[TEACHER]}, other, env)
    assert lines[TEACHER] == evaluate_policy(HeuristicPolicy(TEACHER, env.layout), env, other)["mean_e2e_s"]
    assert lines[TEACHER] != evaluation[TEACHER]["mean_e2e_s"]


@pytest.mark.slow
def test_report_command_rebuilds_the_report(pipeline, report, cli_in_process) -> None:
    pipe, _, _ = pipeline
    result = cli_in_process("report", "--pipeline", str(pipe.path))
    assert result.returncode == 0, result.stderr
    assert "learning_curves.png" in result.stdout
    assert json.loads((pipe.report / "report.json").read_text())["comparison"] == report["comparison"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["report", "--pipeline", "no-such-dir"], "--pipeline no-such-dir: no such directory"),
        (["evaluate", "--policy", "round_robin", "--latencies", "lat.json"], "--latencies lat.json: give a path ending in .npz"),
    ],
)
def test_bad_report_input_is_one_line_with_status_2(args: list[str], needle: str, cli_in_process, tmp_path: Path) -> None:
    result = cli_in_process(*args)
    assert result.returncode == 2 and needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not Path("lat.json").exists()


def test_a_pipeline_without_evaluation_is_refused_naming_the_file(tmp_path: Path, cli_in_process) -> None:
    result = cli_in_process("report", "--pipeline", str(tmp_path))
    assert result.returncode == 2 and "no evaluation.json" in result.stderr and not (tmp_path / "report").exists()


@pytest.mark.slow
def test_without_pipeline_json_the_teacher_comes_from_the_warm_starts_clone(pipeline, tmp_path: Path) -> None:
    pipe, _, _ = pipeline
    copy = PipelineDir(tmp_path / "copy")
    shutil.copytree(pipe.path, copy.path, ignore=shutil.ignore_patterns("report*"))
    copy.config.unlink()
    write_report(copy.path)
    headline = json.loads((copy.report / "report.json").read_text())["headline"]
    assert headline["teacher"] == TEACHER  # the clone's first teacher (lo_demos: least_outstanding, round_robin)


@pytest.mark.slow
def test_a_corrupted_latency_file_is_refused_in_one_line_leaving_no_half_report(pipeline, tmp_path: Path, cli_in_process) -> None:
    pipe, _, _ = pipeline
    copy = PipelineDir(tmp_path / "copy")
    shutil.copytree(pipe.path, copy.path, ignore=shutil.ignore_patterns("report*"))
    copy.latencies.write_text("not an npz")
    result = cli_in_process("report", "--pipeline", str(copy.path))
    assert result.returncode == 2 and "latencies.npz: unreadable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not copy.report.exists() and not list(copy.path.glob(".report.*.tmp"))
