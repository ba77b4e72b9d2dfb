"""The KL-to-reference PPO learner trained for real (tiny config, RLlib + vidur): KL term, schedules in
TensorBoard, resume, refusals before Ray, and the exact categorical KL."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig
from rllib_ext import metrics as M
from rllib_ext.bc import BCConfig, pretrain
from rllib_ext.kl_ref_learner import categorical_kl
from rllib_ext.schedules import LinearCoef
from rllib_ext.session import env_runner_gap, start_session
from rllib_ext.train import sampling_shortfall, train
from rllib_ext.train_config import KLRefConfig, PPOSettings, TrainConfig
from warmroute.artifacts.run_dir import RunDir

pytestmark = pytest.mark.slow  # real Ray actors and RLlib algorithms

BATCH = 128
WARM = ("--enable-warm-start", "--pretrained-actor-path", "missing-bc")


def _config(policy_dir: Path | None, iterations: int, **kl: object) -> TrainConfig:
    return TrainConfig(
        env=VidurEnvConfig(workload=preset("default").replace(num_requests=64), reward_scale_s=10.0),
        ppo=PPOSettings(train_batch_size=BATCH, minibatch_size=64, num_epochs=1),
        kl=KLRefConfig(
            enable_warm_start=policy_dir is not None,
            pretrained_actor_path=str(policy_dir) if policy_dir else None,
            kl_ref_coef_initial=1.0,
            kl_ref_coef_final=0.1,
            kl_ref_decay_steps=4 * BATCH,
            warmup_steps=BATCH,
            critic_warmup_steps=BATCH,
            **kl,
        ),
        iterations=iterations,
        num_env_runners=0,
        checkpoint_every=1,
        seed=1,
    )


@pytest.fixture(scope="module")
def bc_policy(lo_demos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("warm") / "bc"
    pretrain(lo_demos[0], out, BCConfig(epochs=10), progress=False)
    return out


@pytest.fixture(scope="module")
def warm_run(bc_policy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("warm") / "run"
    train(_config(bc_policy, iterations=2), out, progress=False)
    return out


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in RunDir(run).progress.read_text().splitlines()]


def test_kl_is_zero_for_identical_and_finite_for_near_deterministic_reference() -> None:
    logits = torch.randn(16, 4)
    assert torch.allclose(categorical_kl(logits, logits), torch.zeros(16), atol=1e-6)
    sharp = torch.tensor([[80.0, -80.0, -80.0, -80.0]]).repeat(16, 1)  # reference probabilities 1 and ~1e-70
    kl = categorical_kl(torch.zeros(16, 4), sharp)
    assert torch.isfinite(kl).all() and (kl > 100).all()
    reference = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=logits), torch.distributions.Categorical(logits=logits.flip(-1))
    )
    torch.testing.assert_close(categorical_kl(logits, logits.flip(-1)), reference)


def test_warm_run_logs_kl_and_follows_schedule(warm_run) -> None:
    rows = _rows(warm_run)
    schedule = LinearCoef(1.0, 0.1, 4 * BATCH)
    assert [r[M.ENV_STEPS] for r in rows] == [BATCH, 2 * BATCH]
    for row in rows:
        assert row[M.KL_COEF] == pytest.approx(schedule.value(row[M.ENV_STEPS]), abs=1e-9)
        assert np.isfinite(row[M.KL_REF]) and row[M.KL_REF] >= 0
    assert rows[0][M.POLICY_FROZEN] == 1.0 and rows[1][M.POLICY_FROZEN] == 0.0
    assert rows[0][M.ENTROPY_COEF] == 0.01 and rows[1][M.ENTROPY_COEF] == 0.0
    assert (warm_run / "policy" / "probe.npz").is_file()


def test_tensorboard_kl_coef_matches_schedule_exactly(warm_run) -> None:
    events = EventAccumulator(str(RunDir(warm_run).tensorboard))
    events.Reload()
    scalars = events.Scalars(M.KL_COEF)
    schedule = LinearCoef(1.0, 0.1, 4 * BATCH)
    assert [s.step for s in scalars] == [BATCH, 2 * BATCH]
    for s in scalars:
        assert s.value == pytest.approx(schedule.value(s.step), rel=1e-6)  # float32 in the event file
    for tag in (M.KL_REF, M.ENTROPY_COEF, M.ENTROPY, M.MEAN_E2E, M.BALANCE, M.ACTION_FRACTION.format(0)):
        assert tag in events.Tags()["scalars"], tag


def test_critic_warmup_keeps_the_cloned_actor(bc_policy, tmp_path: Path) -> None:
    from rllib_ext.policy_io import action_probabilities, load_policy

    run = tmp_path / "frozen"
    train(_config(bc_policy, iterations=1), run, progress=False)
    exported, _ = load_policy(run / "policy")
    clone, _ = load_policy(bc_policy)
    probe = np.load(bc_policy / "probe.npz")["obs"]
    np.testing.assert_allclose(action_probabilities(exported, probe), action_probabilities(clone, probe), atol=1e-6)


def test_resume_continues_schedule(bc_policy, tmp_path: Path) -> None:
    run = tmp_path / "resume"
    train(_config(bc_policy, iterations=2), run, progress=False)
    train(_config(bc_policy, iterations=3), run, resume=True, progress=False)
    rows = _rows(run)
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert rows[2][M.ENV_STEPS] == 3 * BATCH
    assert rows[2][M.KL_COEF] == pytest.approx(LinearCoef(1.0, 0.1, 4 * BATCH).value(3 * BATCH), abs=1e-9)


def test_cold_start_has_no_reference_term(tmp_path: Path, ray_session) -> None:
    run = tmp_path / "cold"
    train(_config(None, iterations=1), run, progress=False)
    row = _rows(run)[0]
    assert row[M.KL_COEF] == 0.0 and M.KL_REF not in row and row[M.POLICY_FROZEN] == 0.0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([*WARM, "--kl-ref-coef-initial", "-1"], "--kl-ref-coef-initial"),
        ([*WARM, "--kl-ref-coef-initial", "0.1", "--kl-ref-coef-final", "0.5"], "must not exceed"),
        ([*WARM, "--kl_ref_decay_steps", "0"], "--kl-ref-decay-steps"),
        (["--warmup-steps", "-5"], "--warmup-steps"),
        (["--enable-warm-start"], "--pretrained-actor-path"),
        (["--pretrained-actor-path", "bc"], "only applies with --enable-warm-start"),
        (["--kl-ref-decay-steps", "500"], "only applies with --enable-warm-start"),
        ([*WARM, "--hidden", "32"], "the clone's network is used"),
        (["--resume", "run", "--lr", "0.1"], "is ignored with --resume"),
    ],
)
def test_invalid_settings_fail_before_ray(tmp_path: Path, args: list[str], needle: str, run_cli) -> None:
    result = run_cli("train", "--output", str(tmp_path / "run"), "--iterations", "1", *args)
    assert result.returncode == 2 and needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Ray" not in result.stderr and not (tmp_path / "run").exists()


def test_bc_checkpoint_for_other_layout_is_refused(bc_policy, tmp_path: Path, run_cli) -> None:
    result = run_cli(
        "train",
        "--output",
        str(tmp_path / "run"),
        "--enable-warm-start",
        "--pretrained-actor-path",
        str(bc_policy),
        "--oracle",
    )
    assert result.returncode == 2 and "oracle" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_cli_resume_keeps_the_saved_settings_and_extends_iterations(tmp_path: Path, run_cli) -> None:
    run = tmp_path / "cli_run"
    tiny = [
        "--num-requests",
        "64",
        "--train-batch-size",
        str(BATCH),
        "--minibatch-size",
        "64",
        "--num-epochs",
        "1",
        "--num-env-runners",
        "0",
        "--quiet",
    ]
    first = run_cli("train", "--output", str(run), "--iterations", "1", "--seed", "2", *tiny)
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_cli("train", "--resume", str(run), "--iterations", "2", "--quiet")
    assert second.returncode == 0, second.stderr[-2000:]
    assert [r["iteration"] for r in _rows(run)] == [1, 2] and _rows(run)[1][M.ENV_STEPS] == 2 * BATCH
    saved = TrainConfig.from_run(run)
    assert (saved.seed, saved.ppo.train_batch_size, saved.kl.warmup_steps, saved.iterations) == (2, BATCH, 0, 1)


@pytest.mark.slow
def test_resume_puts_the_restored_weights_on_every_env_runner(bc_policy, tmp_path: Path) -> None:
    cfg = dataclasses.replace(_config(bc_policy, iterations=1), num_env_runners=1)
    run = tmp_path / "remote"
    train(cfg, run, progress=False)
    session = start_session(cfg, RunDir(run).complete_checkpoints()[-1], log=lambda _: None)
    try:
        assert env_runner_gap(session.algo, cfg.env.layout) <= 1e-5
    finally:
        session.algo.stop()


def test_a_run_whose_env_runners_sampled_under_half_its_budget_is_reported_as_starved() -> None:
    cfg = TrainConfig(iterations=20, ppo=PPOSettings(train_batch_size=2048))
    assert sampling_shortfall(40_960, cfg) is None  # the full budget
    assert sampling_shortfall(20_480, cfg) is None  # half: slow, not starved
    warning = sampling_shortfall(1_024, cfg)
    assert warning is not None and "1,024 of the 40,960" in warning and "(2%)" in warning
    assert "\n" not in warning
