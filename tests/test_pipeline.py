"""``warmroute pipeline`` on the ``tiny`` budget and a 40-request workload: every stage for real (Ray env runners,
PPO, vidur), then re-runs that must reuse, refuse, redo or resume."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envs.evaluation.evaluate import evaluation_seeds
from warmroute.artifacts.run_dir import PipelineDir, checkpoint_iteration
from warmroute.cli.main import build_parser
from warmroute.cli.pipeline import pipeline_config_from_args
from warmroute.cli.submit import check_paths, entrypoint_for, parse_command
from warmroute.pipeline.config import BUDGETS, PipelineConfig
from warmroute.pipeline.run import run_pipeline
from warmroute.pipeline.stages import STAGES, heuristic_names

TINY = ["pipeline", "--budget", "tiny", "--num-requests", "40"]
RUNTIME_KEYS = ("decisions_per_s",)  # wall-clock speed, the only figure that differs between two evaluations


def tiny_config(*flags: str) -> PipelineConfig:
    """The config ``warmroute pipeline --budget tiny --num-requests 40 FLAGS`` runs (so CLI re-runs match it)."""
    return pipeline_config_from_args(build_parser().parse_args([*TINY, *flags, "--output", "unused"]))


def events(pipeline: PipelineDir) -> list[dict]:
    return [json.loads(line) for line in pipeline.log.read_text().splitlines()]


def file_times(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def tiny_pipeline(ray_session, tmp_path_factory) -> tuple[PipelineDir, PipelineConfig, list[str]]:
    """One finished tiny pipeline (teacher chosen on validation seeds), run in this process."""
    out = tmp_path_factory.mktemp("pipeline") / "tiny"
    config, lines = tiny_config(), []
    run_pipeline(config, out, progress=False, log=lines.append)
    return PipelineDir(out), config, lines


@pytest.mark.slow
def test_pipeline_writes_every_stage_in_the_formats_of_the_single_commands(tiny_pipeline) -> None:
    pipeline, config, _ = tiny_pipeline
    state = json.loads(pipeline.config.read_text())
    names = [stage.name for stage in STAGES]
    assert [s for s in names if state["stages"].get(s, {}).get("status") == "done"] == names
    for label in ("warm", "cold"):
        run = pipeline.run(label)
        assert [checkpoint_iteration(c) for c in run.complete_checkpoints()] == [0, 1, 2]
        assert list(run.tensorboard.glob("events.out.tfevents.*")), f"{label}: no TensorBoard log"
    evaluation = json.loads(pipeline.evaluation.read_text())
    assert evaluation["env_config"] == config.env.to_dict()
    roles = state["policies"]
    learned = [roles[f"{r}{g}"] for r in ("bc", "warm", "cold") for g in ("", "_greedy")]
    assert set(evaluation["policies"]) == set(heuristic_names(config)) | set(learned)
    assert all(r["seeds"] == config.test_seeds for r in evaluation["policies"].values())


@pytest.mark.slow
def test_teacher_is_the_best_heuristic_on_validation_seeds_never_on_test_seeds(tiny_pipeline) -> None:
    pipeline, config, _ = tiny_pipeline
    state = json.loads(pipeline.config.read_text())
    chosen = state["stages"]["teacher"]["result"]
    assert chosen["teacher"] == min(chosen["validation"], key=chosen["validation"].get) == state["teacher"]
    assert set(chosen["validation"]) == set(heuristic_names(config))
    assert not set(state["seeds"]["validation"]) & set(evaluation_seeds(config.env.workload.seed, 5000))
    demos_meta = json.loads(pipeline.demos.metadata.read_text())
    assert demos_meta["teachers"] == [state["teacher"]]


@pytest.mark.slow
def test_a_second_run_reuses_every_finished_stage_and_rewrites_no_output(tiny_pipeline) -> None:
    pipeline, config, _ = tiny_pipeline
    before, logged = file_times(pipeline.path), len(events(pipeline))
    lines: list[str] = []
    run_pipeline(config, pipeline.path, progress=False, log=lines.append)
    second = events(pipeline)[logged:]
    finished = [s for s, r in json.loads(pipeline.config.read_text())["stages"].items() if r["status"] == "done"]
    assert [e["stage"] for e in second if e["event"] == "reused"] == finished
    assert not [e for e in second if e["event"] in ("started", "resumed")]
    after = file_times(pipeline.path)
    assert {k: v for k, v in after.items() if k not in (pipeline.CONFIG_FILE, pipeline.LOG_FILE)} == {
        k: v for k, v in before.items() if k not in (pipeline.CONFIG_FILE, pipeline.LOG_FILE)
    }


@pytest.mark.slow
def test_changed_settings_are_refused_in_one_line_and_nothing_changes(tiny_pipeline, cli_in_process) -> None:
    pipeline, _, _ = tiny_pipeline
    before = file_times(pipeline.path)
    result = cli_in_process(*TINY, "--episodes", "2", "--output", str(pipeline.path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("warmroute pipeline: error: --output")
    assert "evaluation stage was made with episodes=1, this run asks episodes=2" in result.stderr and "--force" in result.stderr
    assert file_times(pipeline.path) == before


@pytest.mark.slow
def test_force_redoes_the_changed_stage_and_the_stages_after_it_only(tiny_pipeline, tmp_path: Path) -> None:
    pipeline, _, _ = tiny_pipeline
    moved = PipelineDir(tmp_path / "moved")  # a finished pipeline directory may be moved
    shutil.copytree(pipeline.path, moved.path)
    logged = len(events(moved))
    run_pipeline(tiny_config("--episodes", "2"), moved.path, force=True, progress=False, log=lambda line: None)
    ran = {e["stage"] for e in events(moved)[logged:] if e["event"] == "started"}
    assert ran == {"evaluation", "curves", "report"}
    policies = json.loads(moved.evaluation.read_text())["policies"]
    assert all(len(r["seeds"]) == 2 for r in policies.values())


@pytest.mark.slow
def test_a_stage_whose_output_is_gone_is_redone_with_every_stage_after_it(tiny_pipeline, tmp_path: Path) -> None:
    pipeline, config, _ = tiny_pipeline
    copy = PipelineDir(tmp_path / "copy")
    shutil.copytree(pipeline.path, copy.path)
    copy.evaluation.unlink()
    logged = len(events(copy))
    run_pipeline(config, copy.path, progress=False, log=lambda line: None)
    later = events(copy)[logged:]
    assert [e["stage"] for e in later if e["event"] == "reused"] == ["teacher", "demos", "bc", "warm", "cold"]
    assert "evaluation" in [e["stage"] for e in later if e["event"] == "started"]
    assert copy.evaluation.is_file()


@pytest.mark.slow
def test_evaluation_equals_warmroute_evaluate_run_separately(tiny_pipeline, cli_in_process, tmp_path: Path) -> None:
    pipeline, config, _ = tiny_pipeline
    ours = json.loads(pipeline.evaluation.read_text())["policies"]
    heuristics = ",".join(heuristic_names(config))
    saved = ",".join(str(p) for p in (pipeline.bc.path, pipeline.run("warm").policy.path, pipeline.run("cold").policy.path))
    theirs = {}
    for extra in ([], ["--greedy"]):
        out = tmp_path / f"evaluate{len(extra)}.json"
        policies = f"{heuristics},{saved}" if not extra else saved
        flags = ["--num-requests", "40", "--reward-scale-s", "10", "--episodes", "1", "--quiet", "--json", str(out)]
        assert cli_in_process("evaluate", "--policy", policies, *flags, *extra).returncode == 0
        theirs.update(json.loads(out.read_text())["policies"])
    assert set(theirs) == set(ours)
    for name, result in ours.items():
        assert {k: v for k, v in result.items() if k not in RUNTIME_KEYS} == {
            k: v for k, v in theirs[name].items() if k not in RUNTIME_KEYS
        }, name


@pytest.mark.slow
def test_a_pipeline_killed_during_ppo_resumes_from_its_last_checkpoint(ray_session, tmp_path: Path, cli_in_process) -> None:
    out = PipelineDir(tmp_path / "killed")
    flags = [*TINY, "--teacher", "least_outstanding", "--iterations", "4", "--output", str(out.path)]
    first_checkpoint = out.run("warm").checkpoint(1) / out.run("warm").ADAPTIVE_FILE
    process = subprocess.Popen(
        [sys.executable, "-m", "warmroute.cli.main", *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes its Ray processes too
    )
    try:
        deadline = time.monotonic() + 400
        while not first_checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first_checkpoint.exists(), "the pipeline never wrote its first PPO checkpoint"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    kept = [checkpoint_iteration(c) for c in out.run("warm").complete_checkpoints()]
    assert kept and kept[-1] < 4, "killed too late: warm PPO had finished"
    result = cli_in_process(*flags)
    assert result.returncode == 0, result.stderr
    assert f"restored {out.run('warm').checkpoint(kept[-1]).absolute()} at iteration {kept[-1]}" in result.stdout
    warm = result.stdout.split("[4/8] warm: resuming")[1].split("[4/8] warm: done")[0]
    assert [line[:10] for line in warm.splitlines() if line.startswith("iter")] == [
        f"iter {i:>3}/4" for i in range(kept[-1] + 1, 5)
    ]  # the iteration numbers continue from the checkpoint
    progress = [json.loads(line)["iteration"] for line in out.run("warm").progress.read_text().splitlines()]
    assert progress == [1, 2, 3, 4]
    log = [(e["stage"], e["event"]) for e in events(out)]
    assert ("warm", "resumed") in log and log.count(("warm", "started")) == 1
    assert json.loads(out.config.read_text())["stages"]["cold"]["status"] == "done"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--teacher", "fastest"], "--teacher: unknown router 'fastest'"),
        (["--curve-episodes", "3", "--episodes", "2"], "--curve-episodes (3) must not exceed --episodes (2)"),
        (["--minibatch-size", "512"], "--minibatch-size (512) must not exceed --train-batch-size (128)"),
        (["--iterations", "0"], "--iterations must be an integer >= 1 (got 0)"),
        (["--num-env-runners", "0"], "--num-env-runners must be >= 1"),
    ],
)
def test_bad_pipeline_settings_are_one_line_and_write_nothing(
    flags: list[str], message: str, cli_in_process, tmp_path: Path
) -> None:
    result = cli_in_process(*TINY, *flags, "--output", str(tmp_path / "p"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "p").exists()


def test_a_directory_that_is_not_a_pipeline_is_refused(cli_in_process, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = cli_in_process(*TINY, "--output", str(tmp_path))
    assert result.returncode == 2 and "holds no pipeline.json; choose a new directory" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_budget_flags_override_single_fields_of_the_named_budget() -> None:
    config = tiny_config("--iterations", "3")
    assert config.budget == dataclasses.replace(BUDGETS["tiny"], name="tiny+overrides", iterations=3)
    assert tiny_config().budget == BUDGETS["tiny"] and PipelineConfig().budget == BUDGETS["small"]
    assert PipelineConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_the_pipeline_can_be_submitted_to_a_cluster() -> None:
    parsed = parse_command(["pipeline", "--budget", "small", "--output", "/shared/quickstart"], build_parser())
    check_paths(parsed, Path.cwd(), (Path("/shared"),))  # an output on shared storage: accepted
    assert (
        entrypoint_for(["pipeline", "--output", "/shared/q"], Path("/")) == "python -m warmroute.cli pipeline --output /shared/q"
    )


def test_the_one_click_script_runs_the_pipeline_with_its_flags(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "train_ppo_warmstart.sh"
    env = {**os.environ, "PYTHON": sys.executable, "OUTPUT": str(tmp_path / "run")}
    result = subprocess.run([str(script), "--teacher", "fastest"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("warmroute pipeline: error: --teacher: unknown router")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # a fresh interpreter starts its own Ray: the console a user sees (~50 s on 2 cores)
def test_a_normal_run_prints_no_warning_and_one_progress_bar_per_stage(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "quiet"
    result = run_cli(*TINY, "--teacher", "least_outstanding", "--output", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert not [line for line in lines if "warning" in line.lower()], result.stderr[-3000:]
    assert "Ray deduplicates logs" not in result.stderr and "gputil" not in result.stderr
    bars = {line.split(":")[0] for line in lines if "%|" in line and "<" in line}  # "desc: 50%|...| 1/2 [00:01<00:01, ...]"
    assert bars == {"collect-demos", "pretrain", "warm", "cold", "evaluate", "curves"}, bars
    logs = out / "ray-logs"
    assert logs.is_symlink() and list(logs.glob("worker-*.out")), "worker logs are not linked from the run directory"


def test_held_out_trace_windows_move_only_the_evaluation_and_refuse_overlap(cli_in_process, tmp_path: Path) -> None:
    trace = ["--workload", "mooncake", "--trace-start", "2000", "--trace-windows", "13"]
    flags = [*trace, "--held-out-trace-start", "9000", "--held-out-trace-windows", "3", "--budget", "trace"]
    config = pipeline_config_from_args(build_parser().parse_args(["pipeline", *flags, "--output", "unused"]))
    assert (config.env.workload.trace_start, config.env.workload.trace_windows) == (2000, 13)  # teacher, demos, PPO
    held_out = config.eval_env.workload
    assert (held_out.trace_start, held_out.trace_windows, held_out.trace_lead_in) == (9000, 3, 2000)
    assert sorted(held_out.trace_window_start(s) for s in config.test_seeds) == [9000, 9512, 10024]  # each window once
    evaluation = next(stage for stage in STAGES if stage.name == "evaluation")
    assert evaluation.settings_of(config, "size_aware")["held_out_trace_start"] == 9000
    assert PipelineConfig.from_dict(config.to_dict()) == config
    result = cli_in_process("pipeline", *trace, "--held-out-trace-start", "8000", "--output", str(tmp_path / "p"))
    assert result.returncode == 2 and "--held-out-trace-start 8000 overlaps the training windows" in result.stderr
    assert not (tmp_path / "p").exists()
