"""Published single-GPU latency measurements, and what the roofline predictor says for the same runs.

Every point is a number printed in a public source (cited in ``source``), reproduced here as the time of the whole
measured run, so predictor and measurement compare like for like. ``docs/predictor.md`` tabulates the errors and
``tests/test_published_latency.py`` pins each one inside ``ERROR_BOUND``.

Run ``python -m envs.sim.published_latency`` to print the table.

How each kind of run is priced (vidur's own unit: one forward pass per iteration, no chunking at batch 1):

* ``ttft``: one prefill of ``input_tokens`` per request;
* ``request``: the prefill, then ``output_tokens - 1`` decode iterations of ``batch`` requests whose context grows
  by one token each (the first output token comes with the prefill);
* ``tpot``: the mean of those decode iterations (time per output token after the first).
"""

from __future__ import annotations

from dataclasses import dataclass

from vidur.config import CacheConfig, ReplicaConfig

from envs.sim.devices import DeviceSpec, get_device
from envs.sim.predictor import RooflineExecutionTimePredictor, RooflinePredictorConfig

ERROR_BOUND = 0.40
"""Largest |predicted / measured - 1| the docs promise on every point below."""

A100_40GB = DeviceSpec(
    name="a100-40gb",
    peak_fp16_tflops=312.0,
    hbm_bandwidth_tb_s=1.555,
    memory_gb=40.0,
    source="NVIDIA A100 Tensor Core GPU datasheet, A100 40GB (HBM2, 1,555 GB/s)",
    link_bandwidth_gb_s=300.0,
)
"""Not a vidur SKU; only used to price the one published point measured on a 40 GB A100."""

_TRT_PERF = (
    "NVIDIA TensorRT-LLM docs/source/performance.md (github.com/NVIDIA/TensorRT-LLM, commit 138f96d), "
    "'Low Latency', A100 FP16, TensorRT-LLM v0.5; 'LLaMA 7B' is Llama-2-7b per its methodology section"
)
_TRT_THROUGHPUT = (
    "NVIDIA TensorRT-LLM docs/source/performance.md (commit 138f96d), 'Peak Throughput', A100 FP16, v0.6.1: "
    "LLaMA 7B, batch 60, 128 in / 2048 out, 1,928 output tok/s"
)
_NEMO = (
    "NVIDIA NeMo Framework user guide, Performance > Llama, 'Llama-2 Results, Inference Performance' "
    "(docs.nvidia.com/nemo-framework/user-guide/latest/performance/llama.html): TRT-LLM, 128 in / 20 out, TP1"
)


@dataclass(frozen=True)
class PublishedPoint:
    """One published measurement, as the time of the run it describes."""

    name: str
    model: str
    """vidur model name whose shape matches the measured model."""
    device: str | DeviceSpec
    kind: str
    """``ttft``, ``request`` or ``tpot`` (see module docstring)."""
    batch: int
    input_tokens: int
    output_tokens: int
    measured_ms: float
    source: str


LLAMA2 = "meta-llama/Llama-2-7b-hf"
LLAMA3 = "meta-llama/Llama-3-8B"

POINTS: tuple[PublishedPoint, ...] = (
    PublishedPoint("TTFT, 128-token prompt", LLAMA2, "a100", "ttft", 1, 128, 1, 16.0, _TRT_PERF),
    PublishedPoint("TTFT, 2048-token prompt", LLAMA2, "a100", "ttft", 1, 2048, 1, 133.0, _TRT_PERF),
    PublishedPoint("request 128+20 tokens, batch 1", LLAMA2, "a100", "request", 1, 128, 20, 234.0, _NEMO),
    PublishedPoint("request 128+20 tokens, batch 1", LLAMA2, "h100", "request", 1, 128, 20, 153.8, _NEMO),
    PublishedPoint("request 128+20 tokens, batch 8", LLAMA2, "a100", "request", 8, 128, 20, 329.5, _NEMO),
    PublishedPoint("request 128+20 tokens, batch 8", LLAMA2, "h100", "request", 8, 128, 20, 199.2, _NEMO),
    PublishedPoint(
        "batch 60 x (128 in, 2048 out)", LLAMA2, "a100", "request", 60, 128, 2048, 1000.0 * 60 * 2048 / 1928, _TRT_THROUGHPUT
    ),
    PublishedPoint(
        "TPOT, batch 1, 1024 in / 128 out",
        LLAMA3,
        A100_40GB,
        "tpot",
        1,
        1024,
        128,
        1000.0 / 75,
        "J. Musgrave, 'vLLM throughput-latency sweep on NVIDIA A100' (johnmusgrave.com/p/vllm-throughput-"
        "latency-sweep-on): Llama-3.1-8B-Instruct BF16, vLLM 0.23.0, A100 40GB, concurrency 1: about 75 tok/s",
    ),
    PublishedPoint(
        "TPOT p50, concurrency 1",
        LLAMA3,
        "h100",
        "tpot",
        1,
        128,
        128,
        6.48,
        "InferenceBench concurrency-sweep recipe (yobitelcomm.github.io/bench/recipes/concurrency-sweep/): "
        "Llama-3.1-8B-Instruct fp16, vLLM 0.21.0, H100-80GB-HBM3, conc 1, tpot_p50 6.48 ms "
        "(prompt length not stated: 128 assumed; batch-1 decode barely depends on it)",
    ),
)


def _predictor(model: str) -> RooflineExecutionTimePredictor:
    replica = ReplicaConfig(model_name=model, device="h100", tensor_parallel_size=1, num_pipeline_stages=1)
    return RooflineExecutionTimePredictor(RooflinePredictorConfig(), replica, CacheConfig())


def predicted_ms(point: PublishedPoint) -> float:
    """The roofline's time for the run ``point`` describes (see module docstring)."""
    predictor = _predictor(point.model)
    device = point.device if isinstance(point.device, DeviceSpec) else get_device(point.device)
    b, n = point.batch, point.input_tokens
    prefill = predictor.stage_time_ms(device, [n] * b, [n] * b)
    decodes = [predictor.stage_time_ms(device, [1] * b, [n + k] * b) for k in range(1, point.output_tokens)]
    if point.kind == "ttft":
        return prefill
    if point.kind == "tpot":
        return sum(decodes) / len(decodes)
    return prefill + sum(decodes)


def error(point: PublishedPoint) -> float:
    """Relative error of the prediction: predicted / measured - 1."""
    return predicted_ms(point) / point.measured_ms - 1.0


def format_table() -> str:
    rows = ["| model | device | run | published | roofline | error |", "|---|---|---|---|---|---|"]
    for p in POINTS:
        device = p.device.name if isinstance(p.device, DeviceSpec) else p.device
        rows.append(
            f"| {p.model.split('/')[1]} | {device} | {p.name} | {p.measured_ms:.1f} ms | "
            f"{predicted_ms(p):.1f} ms | {error(p):+.0%} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(format_table())
