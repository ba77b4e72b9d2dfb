"""Training configuration (frozen, JSON-serialisable dataclasses) and the one function that builds the PPOConfig.

``TrainConfig`` is what Tune trials, Ray Jobs and ``warmroute train`` pass around; ``build_ppo_config`` is the
only place that turns it into RLlib settings, and ``KLRefConfig.learner_config_dict`` the only place learner
knobs are packed (``KLRefPPOTorchLearner.build`` is the only place they are read).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from envs.errors import WarmRouteError
from envs.sim.workload import WorkloadConfig
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv
from rllib_ext.callbacks import RoutingMetricsCallback
from rllib_ext.kl_ref_learner import KLRefPPOTorchLearner
from rllib_ext.models import ARCHITECTURES, DEFAULT_HIDDEN, RoutingModule, module_model_config
from rllib_ext.ray_runtime import silence
from rllib_ext.schedules import KLSchedule, WarmupCoef, make_kl_schedule
from warmroute.artifacts.metadata import ArtifactError, read_metadata
from warmroute.artifacts.run_dir import RunDir

WARM_START_ENTROPY_WARMUP_STEPS = 10_000
"""Entropy warm-up of a warm start when ``KLRefConfig.warmup_steps`` is not given (a cold start gets none)."""
PLACEMENTS = {"pack": "PACK", "spread": "SPREAD"}
"""``--placement`` value -> Ray placement-group strategy."""
WARM_ONLY_MARK = {"warm_only": True}
"""Field metadata of a ``KLRefConfig`` setting that changes nothing without a warm start (no reference policy, no
critic warm-up): ``warmroute train`` refuses it on a cold start and a sweep space refuses to vary it."""


@dataclass(frozen=True)
class KLRefConfig:
    """Warm start: reference policy, KL-to-reference schedule, entropy and critic warm-ups."""

    enable_warm_start: bool = False
    """Load the behaviour-cloned actor and regularise towards it; off = cold-start PPO, same network."""
    pretrained_actor_path: str | None = field(default=None, metadata=WARM_ONLY_MARK)
    """Policy directory written by ``warmroute pretrain`` (its ``module/`` is loaded and frozen as reference)."""
    kl_ref_coef_initial: float = field(default=0.5, metadata=WARM_ONLY_MARK)
    """KL(pi || pi_ref) coefficient at env step 0."""
    kl_ref_coef_final: float = field(default=0.0, metadata=WARM_ONLY_MARK)
    """Coefficient after ``kl_ref_decay_steps`` env steps."""
    kl_ref_decay_steps: int = field(default=60_000, metadata=WARM_ONLY_MARK)
    """Env steps over which the coefficient decays."""
    kl_ref_schedule: str = field(default="linear", metadata=WARM_ONLY_MARK)
    """Shape of the coefficient's decay over ``kl_ref_decay_steps``."""
    warmup_steps: int | None = None
    """Env steps during which the entropy coefficient is ``entropy_warmup_coef`` (unset: 10000 with a warm start,
    0 for a cold start, which is then plain PPO)."""
    entropy_warmup_coef: float = 0.01
    """Entropy coefficient during the warm-up (the base value is ``PPOSettings.entropy_coeff``)."""
    critic_warmup_steps: int = field(default=4096, metadata=WARM_ONLY_MARK)
    """Env steps at the start during which only the value function is trained (warm start only)."""
    adaptive_warmup: bool = False
    """Extend the entropy warm-up while balance is low; speed up the KL decay once latency beats the teacher."""
    adaptive_balance_threshold: float = 0.9
    """Balance score under which the adaptive controller extends the warm-up."""
    adaptive_kl_speedup: float = field(default=2.0, metadata=WARM_ONLY_MARK)
    """KL-schedule steps advanced per env step once the policy beats its teacher (adaptive only)."""

    def __post_init__(self) -> None:
        if self.warmup_steps is None:  # resolved here, so the Python API and the CLI agree and JSON holds the value
            object.__setattr__(self, "warmup_steps", WARM_START_ENTROPY_WARMUP_STEPS if self.enable_warm_start else 0)
        self.kl_schedule()
        WarmupCoef(0.0, self.entropy_warmup_coef, self.warmup_steps)
        if self.critic_warmup_steps < 0:
            raise WarmRouteError(f"{{flag:critic_warmup_steps}} must be >= 0 (got {self.critic_warmup_steps})")
        if self.enable_warm_start and not self.pretrained_actor_path:
            raise WarmRouteError(
                "{flag:enable_warm_start} needs {flag:pretrained_actor_path} DIR (a directory written by `warmroute pretrain`)"
            )
        if self.pretrained_actor_path and not self.enable_warm_start:
            raise WarmRouteError(
                "{flag:pretrained_actor_path} is only used with {flag:enable_warm_start}; add it or drop the path"
            )
        if not 0 <= self.adaptive_balance_threshold <= 1:
            raise WarmRouteError(f"{{flag:adaptive_balance_threshold}} must be in [0, 1] (got {self.adaptive_balance_threshold})")
        if not self.adaptive_kl_speedup >= 1:
            raise WarmRouteError(f"{{flag:adaptive_kl_speedup}} must be >= 1 (got {self.adaptive_kl_speedup})")

    @staticmethod
    def warm_only_fields() -> tuple[str, ...]:
        """The settings marked :data:`WARM_ONLY_MARK`, in field order."""
        return tuple(f.name for f in dataclasses.fields(KLRefConfig) if f.metadata.get("warm_only"))

    def kl_schedule(self) -> KLSchedule:
        """The configured KL-to-reference schedule (what the learner builds from ``learner_config_dict``)."""
        return make_kl_schedule(self.kl_ref_schedule, self.kl_ref_coef_initial, self.kl_ref_coef_final, self.kl_ref_decay_steps)

    def learner_config_dict(self, reference_policy_path: str | None) -> dict[str, Any]:
        warm = self.enable_warm_start
        return {
            "kl_ref_path": reference_policy_path if warm else None,
            "kl_ref_coef_initial": self.kl_ref_coef_initial,
            "kl_ref_coef_final": self.kl_ref_coef_final,
            "kl_ref_decay_steps": self.kl_ref_decay_steps,
            "kl_ref_schedule": self.kl_ref_schedule,
            "entropy_warmup_coef": self.entropy_warmup_coef,
            "warmup_steps": self.warmup_steps,
            "critic_warmup_steps": self.critic_warmup_steps if warm else 0,
        }


@dataclass(frozen=True)
class PPOSettings:
    """The usual PPO knobs (RLlib names)."""

    lr: float = 3e-4
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount per routing decision."""
    lambda_: float = 0.95
    """GAE lambda."""
    train_batch_size: int = 2048
    """Env steps per training iteration (split evenly over ``num_learners`` learners)."""
    minibatch_size: int = 256
    """Env steps per SGD minibatch."""
    num_epochs: int = 5
    """SGD passes over each batch."""
    clip_param: float = 0.2
    """PPO ratio clip."""
    entropy_coeff: float = 0.0
    """Entropy bonus after the warm-up."""
    vf_loss_coeff: float = 0.5
    """Value-loss weight."""
    vf_clip_param: float = 1e4
    """Clip of the squared value error (large: returns are tens of units; clipping would stall the critic)."""
    grad_clip: float = 0.5
    """Global gradient-norm clip."""
    architecture: str = "scorer"
    """Routing module architecture (``scorer`` or ``mlp``); a warm start uses the checkpoint's."""
    hidden: tuple[int, ...] = DEFAULT_HIDDEN
    """Hidden layer widths (a warm start uses the checkpoint's)."""

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise WarmRouteError(f"{{flag:architecture}} must be one of {', '.join(ARCHITECTURES)} (got '{self.architecture}')")
        positive = {
            "lr": self.lr,
            "train_batch_size": self.train_batch_size,
            "minibatch_size": self.minibatch_size,
            "num_epochs": self.num_epochs,
            "clip_param": self.clip_param,
            "vf_clip_param": self.vf_clip_param,
            "grad_clip": self.grad_clip,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise WarmRouteError(f"{{flag}} must be > 0 (got {value})", field=name)
        if not 0 < self.gamma <= 1 or not 0 <= self.lambda_ <= 1:
            raise WarmRouteError(
                f"{{flag:gamma}} must be in (0, 1] and {{flag:lambda_}} in [0, 1] (got {self.gamma}, {self.lambda_})"
            )
        if (
            not (math.isfinite(self.entropy_coeff) and math.isfinite(self.vf_loss_coeff))
            or self.entropy_coeff < 0
            or self.vf_loss_coeff < 0
        ):
            raise WarmRouteError("{flag:entropy_coeff} and {flag:vf_loss_coeff} must be >= 0")
        if self.minibatch_size > self.train_batch_size:
            raise WarmRouteError(
                f"{{flag:minibatch_size}} ({self.minibatch_size}) must not exceed {{flag:train_batch_size}} ({self.train_batch_size})"
            )


@dataclass(frozen=True)
class TrainConfig:
    """One training run: env, PPO, warm start, scale."""

    env: VidurEnvConfig = field(default_factory=lambda: VidurEnvConfig(reward_scale_s=10.0))
    """Routing env; training uses reward_scale_s=10 so returns are tens of units."""
    ppo: PPOSettings = field(default_factory=PPOSettings)
    kl: KLRefConfig = field(default_factory=KLRefConfig)
    iterations: int = 30
    """Training iterations (each ``ppo.train_batch_size`` env steps)."""
    num_env_runners: int = 2
    """Parallel Ray env runners (0: sample in the driver, for debugging)."""
    num_learners: int = 0
    """Remote learner workers (0: learn in the driver process)."""
    placement: str = "pack"
    """Strategy of the placement group a Tune trial reserves: ``pack`` (fewest nodes) or ``spread`` (env runners on
    as many nodes as possible, so a lost node takes few of them)."""
    cpus_per_env_runner: float = 1.0
    """CPUs each env runner asks of Ray (fixed, not read from the cluster: a Tune trial's placement group has
    one bundle of exactly this size per runner, and a runner asking anything else waits forever)."""
    checkpoint_every: int = 10
    """Save an RLlib checkpoint every this many iterations (and always at the end)."""
    seed: int = 0
    """Seed of torch, env runners and request streams."""

    def __post_init__(self) -> None:
        for name, value, low in (
            ("iterations", self.iterations, 1),
            ("num_env_runners", self.num_env_runners, 0),
            ("num_learners", self.num_learners, 0),
            ("checkpoint_every", self.checkpoint_every, 1),
        ):
            if value < low:
                raise WarmRouteError(f"{{flag}} must be >= {low} (got {value})", field=name)
        if self.placement not in PLACEMENTS:
            raise WarmRouteError(f"{{flag:placement}} must be one of {', '.join(PLACEMENTS)} (got '{self.placement}')")
        if not (math.isfinite(self.cpus_per_env_runner) and self.cpus_per_env_runner > 0):
            raise WarmRouteError(f"{{flag:cpus_per_env_runner}} must be > 0 (got {self.cpus_per_env_runner})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env.to_dict(),
            "ppo": {**dataclasses.asdict(self.ppo), "hidden": list(self.ppo.hidden)},
            "kl": dataclasses.asdict(self.kl),
            "iterations": self.iterations,
            "num_env_runners": self.num_env_runners,
            "num_learners": self.num_learners,
            "placement": self.placement,
            "cpus_per_env_runner": self.cpus_per_env_runner,
            "checkpoint_every": self.checkpoint_every,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        ppo = {**data["ppo"], "hidden": tuple(data["ppo"]["hidden"])}
        env = VidurEnvConfig.from_dict({**data["env"], "workload": WorkloadConfig.from_dict(data["env"]["workload"])})
        return cls(
            env=env,
            ppo=PPOSettings(**ppo),
            kl=KLRefConfig(**data["kl"]),
            placement=data.get("placement", "pack"),
            cpus_per_env_runner=float(data.get("cpus_per_env_runner", 1.0)),  # runs saved before the field: 1
            **{k: data[k] for k in ("iterations", "num_env_runners", "num_learners", "checkpoint_every", "seed")},
        )

    @classmethod
    def from_run(cls, run_dir: str | Path, flag: str = "{flag:resume}") -> TrainConfig:
        """The config a training run in ``run_dir`` was started with (from its ``metadata.json``)."""
        saved = read_metadata(run_dir, RunDir.KIND, flag)
        try:
            return cls.from_dict(saved["config"])
        except (KeyError, TypeError) as exc:
            raise ArtifactError(
                f"{flag} {run_dir}: metadata.json does not hold a training config of this version ({exc})"
            ) from exc


# RLlib 2.60 logs "You are running PPO on the new API stack!" as a WARNING for every PPO built; the new stack is
# what this project is written for, so the notice is dropped (only it: other algorithm-config warnings still show).
silence("ray.rllib.algorithms.algorithm_config", "You are running PPO on the new API stack!")


def build_ppo_config(cfg: TrainConfig, model_config: dict[str, Any], reference_policy_path: str | None) -> PPOConfig:
    """The RLlib ``PPOConfig`` for ``cfg`` (new API stack, KL-to-reference learner, routing module)."""
    p = cfg.ppo
    return (
        PPOConfig()
        .environment(env=VidurRoutingEnv, env_config=cfg.env.to_dict())
        .env_runners(
            num_env_runners=cfg.num_env_runners,
            num_envs_per_env_runner=1,
            num_cpus_per_env_runner=cfg.cpus_per_env_runner,
            rollout_fragment_length="auto",
        )
        .resources(placement_strategy=PLACEMENTS[cfg.placement])
        .learners(
            num_learners=cfg.num_learners,
            learner_class=KLRefPPOTorchLearner,
            learner_config_dict=cfg.kl.learner_config_dict(reference_policy_path),
        )
        .training(
            lr=p.lr,
            gamma=p.gamma,
            lambda_=p.lambda_,
            train_batch_size_per_learner=max(p.minibatch_size, p.train_batch_size // max(1, cfg.num_learners)),
            minibatch_size=p.minibatch_size,
            num_epochs=p.num_epochs,
            clip_param=p.clip_param,
            entropy_coeff=p.entropy_coeff,
            vf_loss_coeff=p.vf_loss_coeff,
            vf_clip_param=p.vf_clip_param,
            grad_clip=p.grad_clip,
            grad_clip_by="global_norm",
            use_kl_loss=False,
        )
        .rl_module(rl_module_spec=RLModuleSpec(module_class=RoutingModule, model_config=model_config))
        .callbacks(RoutingMetricsCallback)
        .fault_tolerance(
            restart_failed_env_runners=True, restart_failed_sub_environments=True, delay_between_env_runner_restarts_s=1.0
        )
        # log_sys_usage (RLlib's default True) starts Tune's CPU/GPU monitor, which warns once per algorithm that
        # gputil is missing; nothing here reads those system metrics.
        .debugging(seed=cfg.seed, log_sys_usage=False)
        .reporting(metrics_num_episodes_for_smoothing=10)
    )


def default_model_config(cfg: TrainConfig) -> dict[str, Any]:
    return module_model_config(cfg.env.layout, cfg.ppo.architecture, cfg.ppo.hidden)
