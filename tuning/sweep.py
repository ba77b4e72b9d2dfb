"""Ray Tune sweeps over training settings: the sweep's config, searchers, schedulers, the Tuner, and the run.

The trials themselves are :func:`tuning.trial.train_trial`. Each asks for ``PPO.default_resource_request(config)``
(one bundle for the trial and its local learner, one of ``cpus_per_env_runner`` per env runner), and the sweep
refuses a ``max_concurrent`` the machine cannot place at once. A failed trial is retried from its last checkpoint
(``FailureConfig``); PBT restarts exploited trials from the donor's checkpoint with the perturbed settings; a killed
sweep continues with ``Tuner.restore``. Everything is validated before Ray starts or anything is written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining, TrialScheduler
from ray.tune.search import BasicVariantGenerator, SearchAlgorithm, Searcher

from envs.errors import WarmRouteError
from rllib_ext import metrics as M
from rllib_ext.ray_runtime import ensure_ray
from rllib_ext.train_config import KLRefConfig, TrainConfig
from tuning.results import TrialProgress, export_best, trial_rows, write_tables
from tuning.spaces import PBT_KEYS, Space, default_space, domain, param_space, validate_space
from tuning.trial import objective, train_trial, trial_resources
from warmroute.artifacts.metadata import ArtifactError, read_metadata, require_fresh_output, write_metadata

SEARCHERS = ("optuna", "random", "grid")
SCHEDULERS = ("asha", "pbt", "fifo")
EXPERIMENT_DIR = "experiment"
SWEEP_KIND = "sweep"


@dataclass(frozen=True)
class SweepConfig:
    """One sweep: the base training config, the space over it, and how Tune explores it."""

    train: TrainConfig = field(default_factory=TrainConfig)
    """Base settings of every trial (the space's keys override them)."""
    space: Space = field(default_factory=dict)
    """``{train flag: {kind: values}}`` (tuning.spaces); empty: :func:`default_space` of ``train``."""
    num_samples: int = 12
    """Trials to run (with ``grid`` entries: repetitions of the whole grid, Tune's meaning)."""
    max_concurrent: int = 1
    """Trials running at once; each needs 1 CPU + ``cpus_per_env_runner`` per env runner."""
    search: str = "optuna"
    """``optuna`` (TPE), ``random`` or ``grid``."""
    scheduler: str = "asha"
    """``asha`` (early stopping), ``pbt`` (perturbs lr and the KL coefficients) or ``fifo`` (run all to the end)."""
    grace_period: int | None = None
    """ASHA: training iterations before a trial may be stopped (None: a quarter of the iterations, at least 1)."""
    perturbation_interval: int = 2
    """PBT: training iterations between exploit/explore steps (each trial checkpoints this often)."""
    eval_episodes: int = 3
    """Held-out episodes evaluating each finished trial's policy (they pick the best trial)."""
    max_failures: int = 2
    """Retries of a failed trial, each from its last checkpoint."""

    def __post_init__(self) -> None:
        if not self.space:
            object.__setattr__(self, "space", default_space(self.train))
        if self.grace_period is None:
            object.__setattr__(self, "grace_period", max(1, self.train.iterations // 4))
        self._validate()

    def _validate(self) -> None:
        """Every check that needs no Ray: bad values raise a one-line WarmRouteError naming the flag."""
        validate_space(self.space, self.train)
        for name, value in (
            ("num_samples", self.num_samples),
            ("max_concurrent", self.max_concurrent),
            ("grace_period", self.grace_period),
            ("perturbation_interval", self.perturbation_interval),
            ("eval_episodes", self.eval_episodes),
        ):
            if value < 1:
                raise WarmRouteError(f"{{flag}} must be >= 1 (got {value})", field=name)
        if self.max_failures < 0:
            raise WarmRouteError(f"{{flag:max_failures}} must be >= 0 (got {self.max_failures})")
        if self.search not in SEARCHERS:
            raise WarmRouteError(f"{{flag:search}} must be one of {', '.join(SEARCHERS)} (got '{self.search}')")
        if self.scheduler not in SCHEDULERS:
            raise WarmRouteError(f"{{flag:scheduler}} must be one of {', '.join(SCHEDULERS)} (got '{self.scheduler}')")
        if self.scheduler == "asha" and self.grace_period > self.train.iterations:
            raise WarmRouteError(f"{{flag:grace_period}} {self.grace_period} exceeds {{flag:iterations}} {self.train.iterations}")
        if self.scheduler == "pbt":
            if self.search == "optuna":
                raise WarmRouteError("{flag:scheduler} pbt replaces trials' settings itself; use {flag:search} random or grid")
            if not any(key in self.space for key in PBT_KEYS):
                raise WarmRouteError(f"{{flag:scheduler}} pbt perturbs {', '.join(PBT_KEYS)}: put at least one in {{flag:space}}")
        per_runner = self.train.ppo.train_batch_size // max(1, self.train.num_env_runners)
        requests = self.train.env.workload.num_requests
        if per_runner < requests:
            raise WarmRouteError(
                f"{{flag:train_batch_size}} {self.train.ppo.train_batch_size} gives each env runner {per_runner} steps "
                f"per iteration, fewer than {{flag:num_requests}} {requests}: no episode would finish and the "
                "score needs one; raise {flag:train_batch_size} or lower {flag:num_requests}"
            )
        param_space(self.space, self.search)

    @property
    def checkpoint_every(self) -> int:
        """Trial checkpoint cadence: PBT needs one at every perturbation interval."""
        return self.perturbation_interval if self.scheduler == "pbt" else self.train.checkpoint_every

    def to_dict(self) -> dict[str, Any]:
        return {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "train"},
            "train": self.train.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        return cls(**{**data, "train": TrainConfig.from_dict(data["train"])})


def absolute_inputs(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its input paths absolute: trials run with their own trial directory as working directory."""
    kl = cfg.kl
    if kl.pretrained_actor_path:
        kl = dataclasses.replace(kl, pretrained_actor_path=str(Path(kl.pretrained_actor_path).absolute()))
    workload = cfg.env.workload
    if workload.lengths.startswith("trace:"):
        workload = workload.replace(lengths="trace:" + str(Path(workload.lengths[len("trace:") :]).absolute()))
    return dataclasses.replace(cfg, kl=kl, env=dataclasses.replace(cfg.env, workload=workload))


def machine_cpus() -> float | None:
    """CPUs Tune can place trials on: this machine's, or the running local Ray's; None on a cluster joined through
    ``RAY_ADDRESS``, which an autoscaler may grow."""
    import ray

    if os.environ.get("RAY_ADDRESS"):
        return None
    if ray.is_initialized():
        return float(ray.cluster_resources().get("CPU", 0.0))
    return float(len(os.sched_getaffinity(0)))


def check_fits(sweep: SweepConfig) -> None:
    need = trial_resources(sweep.train).required_resources.get("CPU", 0.0)
    have = machine_cpus()
    if have is not None and sweep.max_concurrent * need > have:
        raise WarmRouteError(
            f"{{flag:max_concurrent}} {sweep.max_concurrent}: each trial needs {need:g} CPUs (1 + {sweep.train.num_env_runners} "
            f"env runners x {sweep.train.cpus_per_env_runner:g}), {have:g} are available, so at most "
            f"{int(have // need)} can run at once; lower {{flag:max_concurrent}}, {{flag:num_env_runners}} or {{flag:cpus_per_env_runner}}"
        )


def _keep_kl_schedule_valid(config: dict[str, Any], *, base: KLRefConfig) -> dict[str, Any]:
    """PBT explore hook: perturbing the KL end points one by one may put the final above the initial coefficient."""
    initial = config.get("kl_ref_coef_initial", base.kl_ref_coef_initial)
    if "kl_ref_coef_final" in config:
        config["kl_ref_coef_final"] = min(config["kl_ref_coef_final"], initial)
    elif initial < base.kl_ref_coef_final:
        config["kl_ref_coef_initial"] = base.kl_ref_coef_final
    return config


def make_searcher(sweep: SweepConfig) -> Searcher | SearchAlgorithm:
    if sweep.search == "optuna":
        from optuna.samplers import TPESampler
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(sampler=TPESampler(seed=sweep.train.seed))
    # A search generator ignores TuneConfig.max_concurrent_trials: it takes the limit itself.
    return BasicVariantGenerator(random_state=sweep.train.seed, max_concurrent=sweep.max_concurrent)


def make_scheduler(sweep: SweepConfig) -> TrialScheduler:
    if sweep.scheduler == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=sweep.train.iterations, grace_period=sweep.grace_period)
    if sweep.scheduler == "pbt":
        mutations = {key: domain(key, sweep.space[key]) for key in PBT_KEYS if key in sweep.space}
        # synch: every trial reaches the interval before the bottom ones exploit, so the order (and the result) does not
        # depend on which trial the loaded machine happened to run first.
        return PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=sweep.perturbation_interval,
            synch=True,
            hyperparam_mutations=mutations,
            custom_explore_fn=partial(_keep_kl_schedule_valid, base=sweep.train.kl),
        )
    return FIFOScheduler()


def make_trainable(sweep: SweepConfig, trial_fn: Callable[..., None] = train_trial) -> Any:
    """``trial_fn`` with the sweep's fixed inputs bound and the trial's placement group attached."""
    bound = tune.with_parameters(
        trial_fn, base=sweep.train.to_dict(), eval_episodes=sweep.eval_episodes, checkpoint_every=sweep.checkpoint_every
    )
    return tune.with_resources(bound, trial_resources(sweep.train))


def run_config(sweep: SweepConfig, output: Path, callbacks: list[tune.Callback]) -> tune.RunConfig:
    return tune.RunConfig(
        name=EXPERIMENT_DIR,
        storage_path=str(output.absolute()),
        callbacks=callbacks,
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
        # PBT exploits a donor's latest checkpoint: keep a few so none is deleted while another trial copies it.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=4 if sweep.scheduler == "pbt" else 2),
    )


def make_tuner(
    sweep: SweepConfig, output: Path, callbacks: list[tune.Callback], trial_fn: Callable[..., None] = train_trial
) -> tune.Tuner:
    return tune.Tuner(
        make_trainable(sweep, trial_fn),
        param_space=param_space(sweep.space, sweep.search),
        tune_config=tune.TuneConfig(
            metric=M.TUNE_SCORE,
            mode="min",
            num_samples=sweep.num_samples,
            max_concurrent_trials=sweep.max_concurrent if sweep.search == "optuna" else None,
            search_alg=make_searcher(sweep),
            reuse_actors=True,
            scheduler=make_scheduler(sweep),
        ),
        run_config=run_config(sweep, output, callbacks),
    )


def restore_tuner(sweep: SweepConfig, output: Path, trial_fn: Callable[..., None] = train_trial) -> tune.Tuner:
    """The killed sweep in ``output``: finished trials are kept, unfinished ones resume from their checkpoints."""
    return tune.Tuner.restore(
        str((output / EXPERIMENT_DIR).absolute()), trainable=make_trainable(sweep, trial_fn), resume_errored=True
    )


def run_sweep(
    sweep: SweepConfig | None,
    output: str | Path,
    *,
    resume: bool = False,
    trial_fn: Callable[..., None] = train_trial,
    log: Callable[[str], None] = print,
    callbacks: Sequence[tune.Callback] = (),
) -> dict[str, Any]:
    """Run (or with ``resume``, continue) a sweep in ``output``; write the tables and ``best/``.

    Everything is checked before Ray starts or anything is written. ``resume`` reads the sweep from ``output`` (and
    the callbacks saved with the experiment). ``callbacks`` see every result as it arrives: Tune's per-trial
    ``result.json`` may lack results reported before a trial was restored.
    """
    out = Path(output)
    if resume:
        saved = read_metadata(out, SWEEP_KIND, "{flag:resume}")
        if not tune.Tuner.can_restore(str((out / EXPERIMENT_DIR).absolute())):
            raise ArtifactError(
                f"{{flag:resume}} {out}: no Tune experiment state under {EXPERIMENT_DIR}/; start a new sweep instead"
            )
        try:
            sweep = SweepConfig.from_dict(saved["sweep"])
        except (KeyError, TypeError) as exc:
            raise ArtifactError(
                f"{{flag:resume}} {out}: metadata.json does not hold a sweep config of this version ({exc})"
            ) from exc
    else:
        require_fresh_output(out)
        sweep = dataclasses.replace(sweep, train=absolute_inputs(sweep.train))
    check_fits(sweep)
    ensure_ray()
    keys = list(sweep.space)
    if resume:
        tuner = restore_tuner(sweep, out, trial_fn)
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_metadata(out, SWEEP_KIND, sweep=sweep.to_dict(), layout=sweep.train.env.layout.to_dict())
        tuner = make_tuner(sweep, out, [TrialProgress(keys, log), *callbacks], trial_fn)
    rows = trial_rows(tuner.fit(), keys)
    w = sweep.train.env.workload
    write_tables(
        rows,
        out,
        f"Sweep on {w.name} ({w.num_requests} requests, qps {w.qps:g}): {sweep.search} search, "
        f"{sweep.scheduler} scheduler, score = {objective(sweep.train)} (s), held-out = "
        f"{sweep.eval_episodes} evaluation episodes",
    )
    return {"rows": rows, "best": export_best(rows, out), "output": str(out)}
