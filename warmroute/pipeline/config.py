"""What ``warmroute pipeline`` runs: named budgets and the frozen ``PipelineConfig``.

``PipelineConfig`` is the one object the CLI, a Ray Job or a Tune trial hands to ``warmroute.pipeline.run.run_pipeline``.
It builds each stage's library config (``DemoConfig``, ``BCConfig``, the two ``TrainConfig``\\ s); the stages
themselves, with the settings each depends on, are the ``Stage`` records of ``warmroute.pipeline.stages``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envs.errors import WarmRouteError
from envs.evaluation.evaluate import evaluation_seeds
from envs.routers.heuristics import is_router, router_names
from envs.vidur_env import VidurEnvConfig
from rllib_ext.bc import BCConfig
from rllib_ext.demos import DemoConfig
from rllib_ext.train_config import KLRefConfig, PPOSettings, TrainConfig

VALIDATION_OFFSET = 5_000
"""Validation seeds are the held-out seeds shifted by this much, so choosing the teacher never sees a test seed."""
DEMO_EPSILON = 0.1
"""Share of random actions while recording demonstrations (state coverage; the labels stay the teacher's)."""
OBJECTIVES = {"e2e": ("mean_e2e_s", min), "ttft": ("mean_ttft_s", min), "slo": ("slo_attainment", max)}
"""Env reward -> (evaluation metric the teacher is chosen by, which end is best)."""


@dataclass(frozen=True)
class Budget:
    """How much work each stage does. ``BUDGETS`` names the presets; the CLI overrides single fields."""

    name: str
    """Preset this budget came from (``+overrides`` appended when fields were changed)."""
    demo_steps: int
    """Teacher routing decisions recorded for behaviour cloning."""
    bc_epochs: int
    """Maximum behaviour-cloning epochs (early stopping on validation loss may end sooner)."""
    iterations: int
    """PPO iterations of each run, cold and warm."""
    train_batch_size: int
    """Env steps (routing decisions) per PPO iteration."""
    minibatch_size: int
    """Env steps per SGD minibatch."""
    checkpoint_every: int
    """Iterations between checkpoints; every checkpoint is a point of the held-out learning curves."""
    kl_ref_decay_steps: int
    """Env steps over which the warm run's KL-to-clone coefficient decays to 0."""
    warmup_steps: int
    """Env steps of entropy warm-up, given to both runs so the start is their only difference."""
    critic_warmup_steps: int
    """Env steps at the start of the warm run during which only the critic learns."""
    validation_episodes: int
    """Validation episodes per heuristic when choosing the teacher."""
    episodes: int
    """Held-out episodes per policy in the final evaluation."""
    curve_episodes: int
    """Held-out episodes per checkpoint for the learning curves (the first of the evaluation's seeds)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "name" and (not isinstance(value, int) or value < 1):
                raise WarmRouteError(f"{{flag}} must be an integer >= 1 (got {value})", field=f.name)
        if self.minibatch_size > self.train_batch_size:
            raise WarmRouteError(
                f"{{flag:minibatch_size}} ({self.minibatch_size}) must not exceed {{flag:train_batch_size}} ({self.train_batch_size})"
            )
        if self.curve_episodes > self.episodes:
            raise WarmRouteError(
                f"{{flag:curve_episodes}} ({self.curve_episodes}) must not exceed {{flag:episodes}} ({self.episodes})"
            )
        if max(self.episodes, self.validation_episodes) > VALIDATION_OFFSET:
            raise WarmRouteError(f"{{flag:episodes}} and {{flag:validation_episodes}} must be <= {VALIDATION_OFFSET}")


BUDGETS: dict[str, Budget] = {
    b.name: b
    for b in (
        # Smoke test for a tiny workload (--num-requests 40): every stage runs, its numbers mean nothing.
        Budget("tiny", 256, 5, 2, 128, 64, 1, 256, 128, 64, 1, 1, 1),
        # `make run`: the whole pipeline on the default workload; target under 10 minutes on 2 cores (docs/pipeline.md).
        Budget("small", 6000, 60, 6, 2048, 256, 2, 12_000, 4096, 2048, 2, 2, 2),
        # `make run`: mooncake, trained on 13 trace windows and judged on 3 held-out ones (Makefile); about 4 minutes
        # on 2 cores. Long enough to show the warm start at its teacher's level and the cold start far behind it;
        # beating the teacher takes ~150k env steps (docs/prefix_caching.md).
        Budget("trace", 4096, 60, 6, 1024, 256, 2, 12_000, 1024, 2048, 1, 3, 1),
        # The README's results: the settings of docs/warm_start.md's measured runs (40 iterations per run).
        Budget("full", 20_000, 60, 40, 2048, 256, 5, 60_000, 10_000, 4096, 3, 5, 3),
    )
}


@dataclass(frozen=True)
class PipelineConfig:
    """One pipeline: demonstrations -> BC -> warm and cold PPO -> held-out evaluation -> report."""

    env: VidurEnvConfig = field(default_factory=lambda: VidurEnvConfig(reward_scale_s=10.0))
    """Routing env of every stage (training's reward scale: returns are tens of units)."""
    budget: Budget = field(default_factory=lambda: BUDGETS["small"])
    """Stage sizes."""
    teacher: str | None = None
    """Heuristic router to clone (unset: the best heuristic on validation seeds, never on the held-out ones)."""
    num_env_runners: int = 2
    """Ray env runners collecting demonstrations and sampling PPO episodes."""
    seed: int = 0
    """Seed of demonstration sampling, BC and PPO (request streams follow the workload's own seed)."""
    held_out_trace_start: int | None = None
    """Trace workloads: first trace request of the held-out windows. The evaluation, the learning curves and the
    report replay ``held_out_trace_windows`` windows from here (after the workload's lead-in), while the teacher
    choice, the demonstrations and PPO use the workload's own windows, so the table is on traffic no stage trained
    or chose on. Unset: held-out seeds of the workload itself."""
    held_out_trace_windows: int = 1
    """Trace workloads: number of consecutive held-out windows; the held-out episodes replay them in turn."""

    def __post_init__(self) -> None:
        if self.teacher is not None and not is_router(self.teacher):
            raise WarmRouteError(f"{{flag:teacher}}: unknown router '{self.teacher}'; choose one of: {router_names()}")
        if self.num_env_runners < 1:
            raise WarmRouteError(f"{{flag:num_env_runners}} must be >= 1 (got {self.num_env_runners})")
        if self.held_out_trace_start is not None:
            w = self.env.workload
            if not w.is_trace:
                raise WarmRouteError(
                    "{flag:held_out_trace_start} needs a trace workload ({flag:prefix_workload} mooncake or jsonl:PATH)"
                )
            end = w.trace_start + w.trace_windows * w.num_requests
            if self.held_out_trace_start < end:
                raise WarmRouteError(
                    f"{{flag:held_out_trace_start}} {self.held_out_trace_start} overlaps the training windows (trace requests "
                    f"{w.trace_start}-{end - 1}); start the held-out windows at {end} or later"
                )
            if self.held_out_trace_windows < 1:
                raise WarmRouteError(f"{{flag:held_out_trace_windows}} must be >= 1 (got {self.held_out_trace_windows})")
            _ = self.eval_env  # builds the held-out workload: a window past the trace's end is refused now

    @property
    def eval_env(self) -> VidurEnvConfig:
        """The env of the evaluation, the curves and the report: the held-out trace windows when set."""
        if self.held_out_trace_start is None:
            return self.env
        held_out = self.env.workload.replace(trace_start=self.held_out_trace_start, trace_windows=self.held_out_trace_windows)
        return dataclasses.replace(self.env, workload=held_out)

    @property
    def test_seeds(self) -> list[int]:
        """Held-out seeds of the final evaluation: exactly those of ``warmroute evaluate --episodes N``."""
        return evaluation_seeds(self.env.workload.seed, self.budget.episodes)

    @property
    def curve_seeds(self) -> list[int]:
        return self.test_seeds[: self.budget.curve_episodes]

    @property
    def validation_seeds(self) -> list[int]:
        return [s + VALIDATION_OFFSET for s in evaluation_seeds(self.env.workload.seed, self.budget.validation_episodes)]

    def demo_config(self, teacher: str) -> DemoConfig:
        steps_per_runner = -(-self.budget.demo_steps // self.num_env_runners)
        return DemoConfig(
            env=self.env,
            teachers=(teacher,),
            steps=self.budget.demo_steps,
            num_env_runners=self.num_env_runners,
            epsilon=DEMO_EPSILON,
            steps_per_round=min(steps_per_runner, DemoConfig.steps_per_round),
            seed=self.seed,
        )

    def bc_config(self) -> BCConfig:
        return BCConfig(epochs=self.budget.bc_epochs, seed=self.seed)

    def train_config(self, clone: Path | None) -> TrainConfig:
        """The warm run's config (``clone``: the BC policy directory) or, with ``clone=None``, the cold run's."""
        b = self.budget
        kl = KLRefConfig(
            enable_warm_start=clone is not None,
            pretrained_actor_path=None if clone is None else str(Path(clone).absolute()),
            kl_ref_decay_steps=b.kl_ref_decay_steps,
            warmup_steps=b.warmup_steps,
            critic_warmup_steps=b.critic_warmup_steps,
        )
        return TrainConfig(
            env=self.env,
            ppo=PPOSettings(train_batch_size=b.train_batch_size, minibatch_size=b.minibatch_size),
            kl=kl,
            iterations=b.iterations,
            num_env_runners=self.num_env_runners,
            checkpoint_every=b.checkpoint_every,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env.to_dict(),
            "budget": dataclasses.asdict(self.budget),
            "teacher": self.teacher,
            "num_env_runners": self.num_env_runners,
            "seed": self.seed,
            "held_out_trace_start": self.held_out_trace_start,
            "held_out_trace_windows": self.held_out_trace_windows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        return cls(
            env=VidurEnvConfig.from_dict(data["env"]),
            budget=Budget(**data["budget"]),
            teacher=data.get("teacher"),
            num_env_runners=int(data["num_env_runners"]),
            seed=int(data["seed"]),
            held_out_trace_start=data.get("held_out_trace_start"),
            held_out_trace_windows=int(data.get("held_out_trace_windows", 1)),
        )
