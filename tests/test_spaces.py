"""Search spaces: the default is valid, a space file is checked whole before Ray starts, and the CLI refuses bad sweep
input in one line with exit status 2, starting and writing nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ray import tune

from rllib_ext.train_config import KLRefConfig, TrainConfig
from tuning.spaces import (
    SWEEPABLE,
    WARM_START_ONLY,
    SpaceError,
    apply_params,
    default_space,
    load_space,
    param_space,
    validate_space,
)
from warmroute.cli.train import WARM_ONLY

WARM = TrainConfig(kl=KLRefConfig(enable_warm_start=True, pretrained_actor_path="bc"))


@pytest.mark.parametrize("cfg", [TrainConfig(), WARM], ids=["cold", "warm"])
def test_default_space_is_valid_and_samples_valid_configs(cfg: TrainConfig) -> None:
    space = validate_space(default_space(cfg), cfg)
    domains = param_space(space, "random")
    for _ in range(20):
        sample = {key: d.sample() if isinstance(d, tune.search.sample.Domain) else d for key, d in domains.items()}
        assert isinstance(apply_params(cfg, sample), TrainConfig)  # constructing it validates it
    assert ("kl_ref_coef_initial" in space) == cfg.kl.enable_warm_start


def test_space_keys_accept_every_flag_spelling(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "--lr: {loguniform: [1.0e-5, 1.0e-3]}\nkl-ref-coef-initial: {uniform: [0.1, 1]}\n"
        "kl_ref_schedule: {choice: [linear, cosine]}\nlambda: {grid: [0.9, 0.95]}\nwarmup_steps: {uniform: [0, 100]}\n"
    )
    space = load_space(path, WARM)
    assert list(space) == ["lr", "kl_ref_coef_initial", "kl_ref_schedule", "lambda", "warmup_steps"]
    cfg = apply_params(WARM, {"lr": 1e-4, "lambda": 0.9, "warmup_steps": 7.0, "kl_ref_schedule": "cosine"})
    assert (cfg.ppo.lr, cfg.ppo.lambda_, cfg.kl.warmup_steps, cfg.kl.kl_ref_schedule) == (1e-4, 0.9, 7, "cosine")
    assert isinstance(cfg.kl.warmup_steps, int)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"learning_rate": {"uniform": [0.1, 0.2]}}, "unknown key 'learning_rate'"),
        ({"lr": {"uniform": [0.01, 0.001]}}, "low 0.01 > high 0.001"),
        ({"lr": {"loguniform": [0, 0.001]}}, "loguniform needs low > 0"),
        ({"lr": {"normal": [0, 1]}}, "unknown spec 'normal'"),
        ({"lr": [0.1, 0.2]}, "must map to one spec"),
        ({"kl_ref_schedule": {"uniform": [0, 1]}}, "not numeric"),
        ({"warmup_steps": {"uniform": [0, 10.5]}}, "integer flag"),
        ({"gamma": {"choice": [0.9, 1.5]}}, "gamma=1.5 is refused"),
        ({"kl_ref_coef_initial": {"uniform": [0.1, 1.0]}, "kl_ref_coef_final": {"uniform": [0.0, 0.5]}}, "must not exceed"),
        ({"train_batch_size": {"choice": [128, 256]}}, "unknown key"),
    ],
)
def test_bad_space_is_refused_naming_the_key(raw: dict, needle: str) -> None:
    with pytest.raises(SpaceError, match=needle):
        validate_space(raw, WARM, "--space s.yaml")


def test_warm_start_keys_are_refused_for_a_cold_start() -> None:
    with pytest.raises(SpaceError, match="'kl_ref_decay_steps' has no effect without enable_warm_start"):
        validate_space({"kl_ref_decay_steps": {"uniform": [10, 100]}}, TrainConfig())


def test_train_and_sweep_agree_on_the_warm_only_settings() -> None:
    # The union of the two hand-kept lists they replaced; both now read the KLRefConfig field marker.
    union = {
        "pretrained_actor_path",
        "kl_ref_coef_initial",
        "kl_ref_coef_final",
        "kl_ref_decay_steps",
        "kl_ref_schedule",
        "critic_warmup_steps",
        "adaptive_kl_speedup",
    }
    assert set(WARM_ONLY) == union
    assert set(WARM_START_ONLY) == {key for key in SWEEPABLE if key in union}
    with pytest.raises(SpaceError, match="'adaptive_kl_speedup' has no effect without enable_warm_start"):
        validate_space({"adaptive_kl_speedup": {"uniform": [1.0, 4.0]}}, TrainConfig())


def test_searchers_refuse_specs_they_cannot_run() -> None:
    space = validate_space({"lr": {"loguniform": [1e-5, 1e-3]}, "gamma": {"grid": [0.9, 0.99]}}, TrainConfig())
    with pytest.raises(SpaceError, match="search grid: lr is a range"):
        param_space(space, "grid")
    with pytest.raises(SpaceError, match=r"search optuna .*\(gamma\)"):
        param_space(space, "optuna")
    assert param_space(space, "random")["gamma"] == {"grid_search": [0.9, 0.99]}


def test_pbt_explore_never_puts_the_final_kl_coefficient_above_the_initial() -> None:
    from tuning.sweep import _keep_kl_schedule_valid

    base = KLRefConfig(kl_ref_coef_initial=0.5, kl_ref_coef_final=0.1)
    assert _keep_kl_schedule_valid({"kl_ref_coef_initial": 0.2, "kl_ref_coef_final": 0.3}, base=base)["kl_ref_coef_final"] == 0.2
    assert _keep_kl_schedule_valid({"kl_ref_coef_initial": 0.05, "lr": 1e-4}, base=base) == {
        "kl_ref_coef_initial": 0.1,
        "lr": 1e-4,
    }
    assert _keep_kl_schedule_valid({"kl_ref_coef_final": 0.7}, base=base) == {"kl_ref_coef_final": 0.5}


def _sweep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "warmroute.cli.main",
            "sweep",
            "--num-requests",
            "32",
            "--iterations",
            "1",
            "--train-batch-size",
            "64",
            "--minibatch-size",
            "32",
            "--num-env-runners",
            "0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "space", "flag"),
    [
        ([], {"lr": {"uniform": [0.1, 0.2]}, "nope": {"choice": [1]}}, "--space"),
        ([], {"lr": {"uniform": [0.2, 0.1]}}, "--space"),
        (["--max-concurrent", "4096"], None, "--max-concurrent"),
        (["--num-env-runners", "4096", "--train-batch-size", "131072", "--max-concurrent", "1"], None, "--max-concurrent"),
        (["--scheduler", "pbt"], {"gamma": {"uniform": [0.9, 0.99]}}, "--scheduler"),
        (["--search", "bayes"], None, "--search"),
        (["--num-requests", "100"], None, "--train-batch-size"),
    ],
)
def test_bad_sweep_input_is_one_line_and_starts_nothing(tmp_path: Path, args: list[str], space: dict | None, flag: str) -> None:
    if space is not None:
        (tmp_path / "space.json").write_text(json.dumps(space))
        args = [*args, "--space", str(tmp_path / "space.json")]
    result = _sweep("--output", str(tmp_path / "sweep"), *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], result.stderr
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("made", ["missing", "empty", "training_run"])
def test_resume_of_a_directory_that_is_no_tune_experiment_is_refused(tmp_path: Path, made: str) -> None:
    target = tmp_path / "sweep"
    if made != "missing":
        target.mkdir()
    if made == "training_run":
        (target / "metadata.json").write_text(json.dumps({"kind": "sweep", "format_version": 1, "sweep": {}}))
    result = _sweep("--output", str(target), "--resume")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--resume" in lines[0], result.stderr
    assert not target.exists() or [p.name for p in target.iterdir()] in ([], ["metadata.json"])
