"""Workload and env flags shared by ``evaluate``, ``collect-demos`` and ``train``.

Workload flags override fields of the chosen ``--workload`` preset; only what the user typed is applied. A new
workload flag is one line in :data:`WORKLOAD_FLAGS` (type, help and shown default come from the
``WorkloadConfig`` field and its docstring).
"""

from __future__ import annotations

import argparse
import dataclasses

from envs.sim.devices import DEVICE_NAMES
from envs.sim.workload import DEFAULT_PRESET, MODEL_NAMES, PREDICTORS, PRESETS, REPLICA_SCHEDULERS, WorkloadConfig, preset
from envs.vidur_env import REWARDS, VidurEnvConfig
from warmroute.cli.flags import add_config_flags, add_flag, given

# WorkloadConfig field -> (flag, choices or None). One line per flag.
WORKLOAD_FLAGS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "num_replicas": ("--replicas", None),
    "qps": ("--qps", None),
    "num_requests": ("--num-requests", None),
    "lengths": ("--lengths", None),
    "arrival": ("--arrival", None),
    "model": ("--model", MODEL_NAMES),
    "device": ("--device", DEVICE_NAMES),
    "replica_devices": ("--replica-devices", None),
    "replica_scheduler": ("--replica-scheduler", REPLICA_SCHEDULERS),
    "tensor_parallel_size": ("--tensor-parallel-size", None),
    "chunk_size": ("--chunk-size", None),
    "min_tokens": ("--min-tokens", None),
    "max_tokens": ("--max-tokens", None),
    "prefill_to_decode_ratio": ("--prefill-to-decode-ratio", None),
    "zipf_theta": ("--zipf-theta", None),
    "predictor": ("--predictor", PREDICTORS),
    "seed": ("--seed", None),
    "gpu_memory_utilization": ("--gpu-memory-utilization", None),
    "slo_ttft_s": ("--slo-ttft", None),
    "slo_tbt_s": ("--slo-tbt", None),
    "prefix_workload": ("--prefix-workload", None),
    "host_cache_gb": ("--host-cache-gb", None),
    "trace_time_scale": ("--trace-time-scale", None),
    "trace_start": ("--trace-start", None),
    "trace_lead_in": ("--trace-lead-in", None),
    "trace_windows": ("--trace-windows", None),
    "prefix_groups": ("--prefix-groups", None),
    "prefix_tokens": ("--prefix-tokens", None),
    "question_tokens": ("--question-tokens", None),
    "output_tokens": ("--output-tokens", None),
    "group_zipf_theta": ("--group-zipf-theta", None),
    "sessions": ("--sessions", None),
    "think_time_s": ("--think-time-s", None),
    "load_range": ("--load-range", None),
    "fleets": ("--fleets", None),
}
ENV_FLAGS = ("reward", "reward_scale_s", "oracle")
ON_OFF = ("on", "off")
FAST_FORWARD = {"auto": None, "on": True, "off": False}
"""``--fast-forward`` values -> ``VidurEnvConfig.fast_forward``."""


def add_workload_args(parser: argparse.ArgumentParser, base: VidurEnvConfig) -> None:
    """Workload flags (shown defaults: the default preset's) and env flags (shown defaults: ``base``'s)."""
    group = parser.add_argument_group(f"workload (override fields of the --workload preset; defaults shown: {DEFAULT_PRESET})")
    add_flag(
        group, "--workload", "preset the workload flags below override", choices=tuple(PRESETS), shown_default=base.workload.name
    )
    add_config_flags(
        group,
        preset(DEFAULT_PRESET),
        WORKLOAD_FLAGS,
        flags={field: flag for field, (flag, _) in WORKLOAD_FLAGS.items()},
        choices={field: values for field, (_, values) in WORKLOAD_FLAGS.items() if values},
    )
    add_flag(
        group,
        "--prefix-caching",
        "reuse cached prefixes on a prefix workload (off: every prompt is prefilled in full)",
        choices=ON_OFF,
        shown_default="on",
    )
    env_group = parser.add_argument_group("environment")
    add_config_flags(env_group, base, ENV_FLAGS, choices={"reward": REWARDS})
    add_flag(
        env_group,
        "--fast-forward",
        "advance runs of iterations between routing decisions in one step, with identical latencies (auto: on with "
        "the roofline predictor, off with vidur's profiled ones; on is refused for those)",
        choices=tuple(FAST_FORWARD),
        shown_default=next(k for k, v in FAST_FORWARD.items() if v is base.fast_forward),
    )


def workload_from_args(args: argparse.Namespace, base: WorkloadConfig) -> WorkloadConfig:
    """``base`` (or the typed ``--workload`` preset) with the typed overrides (validated: bad values raise WorkloadError)."""
    workload = preset(args.workload) if hasattr(args, "workload") else base
    changes = {name: value for name, value in given(args, WorkloadConfig).items() if name in WORKLOAD_FLAGS}
    if hasattr(args, "prefix_caching"):  # a bool field that defaults on: an on/off flag, not a switch
        changes["prefix_caching"] = args.prefix_caching == "on"
    return workload.replace(name=f"{workload.name}+overrides", **changes) if changes else workload


def env_config_from_args(args: argparse.Namespace, base: VidurEnvConfig) -> VidurEnvConfig:
    """``base`` with the typed workload and env flags applied."""
    env = {name: value for name, value in given(args, VidurEnvConfig).items() if name in ENV_FLAGS}
    if hasattr(args, "fast_forward"):  # three values for a bool | None field: auto/on/off, not a switch
        env["fast_forward"] = FAST_FORWARD[args.fast_forward]
    return dataclasses.replace(base, workload=workload_from_args(args, base.workload), **env)
