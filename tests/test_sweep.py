"""Tune sweeps for real (tiny budgets): ASHA with Optuna writes the tables and a best policy that ``warmroute
evaluate`` takes; a trial that fails after its first checkpoint is retried from it; after a PBT exploit the
perturbed lr and KL coefficient are the ones the restored learner uses; a killed sweep resumes without redoing
finished trials."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray.cloudpickle
from ray import tune
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig
from rllib_ext import metrics as M
from rllib_ext.bc import BCConfig, pretrain
from rllib_ext.train_config import KLRefConfig, PPOSettings, TrainConfig
from tuning.results import BEST_DIR, RESULTS_CSV, RESULTS_MD
from tuning.sweep import EXPERIMENT_DIR, SweepConfig, run_sweep
from tuning.trial import train_trial

pytestmark = pytest.mark.slow  # real Tune trials, each a small RLlib algorithm

BATCH = 128
SPACE = {"lr": {"loguniform": [1e-4, 1e-3]}, "kl_ref_coef_initial": {"uniform": [0.2, 1.0]}}


def _base(policy: Path, iterations: int) -> TrainConfig:
    return TrainConfig(
        env=VidurEnvConfig(workload=preset("default").replace(num_requests=64), reward_scale_s=10.0),
        ppo=PPOSettings(train_batch_size=BATCH, minibatch_size=64, num_epochs=1),
        kl=KLRefConfig(
            enable_warm_start=True,
            pretrained_actor_path=str(policy),
            kl_ref_decay_steps=4 * BATCH,
            warmup_steps=BATCH,
            critic_warmup_steps=0,
        ),
        iterations=iterations,
        num_env_runners=0,
        checkpoint_every=1,
        seed=1,
    )


class CollectResults(tune.Callback):
    """Every result as it reaches the driver (Tune's result.json may lack those reported before a restore)."""

    def __init__(self) -> None:
        self.results: list[dict] = []

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self.results.append(result)


def _results(output: Path) -> list[dict]:
    """Every reported result of every trial (Tune's result.json, one JSON object per line)."""
    return [
        json.loads(line)
        for path in sorted((output / EXPERIMENT_DIR).glob("*/result.json"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def _csv(output: Path) -> list[dict]:
    with open(output / RESULTS_CSV) as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def bc_policy(lo_demos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "bc"
    pretrain(lo_demos[0], out, BCConfig(epochs=10), progress=False)
    return out


@pytest.fixture(scope="module")
def asha_sweep(ray_session, bc_policy, tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("sweep") / "asha"
    lines: list[str] = []
    sweep = SweepConfig(
        train=_base(bc_policy, iterations=2),
        space=SPACE,
        num_samples=4,
        max_concurrent=2,
        search="optuna",
        scheduler="asha",
        grace_period=1,
        eval_episodes=1,
    )
    run_sweep(sweep, out, log=lines.append)
    return out, lines


def test_asha_sweep_writes_tables_best_policy_and_a_line_per_trial(asha_sweep) -> None:
    out, lines = asha_sweep
    rows = _csv(out)
    assert len(rows) == 4 and {r["status"] for r in rows} <= {"completed", "stopped early"}
    completed = [r for r in rows if r["status"] == "completed"]
    assert completed and all(math.isfinite(float(r["held_out_s"])) for r in completed)
    assert all(int(r["env_steps"]) == BATCH * int(r["iterations"]) for r in rows)
    assert rows[0]["held_out_s"] == min((r["held_out_s"] for r in completed), key=float)  # sorted, best first
    assert (out / RESULTS_MD).read_text().count("\n| ") == 5  # header + 4 trials
    assert (out / BEST_DIR / "probe.npz").is_file()
    assert sorted(line.split()[1] for line in lines) == ["1", "2", "3", "4"]


def test_every_reported_result_has_a_finite_score(asha_sweep) -> None:
    results = _results(asha_sweep[0])
    assert len(results) >= 4
    assert all(math.isfinite(r[M.TUNE_SCORE]) for r in results)
    finals = [r for r in results if r["training_iteration"] == 2]
    assert finals and all(math.isfinite(r[M.EVAL_SCORE]) for r in finals)


def test_best_policy_runs_in_warmroute_evaluate(asha_sweep, run_cli) -> None:
    result = run_cli("evaluate", "--policy", str(asha_sweep[0] / BEST_DIR), "--num-requests", "64", "--episodes", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "best" in result.stdout


def test_trials_log_warm_start_metrics_to_tensorboard(asha_sweep) -> None:
    trial = next((asha_sweep[0] / EXPERIMENT_DIR).glob("*/events.out.tfevents.*")).parent
    events = EventAccumulator(str(trial))
    events.Reload()
    tags = events.Tags()["scalars"]
    for key in (M.KL_COEF, M.ENTROPY_COEF, M.BALANCE, M.ACTION_FRACTION.format(0), M.TUNE_SCORE):
        assert f"ray/tune/{key}" in tags, key


def _fail_once_after_first_checkpoint(config: dict, *, marker: str, **kwargs: object) -> None:
    def fail(session, metrics) -> None:
        if session.iteration == 2 and not Path(marker).exists():
            Path(marker).write_text("failed")
            raise RuntimeError("injected trial failure (test)")

    train_trial(config, on_iteration=fail, **kwargs)


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # trial workers cannot import test modules


def test_failed_trial_is_retried_from_its_last_checkpoint(ray_session, bc_policy, tmp_path: Path) -> None:
    from functools import partial

    marker = tmp_path / "failed"
    sweep = SweepConfig(
        train=_base(bc_policy, iterations=2),
        space={"lr": {"choice": [3e-4]}},
        num_samples=1,
        search="random",
        scheduler="fifo",
        eval_episodes=1,
        max_failures=1,
    )
    collected = CollectResults()
    summary = run_sweep(
        sweep,
        tmp_path / "sweep",
        trial_fn=partial(_fail_once_after_first_checkpoint, marker=str(marker)),
        log=lambda line: None,
        callbacks=[collected],
    )
    assert marker.read_text() == "failed"
    (row,) = summary["rows"]
    assert row["status"] == "completed" and row["env_steps"] == 2 * BATCH
    results = collected.results
    assert [r["training_iteration"] for r in results] == [1, 2]
    assert [r["restored_from_iteration"] for r in results] == [0, 1]  # iteration 2 ran after restoring iteration 1


def test_pbt_exploit_puts_perturbed_lr_and_kl_coef_into_the_learner(ray_session, bc_policy, tmp_path: Path) -> None:
    sweep = SweepConfig(
        train=_base(bc_policy, iterations=3),
        space=SPACE,
        num_samples=2,
        max_concurrent=2,
        search="random",
        scheduler="pbt",
        perturbation_interval=1,
        eval_episodes=1,
    )
    collected = CollectResults()
    run_sweep(sweep, tmp_path / "pbt", log=lambda line: None, callbacks=[collected])
    results = collected.results
    exploited = [r for r in results if r["restored_from_iteration"] > 0]
    assert exploited, "PBT never exploited: nothing to check"
    for r in results:  # values read back from the learner's optimizer and KL schedule after (re)start
        assert r[M.IN_EFFECT_PREFIX + "lr"] == pytest.approx(r["config"]["lr"], rel=1e-12)
        assert r[M.IN_EFFECT_PREFIX + "kl_ref_coef_initial"] == pytest.approx(r["config"]["kl_ref_coef_initial"], rel=1e-12)
        assert r[M.KL_COEF] <= r["config"]["kl_ref_coef_initial"] + 1e-12
    first = {
        r["trial_id"]: r["config"]
        for r in sorted(results, key=lambda r: -r["training_iteration"])
        if not r["restored_from_iteration"]
    }
    assert any(r["config"] != first[r["trial_id"]] for r in exploited)  # the exploited trial runs new settings


def _wait_for(predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _terminated(out: Path) -> int:
    states = list((out / EXPERIMENT_DIR).glob("experiment_state-*.json"))
    if not states:
        return 0
    try:
        data = json.loads(states[0].read_text())
    except json.JSONDecodeError:  # being rewritten
        return 0
    return sum(json.loads(trial)["status"] == "TERMINATED" for trial, _ in data["trial_data"])


def test_killed_sweep_resumes_without_redoing_finished_trials(tmp_path: Path) -> None:
    out, log = tmp_path / "sweep", tmp_path / "stdout.txt"
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"lr": {"choice": [1e-4, 3e-4, 1e-3]}}))
    command = [
        sys.executable,
        "-m",
        "warmroute.cli.main",
        "sweep",
        "--num-requests",
        "32",
        "--iterations",
        "8",
        "--train-batch-size",
        "64",
        "--minibatch-size",
        "32",
        "--num-epochs",
        "1",
        "--num-env-runners",
        "0",
        "--num-samples",
        "3",
        "--max-concurrent",
        "1",
        "--search",
        "random",
        "--scheduler",
        "fifo",
        "--checkpoint-every",
        "2",
        "--eval-episodes",
        "1",
        "--space",
        str(space),
        "--output",
        str(out),
    ]
    with open(log, "w") as handle:
        sweep = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: _terminated(out) >= 1, timeout_s=240)
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)  # the sweep's own process group: its driver and local Ray
        sweep.wait()
    finished_before = {
        p.parent.name: p.read_text() for p in (out / EXPERIMENT_DIR).glob("*/result.json") if '"eval/score_s"' in p.read_text()
    }
    assert finished_before and not (out / RESULTS_CSV).exists()
    resumed = subprocess.run(
        command[: command.index("--num-requests")] + ["--output", str(out), "--resume"],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = _csv(out)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"completed"}
    for name, text in finished_before.items():  # not one more result: the finished trials did not run again
        assert (out / EXPERIMENT_DIR / name / "result.json").read_text() == text
