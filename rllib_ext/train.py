"""Phase 2: ``warmroute train``: (warm-start) PPO in a run directory, built on :mod:`rllib_ext.session`.

Per iteration: a console line above a progress bar (with its ETA), a row of ``progress.jsonl`` (read by ``warmroute compare``), TensorBoard scalars
(own ``SummaryWriter``: outside Tune, RLlib writes none) and periodic RLlib checkpoints (``checkpoints/iter_NNNN``,
iteration 0 = the verified clone); at the end the policy is exported to ``policy/``. ``resume`` continues a run
from its latest checkpoint; schedules follow the restored lifetime env-step count.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tensorboardX import SummaryWriter
from tqdm.auto import tqdm

from rllib_ext import metrics as M
from rllib_ext.session import TrainingSession, export_policy, run_iterations, save_checkpoint, start_session
from rllib_ext.train_config import TrainConfig
from warmroute.artifacts.lock import DirectoryLock
from warmroute.artifacts.metadata import ArtifactError, require_fresh_output, write_metadata
from warmroute.artifacts.run_dir import RunDir


def _console_line(row: dict[str, Any], total: int) -> str:
    def fmt(key: str, spec: str) -> str:
        return format(row[key], spec) if key in row else "-"

    return (
        f"iter {row['iteration']:>3}/{total} | steps {row[M.ENV_STEPS]:>7} | e2e {fmt(M.MEAN_E2E, '.3f')}s "
        f"p99 {fmt(M.P99_E2E, '.2f')}s | ttft {fmt(M.MEAN_TTFT, '.3f')}s | balance {fmt(M.BALANCE, '.3f')} | "
        f"kl_ref {fmt(M.KL_REF, '.4f')} coef {fmt(M.KL_COEF, '.3f')} | entropy {fmt(M.ENTROPY, '.3f')} "
        f"coef {fmt(M.ENTROPY_COEF, '.3f')} | {fmt(M.ENV_STEPS_PER_S, '.0f')} steps/s"
    )


def _latest_checkpoint(output: Path) -> Path:
    """The newest complete checkpoint (``adaptive_state.json`` is written last, so it marks completion)."""
    checkpoints = RunDir(output).complete_checkpoints()
    if not checkpoints:
        raise ArtifactError(
            f"{{flag:resume}} {output}: no checkpoints under {RunDir(output).checkpoints.name}/; nothing to resume"
        )
    return checkpoints[-1]


STARVED_FRACTION = 0.5
"""A run that sampled less than this share of ``iterations x train_batch_size`` env steps is reported as starved."""


def sampling_shortfall(env_steps: int, cfg: TrainConfig) -> str | None:
    """A one-line warning when the env runners sampled far fewer steps than the budget, else None.

    RLlib logs "No samples returned" and trains on what it has when its runners miss the sampling timeout (seen with
    the runners' nice level under a heavily loaded machine): the run then ends close to its start policy with no
    error, so the caller says so."""
    budget = cfg.iterations * cfg.ppo.train_batch_size
    if env_steps >= STARVED_FRACTION * budget:
        return None
    return (
        f"warning: the env runners sampled {env_steps:,} of the {budget:,} env steps budgeted ({env_steps / budget:.0%}); "
        "the policy may be close to its start. Is the machine overloaded? Check perf/env_steps_lifetime in progress.jsonl"
    )


def _print_now(line: str) -> None:
    print(line, flush=True)  # visible at once under Ray Jobs and when piped to a file


def _truncate_progress(output: Path, last_iteration: int) -> None:
    path = RunDir(output).progress
    if path.is_file():
        rows = [
            line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["iteration"] <= last_iteration
        ]
        path.write_text("".join(row + "\n" for row in rows))


def train(
    cfg: TrainConfig, output: str | Path, *, resume: bool = False, progress: bool = True, log: Callable[[str], None] = _print_now
) -> dict[str, Any]:
    """Train (or resume) a run in ``output``, holding its lock (a second writer is refused); return the final row of
    metrics and the exported policy path."""
    with DirectoryLock(output, "{flag:resume}" if resume else "{flag:output}", log):
        return _train_locked(cfg, Path(output), resume, progress, log)


def _train_locked(cfg: TrainConfig, out: Path, resume: bool, progress: bool, log: Callable[[str], None]) -> dict[str, Any]:
    run = RunDir(out)
    checkpoint = None
    if resume:
        saved = TrainConfig.from_run(out)
        cfg = dataclasses.replace(saved, iterations=max(cfg.iterations, saved.iterations))
        checkpoint = _latest_checkpoint(out)
    else:
        require_fresh_output(out)
    session = start_session(cfg, checkpoint, log)
    if resume:
        _truncate_progress(out, session.iteration)  # iterations after the checkpoint are re-run
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_metadata(out, RunDir.KIND, config=cfg.to_dict(), model_config=session.model_config, layout=cfg.env.layout.to_dict())
        save_checkpoint(session, run.checkpoint(0))  # the policy before any update (warm: the verified clone)
    writer = SummaryWriter(str(run.tensorboard))
    bar = tqdm(
        total=cfg.iterations, initial=session.iteration, desc=out.name, unit="iter", disable=not progress, dynamic_ncols=True
    )

    def record(session: TrainingSession, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "iteration":
                writer.add_scalar(key, value, global_step=session.env_steps)
        writer.flush()
        with open(run.progress, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        if progress:
            bar.write(_console_line(row, cfg.iterations))  # above the bar, which keeps the ETA
            sys.stdout.flush()  # visible at once under Ray Jobs and when piped to a file
            bar.update(1)
        if session.iteration % cfg.checkpoint_every == 0 or session.iteration == cfg.iterations:
            save_checkpoint(session, run.checkpoint(session.iteration))

    try:
        row = run_iterations(session, record)
        shortfall = sampling_shortfall(session.env_steps, cfg)
        if shortfall:
            log(shortfall)
        export = run.policy.path
        shutil.rmtree(export, ignore_errors=True)
        export_policy(session, export, run_dir=str(out.absolute()), checkpoint=_latest_checkpoint(out).name)
    except BaseException:
        if not resume and not any(p != run.checkpoint(0) for p in run.checkpoints.glob("iter_*")):
            writer.close()
            shutil.rmtree(out, ignore_errors=True)  # nothing trained yet: leave no half-made run behind
        raise
    finally:
        bar.close()
        writer.close()
        session.algo.stop()
    return {"final": row, "policy": str(export)}
