"""Roofline predictor: sanity targets, monotonicity, coverage of every vidur model/device, heterogeneity, and one
end-to-end vidur simulation. Runs in a few seconds on CPU."""

import logging
import math
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from vidur.config import (
    CacheConfig,
    ClusterConfig,
    MetricsConfig,
    PoissonRequestIntervalGeneratorConfig,
    ReplicaConfig,
    RoundRobinGlobalSchedulerConfig,
    SarathiSchedulerConfig,
    SimulationConfig,
    SyntheticRequestGeneratorConfig,
    UniformRequestLengthGeneratorConfig,
)
from vidur.config.model_config import BaseModelConfig
from vidur.config.utils import get_all_subclasses
from vidur.entities import Batch, Replica, Request
from vidur.execution_time_predictor import ExecutionTimePredictorRegistry
from vidur.simulator import Simulator
from vidur.types import DeviceSKUType, ReplicaId

from envs.sim.devices import DEVICE_NAMES, get_device
from envs.sim.predictor import (
    ROOFLINE,
    RooflineExecutionTimePredictor,
    RooflinePredictorConfig,
    relative_device_speeds,
)

LLAMA3_8B = "meta-llama/Llama-3-8B"
MODEL_NAMES = sorted(
    cls.get_name()
    for cls in get_all_subclasses(BaseModelConfig)
    if all(f.default is not MISSING or f.default_factory is not MISSING for f in fields(cls))
)
OP_GETTERS = sorted(name for name in dir(RooflineExecutionTimePredictor) if name.startswith("_get_") and name.endswith("_time"))

logging.getLogger("vidur").setLevel(logging.WARNING)


def _predictor(
    model: str = LLAMA3_8B,
    device: str = "h100",
    tp: int = 1,
    pp: int = 1,
    config: RooflinePredictorConfig | None = None,
) -> RooflineExecutionTimePredictor:
    replica_config = ReplicaConfig(
        model_name=model, device=device, tensor_parallel_size=tp, num_pipeline_stages=pp, network_device="h100_dgx"
    )
    return ExecutionTimePredictorRegistry.get(
        ROOFLINE,
        predictor_config=config or RooflinePredictorConfig(),
        replica_config=replica_config,
        cache_config=CacheConfig(),
    )


def _batch(q: list[int], kv: list[int], replica: int = 0) -> Batch:
    return Batch(ReplicaId(replica), [None] * len(q), q, kv)


def _ms(predictor: RooflineExecutionTimePredictor, batch: Batch, stage: int = 0) -> float:
    return predictor.get_execution_time(batch, stage).total_time * 1e3


def test_device_table_covers_vidur() -> None:
    assert set(DEVICE_NAMES) == {str(t) for t in DeviceSKUType}
    for name in DEVICE_NAMES:
        spec = get_device(name)
        assert spec.peak_fp16_tflops > 0 and spec.hbm_bandwidth_tb_s > 0 and spec.link_bandwidth_gb_s > 0
        assert "datasheet" in spec.source
    assert get_device("H100").name == "h100"


def test_unknown_device_is_one_line_error() -> None:
    message = "unknown device 'b200'; choose one of: a40, a100, h100, l40"
    with pytest.raises(ValueError, match=f"^{message}$"):
        get_device("b200")
    with pytest.raises(ValueError, match=f"^{message}$"):
        RooflinePredictorConfig(replica_devices=("h100", "b200"))


def test_registry_and_config() -> None:
    assert RooflinePredictorConfig().get_type() == ROOFLINE
    assert isinstance(_predictor(), RooflineExecutionTimePredictor)
    assert RooflinePredictorConfig(replica_devices=("h100", "A100")).replica_devices == ("h100", "a100")
    with pytest.raises(ValueError, match="flop_efficiency"):
        RooflinePredictorConfig(flop_efficiency=1.5)


def test_sanity_targets_llama3_8b_h100() -> None:
    predictor = _predictor()
    assert _ms(predictor, _batch([512], [512])) == pytest.approx(13.0, rel=0.3)
    assert _ms(predictor, _batch([1] * 64, [2048] * 64)) == pytest.approx(13.0, rel=0.3)


def test_more_tokens_never_faster() -> None:
    predictor = _predictor()
    chunks = [_ms(predictor, _batch([q], [q])) for q in (2, 16, 64, 128, 256, 512, 1024, 2048, 4096)]
    decodes = [_ms(predictor, _batch([1] * n, [2048] * n)) for n in (1, 2, 8, 32, 64, 128)]
    contexts = [_ms(predictor, _batch([1] * 32, [kv] * 32)) for kv in (16, 256, 1024, 4096, 16384)]
    later_chunk = [_ms(predictor, _batch([512], [512 + done])) for done in (0, 512, 2048, 8192)]
    for series in (chunks, decodes, contexts, later_chunk):
        assert series == sorted(series)


@pytest.mark.parametrize(
    ("q", "kv"),
    [([512], [512]), ([1] * 64, [2048] * 64), ([480] + [1] * 32, [480] + [1024] * 32), ([1], [128])],
)
def test_faster_device_is_faster(q: list[int], kv: list[int]) -> None:
    h100, a100, a40 = (_ms(_predictor(device=d), _batch(q, kv)) for d in ("h100", "a100", "a40"))
    assert h100 < a100 < a40


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_model_device_and_parallelism(model: str) -> None:
    model_config = BaseModelConfig.create_from_name(model)
    tps = [
        tp
        for tp in (1, 2, 4, 8)
        if tp == 1
        or (not model_config.no_tensor_parallel and model_config.num_q_heads % tp == 0 and model_config.embedding_dim % tp == 0)
    ]
    batches = [_batch([512], [512]), _batch([1] * 64, [2048] * 64), _batch([100, 1, 1], [300, 50, 4000])]
    for device in DEVICE_NAMES:
        for tp in tps:
            predictor = _predictor(model, device, tp=tp, pp=2)
            for batch in batches:
                ops = [getattr(predictor, name)(batch) for name in OP_GETTERS]
                assert all(math.isfinite(t) and t >= 0.0 for t in ops)
                first_stage, last_stage = _ms(predictor, batch, 0), _ms(predictor, batch, 1)
                assert math.isfinite(first_stage) and 0.0 < last_stage < first_stage


def test_tensor_parallelism_splits_work() -> None:
    batch = _batch([2048], [2048])
    assert _ms(_predictor(tp=2), batch) < _ms(_predictor(tp=1), batch)


def test_heterogeneous_replicas() -> None:
    predictor = _predictor(config=RooflinePredictorConfig(replica_devices=("h100", "h100", "a100", "a100")))
    q, kv = [256] + [1] * 16, [256] + [1500] * 16
    fast, slow = _ms(predictor, _batch(q, kv, 0)), _ms(predictor, _batch(q, kv, 2))
    assert slow > fast
    assert _ms(predictor, Batch(2, [None] * len(q), q, kv)) == slow  # a plain int replica id works too
    assert _ms(predictor, _batch(q, kv, 1)) == fast
    with pytest.raises(ValueError, match="replica id 4"):
        _ms(predictor, _batch(q, kv, 4))


def test_relative_device_speeds() -> None:
    speeds = relative_device_speeds(LLAMA3_8B, ["a100", "h100", "a40", "l40"])
    a100, h100, a40, l40 = speeds
    assert h100 == 1.0 and 0.0 < a40 < a100 < 1.0 and 0.0 < l40 < a100
    assert relative_device_speeds(LLAMA3_8B, ["a100", "a100"]) == [1.0, 1.0]
    assert relative_device_speeds(LLAMA3_8B, ["h100", "a100"], tensor_parallel_size=2)[1] < 1.0


def _simulate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replica_devices: tuple[str, ...]) -> list[Request]:
    """Run 50 requests on 2 replicas; resets vidur's class-level replica counter so round robin finds ids 0 and 1."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Replica, "_id", -1)
    config = SimulationConfig(
        log_level="warning",
        cluster_config=ClusterConfig(
            num_replicas=2,
            replica_config=ReplicaConfig(
                model_name=LLAMA3_8B,
                device="h100",
                network_device="h100_pairwise_nvlink",
                tensor_parallel_size=1,
                num_pipeline_stages=1,
            ),
            replica_scheduler_config=SarathiSchedulerConfig(chunk_size=512),
            global_scheduler_config=RoundRobinGlobalSchedulerConfig(),
        ),
        request_generator_config=SyntheticRequestGeneratorConfig(
            num_requests=50,
            interval_generator_config=PoissonRequestIntervalGeneratorConfig(qps=10),
            length_generator_config=UniformRequestLengthGeneratorConfig(min_tokens=256, max_tokens=2048),
        ),
        execution_time_predictor_config=RooflinePredictorConfig(replica_devices=replica_devices),
        metrics_config=MetricsConfig(
            write_metrics=False,
            store_plots=False,
            enable_chrome_trace=False,
            write_json_trace=False,
            output_dir=str(tmp_path),
        ),
    )
    simulator = Simulator(config)
    requests = [event._request for _, event in simulator._event_queue]
    simulator.run()
    return requests


def test_simulator_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    homogeneous = _simulate(tmp_path, monkeypatch, ())
    heterogeneous = _simulate(tmp_path, monkeypatch, ("h100", "a100"))
    for requests in (homogeneous, heterogeneous):
        assert len(requests) == 50
        assert all(r.completed and r.e2e_time > 0.0 for r in requests)
    mean_e2e = [sum(r.e2e_time for r in requests) / len(requests) for requests in (homogeneous, heterogeneous)]
    assert mean_e2e[1] > mean_e2e[0]
