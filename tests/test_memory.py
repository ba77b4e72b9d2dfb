"""Each replica's KV cache is sized from its own device (vidur sizes every replica like the first one)."""

from __future__ import annotations

import pytest
from vidur.simulator import Simulator

from envs.evaluation.evaluate import HeuristicPolicy, evaluate_policy
from envs.sim.simulation import build_simulation_config, new_simulator, reset_vidur_counters
from envs.sim.workload import WorkloadConfig, preset
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv

LLAMA2 = "meta-llama/Llama-2-7b-hf"


def _stock_blocks(w: WorkloadConfig) -> list[tuple[int, int]]:
    """Block count and watermark per replica as vidur itself sizes them (no per-replica fix)."""
    reset_vidur_counters()
    sim = Simulator(build_simulation_config(w, seed=1))
    schedulers = sorted(sim.scheduler._replica_schedulers.items(), key=lambda item: item[0].id)
    return [(rs._cache_config.num_blocks, rs._watermark_blocks) for _, rs in schedulers]


def _env_blocks(w: WorkloadConfig) -> list[tuple[int, int]]:
    sim = new_simulator(w, seed=1)
    schedulers = sorted(sim.scheduler._replica_schedulers.items(), key=lambda item: item[0].id)
    return [(rs._cache_config.num_blocks, rs._watermark_blocks) for _, rs in schedulers]


def test_mixed_fleet_gives_each_replica_its_own_devices_blocks_and_watermark() -> None:
    mixed = WorkloadConfig(model=LLAMA2, num_replicas=3, replica_devices=("h100", "a100", "a40"))
    expected = [_stock_blocks(mixed.replace(replica_devices=(), device=d, num_replicas=1))[0] for d in mixed.devices]
    assert _env_blocks(mixed) == expected
    assert expected[2][0] < expected[0][0]  # the 45 GB A40 holds fewer blocks than the 80 GB H100
    assert _stock_blocks(mixed)[2] == expected[0]  # vidur alone would size the A40 like the H100


@pytest.mark.parametrize("name", ["default", "heterogeneous", "bursty"])
def test_existing_presets_keep_vidurs_own_sizing(name: str) -> None:
    w = preset(name).replace(num_requests=20)
    assert _env_blocks(w) == _stock_blocks(w)


def test_gpu_memory_utilization_shrinks_the_kv_cache() -> None:
    full = _env_blocks(WorkloadConfig(model=LLAMA2, num_replicas=1))[0][0]
    tight = _env_blocks(WorkloadConfig(model=LLAMA2, num_replicas=1, gpu_memory_utilization=0.5))[0][0]
    assert 0 < tight < full
    env = VidurRoutingEnv(VidurEnvConfig(workload=WorkloadConfig(model=LLAMA2, num_replicas=1, gpu_memory_utilization=0.5)))
    env.reset(seed=0)
    assert env._num_blocks == [tight]


def test_same_stream_preempts_on_a40s_but_not_on_h100s() -> None:
    """Llama-2-7B (no GQA: 0.5 MB of KV per token) with long answers fills the A40's cache, not the H100's."""
    base = WorkloadConfig(
        model=LLAMA2,
        num_replicas=2,
        qps=2.0,
        num_requests=60,
        lengths="uniform",
        min_tokens=2048,
        max_tokens=4096,
        prefill_to_decode_ratio=1.0,
    )
    results = {}
    for device in ("h100", "a40"):
        config = VidurEnvConfig(workload=base.replace(device=device))
        results[device] = evaluate_policy(HeuristicPolicy("least_outstanding", config.layout), config, [7])
    assert results["h100"]["preemptions_per_episode"] == 0
    assert results["a40"]["preemptions_per_episode"] > 0
    assert max(results["a40"]["kv_usage_peak"]) > 0.95 > max(results["h100"]["kv_usage_peak"])
    assert results["a40"]["num_requests"] == 60  # every preempted request still completes


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--gpu-memory-utilization", "0"], "--gpu-memory-utilization"),
        (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
        (["--gpu-memory-utilization", "0.16"], "--gpu-memory-utilization"),  # 8B weights leave < 4096 KV tokens
        (["--model", LLAMA2, "--device", "a40", "--max-tokens", "65536"], "--max-tokens"),
        (["--slo-ttft", "0"], "--slo-ttft"),
        (["--slo-tbt", "-0.1"], "--slo-tbt"),
        (["--reward", "slo"], "--reward slo"),
        (["--tensor-parallel-size", "3"], "--tensor-parallel-size"),
    ],
)
def test_bad_memory_and_slo_input_is_one_line_naming_the_flag(args: list[str], flag: str, cli_in_process) -> None:
    result = cli_in_process("evaluate", "--policy", "round_robin", "--num-requests", "10", "--episodes", "1", "--quiet", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert flag in lines[0]
