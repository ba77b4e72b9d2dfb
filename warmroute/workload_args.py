"""Workload and env flags shared by every ``warmroute`` subcommand.

Flags default to ``None`` so that only what the user typed overrides the chosen ``--workload`` preset.
"""

from __future__ import annotations

import argparse

from envs.vidur_env import REWARDS, VidurEnvConfig
from envs.workload import LENGTH_KINDS, PREDICTORS, PRESETS, REPLICA_SCHEDULERS, WorkloadConfig, preset


def _on_off(text: str) -> bool | str:
    """``on``/``off`` as a bool; anything else is passed on for WorkloadConfig to refuse in one line."""
    return {"on": True, "off": False}.get(text, text)


# flag -> (WorkloadConfig field, type, help)
_WORKLOAD_FLAGS: dict[str, tuple[str, type, str]] = {
    "--replicas": ("num_replicas", int, "number of replicas"),
    "--qps": ("qps", float, "mean arrival rate, requests per simulated second"),
    "--num-requests": ("num_requests", int, "requests per episode"),
    "--lengths": ("lengths", str, f"request lengths: {', '.join(k for k in LENGTH_KINDS if k != 'trace')} or trace:PATH"),
    "--arrival": ("arrival", str, "arrival process: poisson or gamma:CV"),
    "--model": ("model", str, "vidur model name, e.g. meta-llama/Llama-3-8B"),
    "--device": ("device", str, "GPU of every replica: h100, a100, a40, l40"),
    "--replica-scheduler": ("replica_scheduler", str, f"per-replica batching: {', '.join(REPLICA_SCHEDULERS)}"),
    "--tensor-parallel-size": ("tensor_parallel_size", int, "GPUs per replica"),
    "--chunk-size": ("chunk_size", int, "sarathi prefill chunk, tokens"),
    "--min-tokens": ("min_tokens", int, "smallest total tokens of a synthetic request"),
    "--max-tokens": ("max_tokens", int, "largest total tokens of a request"),
    "--prefill-to-decode-ratio": ("prefill_to_decode_ratio", float, "prefill tokens per decode token"),
    "--zipf-theta": ("zipf_theta", float, "Zipf skew of request length, in (0, 1)"),
    "--predictor": ("predictor", str, f"execution-time predictor: {', '.join(PREDICTORS)}"),
    "--seed": ("seed", int, "base seed of the run"),
    "--prefix-workload": ("prefix_workload", str, "prefix-sharing stream: none, mooncake, jsonl:PATH, shared_prefix, multi_turn"),
    "--prefix-caching": ("prefix_caching", _on_off, "reuse cached prefixes: on or off"),
    "--host-cache-gb": ("host_cache_gb", float, "host-DRAM KV tier per replica, GB (0 = HBM only)"),
    "--trace-time-scale": ("trace_time_scale", float, "simulated seconds per trace second"),
    "--trace-start": ("trace_start", int, "first trace request of the scored window"),
    "--trace-lead-in": ("trace_lead_in", int, "trace requests before the window replayed into the caches"),
    "--prefix-groups": ("prefix_groups", int, "shared_prefix: number of system prompts"),
    "--prefix-tokens": ("prefix_tokens", int, "shared_prefix: tokens of the shared system prompt"),
    "--question-tokens": ("question_tokens", int, "shared_prefix: question tokens; multi_turn: tokens per new message"),
    "--output-tokens": ("output_tokens", int, "shared_prefix/multi_turn: generated tokens per request"),
    "--group-zipf-theta": ("group_zipf_theta", float, "shared_prefix: group popularity skew, 0 = uniform"),
    "--sessions": ("sessions", int, "multi_turn: chats per episode"),
    "--think-time-s": ("think_time_s", float, "multi_turn: mean think time between turns, simulated seconds"),
}


def add_workload_args(parser: argparse.ArgumentParser, reward_scale_s: float = 1.0) -> None:
    group = parser.add_argument_group("workload (override fields of the --workload preset)")
    group.add_argument("--workload", default="default", help=f"preset: {', '.join(PRESETS)} (default: default)")
    for flag, (_, kind, text) in _WORKLOAD_FLAGS.items():
        group.add_argument(flag, type=kind, default=None, help=text)
    group.add_argument("--replica-devices", default=None, help="comma-separated GPU per replica, e.g. h100,h100,a100,a100")
    env = parser.add_argument_group("environment")
    env.add_argument("--reward", choices=REWARDS, default="e2e", help="minus summed e2e latency or minus summed TTFT")
    env.add_argument("--reward-scale-s", type=float, default=reward_scale_s, help="seconds of latency per unit of reward")
    env.add_argument("--oracle", action="store_true", help="observe the request's decode length (not known to real routers)")


def workload_from_args(args: argparse.Namespace) -> WorkloadConfig:
    """The preset with the user's overrides applied (validated: bad values raise a one-line WorkloadError)."""
    base = preset(args.workload)
    changes: dict[str, object] = {
        name: getattr(args, flag[2:].replace("-", "_"))
        for flag, (name, _, _) in _WORKLOAD_FLAGS.items()
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }
    if args.replica_devices is not None:
        changes["replica_devices"] = tuple(d.strip() for d in args.replica_devices.split(",") if d.strip())
    if changes:
        return base.replace(name=f"{base.name}+overrides", **changes)
    return base


def env_config_from_args(args: argparse.Namespace) -> VidurEnvConfig:
    return VidurEnvConfig(
        workload=workload_from_args(args), reward=args.reward, reward_scale_s=args.reward_scale_s, oracle=args.oracle
    )
