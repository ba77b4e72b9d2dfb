"""Glue between a :class:`WorkloadConfig` and vidur: config building, per-episode resets, quiet logging.

vidur is a batch simulator meant to be run once per process from its CLI; running thousands of episodes in one
process needs three fixes that live here and nowhere else:

* class-level id counters (entities and events) persist across ``Simulator`` instances, so a second episode would
  get replica ids 4..7 and break every scheduler: :func:`reset_vidur_counters` zeroes them;
* building ``MetricsConfig``/``SimulationConfig`` creates a timestamped output folder and writes ``config.json``:
  the subclasses below skip that, so episodes write no files;
* the ``vidur`` logger prints at INFO to stdout: :func:`quiet_vidur_logging` raises it to WARNING.

Two fidelity fixes live in their own modules: per-replica KV memory (``envs.sim.memory``, applied to every new
simulator) and vidur's broken ``Request.restart`` after a preemption (``envs.sim.vidur_patches``, applied on import).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from vidur.config import (
    CacheConfig,
    ClusterConfig,
    FixedRequestLengthGeneratorConfig,
    GammaRequestIntervalGeneratorConfig,
    LinearRegressionExecutionTimePredictorConfig,
    LORGlobalSchedulerConfig,
    MetricsConfig,
    OrcaSchedulerConfig,
    PoissonRequestIntervalGeneratorConfig,
    RandomForrestExecutionTimePredictorConfig,
    RandomGlobalSchedulerConfig,
    RoundRobinGlobalSchedulerConfig,
    SarathiSchedulerConfig,
    SimulationConfig,
    SyntheticRequestGeneratorConfig,
    TraceRequestLengthGeneratorConfig,
    UniformRequestLengthGeneratorConfig,
    VllmSchedulerConfig,
    ZipfRequestLengthGeneratorConfig,
)
from vidur.entities.base_entity import BaseEntity
from vidur.events import BaseEvent
from vidur.simulator import Simulator

from envs.errors import WarmRouteError
from envs.prefix.setup import attach_prefix, prefix_parts, prefix_streams
from envs.sim import vidur_patches
from envs.sim.memory import replica_config, size_replicas
from envs.sim.predictor import RooflinePredictorConfig
from envs.sim.workload import WorkloadConfig, WorkloadError

vidur_patches.apply()
VIDUR_CACHE_DIR = Path(os.environ.get("WARMROUTE_CACHE", Path.home() / ".cache" / "warmroute")) / "vidur"


class PredictorDataUnavailable(WarmRouteError):
    """vidur's own predictors could not fetch their profiling data (no network or no access)."""


@dataclass
class _InMemoryMetricsConfig(MetricsConfig):
    """MetricsConfig that does not create a timestamped output folder on construction."""

    def __post_init__(self) -> None:
        pass


@dataclass
class _InMemorySimulationConfig(SimulationConfig):
    """SimulationConfig that does not write ``config.json`` on construction."""

    def write_config_to_file(self) -> None:
        pass


def quiet_vidur_logging() -> None:
    os.environ.setdefault("WANDB_MODE", "disabled")
    logging.getLogger("vidur").setLevel(logging.WARNING)


def reset_vidur_counters() -> None:
    """Zero vidur's class-level id counters (see module docstring)."""
    pending = [BaseEntity]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "_id" in vars(cls) or cls is BaseEntity:
            cls._id = -1
    BaseEvent._id = 0


def _length_config(w: WorkloadConfig, seed: int):
    if w.trace_path is not None:
        return TraceRequestLengthGeneratorConfig(trace_file=w.trace_path, max_tokens=w.max_tokens, seed=seed)
    if w.lengths == "fixed":
        decode = max(1, round(w.max_tokens / (1 + w.prefill_to_decode_ratio)))
        return FixedRequestLengthGeneratorConfig(
            prefill_tokens=w.max_tokens - decode, decode_tokens=decode, max_tokens=w.max_tokens, seed=seed
        )
    if w.lengths == "uniform":
        return UniformRequestLengthGeneratorConfig(
            min_tokens=w.min_tokens, max_tokens=w.max_tokens, prefill_to_decode_ratio=w.prefill_to_decode_ratio, seed=seed
        )
    return ZipfRequestLengthGeneratorConfig(
        theta=w.zipf_theta,
        scramble=False,  # vidur's scramble uses str hash(): not reproducible across processes
        min_tokens=w.min_tokens,
        max_tokens=w.max_tokens,
        prefill_to_decode_ratio=w.prefill_to_decode_ratio,
        seed=seed,
    )


# vidur clips each exponential gap at 3/qps, which shortens the mean gap to (1 - e^-3)/qps (arrivals 5.2% faster
# than asked). Asking vidur for qps * (1 - e^-3) makes the realised mean rate the --qps the user gave.
POISSON_CLIP_CORRECTION = 1.0 - math.exp(-3.0)


def _interval_config(w: WorkloadConfig, seed: int):
    if w.gamma_cv is not None:
        return GammaRequestIntervalGeneratorConfig(qps=w.qps, cv=w.gamma_cv, seed=seed)
    return PoissonRequestIntervalGeneratorConfig(qps=w.qps * POISSON_CLIP_CORRECTION, seed=seed)


def _replica_scheduler_config(w: WorkloadConfig):
    if w.replica_scheduler == "sarathi":
        return SarathiSchedulerConfig(chunk_size=w.chunk_size)
    if w.replica_scheduler == "vllm":
        return VllmSchedulerConfig()
    return OrcaSchedulerConfig()


def _predictor_config(w: WorkloadConfig):
    if w.predictor == "roofline":
        return RooflinePredictorConfig(replica_devices=w.devices)
    if w.replica_devices and len(set(w.replica_devices)) > 1:
        raise WorkloadError(
            f"{{flag:predictor}} {w.predictor} times every replica as {{flag:device}}; heterogeneous {{flag:replica_devices}} need {{flag:predictor}} roofline"
        )
    cls = (
        RandomForrestExecutionTimePredictorConfig
        if w.predictor == "random_forrest"
        else LinearRegressionExecutionTimePredictorConfig
    )
    return cls(cache_dir=str(VIDUR_CACHE_DIR))


_GLOBAL_SCHEDULERS = {
    "round_robin": RoundRobinGlobalSchedulerConfig,
    "lor": LORGlobalSchedulerConfig,
    "random": RandomGlobalSchedulerConfig,
}


def build_simulation_config(
    w: WorkloadConfig, seed: int, global_scheduler: str = "round_robin", scored: list | None = None
) -> SimulationConfig:
    """vidur config for one episode of ``w`` whose requests are drawn with ``seed``.

    ``global_scheduler`` only matters when vidur itself routes (``Simulator.run()``, used by the fidelity test and
    the throughput benchmark); the env makes every routing decision itself. ``scored``: a prefix workload's scored
    stream if the caller already built it (``prefix_streams``), so it is built once per episode.
    """
    replica = replica_config(w, w.devices[0])  # per-replica KV memory is set by size_replicas() after the build
    prefix = {}
    if w.has_prefix:
        if scored is None:
            scored = prefix_streams(w, seed)[1]
        prefix = prefix_parts(w, scored, replica, w.chunk_size, seed)
    config = _InMemorySimulationConfig(
        seed=seed,
        log_level="warning",
        cluster_config=ClusterConfig(
            num_replicas=w.num_replicas,
            replica_config=replica,
            cache_config=prefix.get("cache_config") or CacheConfig(),
            global_scheduler_config=_GLOBAL_SCHEDULERS[global_scheduler](),
            replica_scheduler_config=prefix.get("replica_scheduler_config") or _replica_scheduler_config(w),
        ),
        request_generator_config=prefix.get("request_generator_config")
        or SyntheticRequestGeneratorConfig(
            seed=seed,
            num_requests=w.num_requests,
            length_generator_config=_length_config(w, seed),
            interval_generator_config=_interval_config(w, seed),
        ),
        execution_time_predictor_config=prefix.get("execution_time_predictor_config") or _predictor_config(w),
        metrics_config=_InMemoryMetricsConfig(
            write_metrics=False,
            write_json_trace=False,
            enable_chrome_trace=False,
            store_plots=False,
            output_dir=str(VIDUR_CACHE_DIR / "unused"),
        ),
    )
    return config


def new_simulator(w: WorkloadConfig, seed: int, global_scheduler: str = "round_robin") -> Simulator:
    """A fresh vidur ``Simulator`` for one episode, with counters reset and errors made readable."""
    quiet_vidur_logging()
    reset_vidur_counters()
    lead_in, scored = prefix_streams(w, seed) if w.has_prefix else ([], None)
    config = build_simulation_config(w, seed, global_scheduler, scored)
    try:
        simulator = Simulator(config)
    except Exception as exc:  # vidur's predictors raise hub/HTTP/OS errors of many types when offline
        if w.predictor != "roofline" and _is_download_error(exc):
            raise PredictorDataUnavailable(
                f"{{flag:predictor}} {w.predictor}: vidur could not fetch its profiling data from the model hub "
                f"({type(exc).__name__}); use {{flag:predictor}} roofline (offline) or make the hub reachable"
            ) from exc
        raise
    size_replicas(simulator, w, paged=w.has_prefix)
    if w.has_prefix:
        attach_prefix(simulator, w, seed, lead_in)
    return simulator


def _is_download_error(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in _chain(exc)}
    return bool(
        names
        & {
            "LocalEntryNotFoundError",
            "HfHubHTTPError",
            "ConnectionError",
            "OfflineModeIsEnabled",
            "RepositoryNotFoundError",
            "GatedRepoError",
            "HTTPError",
            "ConnectError",
            "FileNotFoundError",
        }
    )


def _chain(exc: BaseException | None):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__
