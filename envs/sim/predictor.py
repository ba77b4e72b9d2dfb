"""Roofline execution-time predictor for vidur: offline, deterministic, one device per replica.

vidur's stock predictors (``random_forrest``, ``linear_regression``) fit on profiling data downloaded from
HuggingFace, so they fail offline and know one device per cluster. This predictor prices every operation of a
transformer layer as ``max(FLOPs / (peak * flop_efficiency), bytes / (bandwidth * bandwidth_efficiency)) +
kernel_launch_overhead_ms`` from the model shape alone, and picks the device per batch from
``replica_devices[replica_id]``, which is how a heterogeneous cluster (e.g. ``h100,h100,a100,a100``) is simulated
with vidur's single replica config and single shared predictor. See ``docs/predictor.md`` for every formula.

Usage::

    import envs.sim.predictor  # registers the "roofline" key with vidur's ExecutionTimePredictorRegistry
    SimulationConfig(..., execution_time_predictor_config=RooflinePredictorConfig(replica_devices=("h100", "a100")))

Expected (Llama-3-8B, TP1, all 32 layers, defaults): on one H100 a 512-token prefill chunk takes 13.0 ms and a
decode batch of 64 requests at 2k context 13.5 ms; relative speeds on the reference mixed batch are
h100 1.0, a100 0.38, l40 0.22, a40 0.18. One batch costs ~10 us of CPU to price.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from vidur._native.entities import ExecutionTime as ExecutionTimeC
from vidur.config import BaseExecutionTimePredictorConfig, CacheConfig, ReplicaConfig
from vidur.entities import Batch
from vidur.execution_time_predictor import BaseExecutionTimePredictor, ExecutionTimePredictorRegistry

from envs.sim.devices import DeviceSpec, get_device

ROOFLINE = "roofline"
"""Registry key and ``get_type()`` of the roofline predictor (a plain string: vidur's enum has no member for it)."""

BYTES_PER_VALUE = 2
"""fp16/bf16 weights, activations and KV cache."""

REFERENCE_Q_TOKENS: tuple[int, ...] = (480,) + (1,) * 32
"""Reference mixed batch for relative speeds: one 480-token prefill chunk plus 32 decodes (a full 512-token chunk)."""
REFERENCE_KV_TOKENS: tuple[int, ...] = (480,) + (1024,) * 32
"""Context lengths of the reference batch: the prefill starts fresh, each decode has 1k tokens of context."""
SHAPE_CACHE_SIZE = 200_000
"""Batch shapes memoised per predictor before the memo is cleared (bounds memory over long training runs)."""


def causal_pairs(q: int, kv: int) -> int:
    """Query-key pairs of a causal prefill chunk of ``q`` tokens whose context (including them) is ``kv`` tokens:
    the chunk's i-th token sees the ``kv - q`` earlier tokens plus ``i + 1`` of its own."""
    return q * max(kv - q, 0) + q * (q + 1) // 2


@dataclass
class RooflinePredictorConfig(BaseExecutionTimePredictorConfig):
    """Knobs of the roofline; the inherited profiling fields are unused except ``nccl_cpu_launch_overhead_ms``."""

    replica_devices: tuple[str, ...] = ()
    """Device name per replica, index = replica id; empty means every replica uses ``ReplicaConfig.device``."""
    flop_efficiency: float = 0.7
    """Fraction of peak tensor FLOP/s that large fp16 GEMMs and FlashAttention sustain (typically 0.6-0.8)."""
    bandwidth_efficiency: float = 0.8
    """Fraction of peak memory/link bandwidth reached by streaming kernels and NCCL (typically 0.75-0.9)."""
    kernel_launch_overhead_ms: float = 0.005
    """Fixed cost per kernel, ms: ~3-5 us launch latency plus ramp-up/tail of an under-filled wave."""

    def __post_init__(self) -> None:
        self.replica_devices = tuple(get_device(name).name for name in self.replica_devices)
        for name in ("flop_efficiency", "bandwidth_efficiency"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.kernel_launch_overhead_ms < 0.0:
            raise ValueError(f"kernel_launch_overhead_ms must be >= 0, got {self.kernel_launch_overhead_ms}")
        if self.use_native_execution_time_predictor:
            raise ValueError("the roofline predictor has no native (C++) implementation")

    @staticmethod
    def get_type() -> str:
        return ROOFLINE


class LayerTimes(NamedTuple):
    """Milliseconds per layer per tensor-parallel worker, one field per vidur operation."""

    attn_pre_proj: float
    attn_post_proj: float
    attn_rope: float
    attn_kv_cache_save: float
    attn_decode: float
    attn_prefill: float
    mlp_up_proj: float
    mlp_down_proj: float
    mlp_act: float
    attn_norm: float
    mlp_norm: float
    add: float
    tensor_parallel_comm: float
    pipeline_parallel_comm: float

    @property
    def block_ms(self) -> float:
        """One layer as vidur sums it: the TP all-reduce twice, KV-cache save and PP send not at all."""
        return (
            self.attn_pre_proj + self.attn_post_proj + self.attn_rope + self.attn_decode + self.attn_prefill
            + self.attn_norm + self.mlp_up_proj + self.mlp_down_proj + self.mlp_act + self.mlp_norm + self.add
            + 2.0 * self.tensor_parallel_comm
        )  # fmt: skip


class _Rates(NamedTuple):
    """Sustained throughputs of one device, per millisecond, with the efficiency factors applied."""

    flops: float
    mem_bytes: float
    link_bytes: float


class RooflineExecutionTimePredictor(BaseExecutionTimePredictor):
    """Prices each batch from FLOPs and bytes moved on the device of the batch's replica."""

    def __init__(
        self,
        predictor_config: RooflinePredictorConfig,
        replica_config: ReplicaConfig,
        cache_config: CacheConfig,
    ) -> None:
        super().__init__(predictor_config, replica_config, cache_config)
        self._replica_devices = tuple(get_device(name) for name in predictor_config.replica_devices)
        self._default_device = get_device(replica_config.device)
        self._launch_ms = predictor_config.kernel_launch_overhead_ms
        self._nccl_ms = predictor_config.nccl_cpu_launch_overhead_ms
        model, tp = self._model_config, replica_config.tensor_parallel_size
        head_dim = replica_config.attention_head_dim
        self._tp = tp
        self._hidden = model.embedding_dim
        self._q_dim = replica_config.q_heads_per_tensor_parallel_worker * head_dim
        self._kv_dim = replica_config.kv_heads_per_tensor_parallel_worker * head_dim
        self._mlp_dim = model.mlp_hidden_dim / tp
        self._gated = model.use_gated_mlp
        self._post_attn_norm = model.post_attn_norm
        self._rates: dict[str, _Rates] = {}
        # Dense ops depend only on (device, total q tokens): memoised, as batches repeat the same sizes.
        self._dense_cache: dict[tuple[str, int], LayerTimes] = {}
        # Whole batches repeat their aggregate shape (same sizes, same contexts) across replicas and episodes.
        self._shape_cache: dict[tuple, LayerTimes] = {}
        # vidur calls all 15 _get_* methods back to back on one batch: price it once.
        self._last: tuple[Batch, LayerTimes] | None = None

    def device_for(self, replica_id: object) -> DeviceSpec:
        """Device of a replica; ``replica_id`` is vidur's ``ReplicaId`` or a plain int."""
        if not self._replica_devices:
            return self._default_device
        index = getattr(replica_id, "id", replica_id)
        if not isinstance(index, int) or not 0 <= index < len(self._replica_devices):
            raise ValueError(
                f"replica id {index} has no entry in replica_devices {self._replica_devices}; "
                "vidur's Replica id counter is class-level, reset it before building another Simulator"
            )
        return self._replica_devices[index]

    def stage_time_ms(self, device: str | DeviceSpec, num_q_tokens: Sequence[int], num_kv_tokens: Sequence[int]) -> float:
        """Time of one pipeline stage (all its layers, no PP send), ms: vidur's ``total_time`` for one stage.

        Per request, ``num_q_tokens`` are the tokens processed now (1 = decode) and ``num_kv_tokens`` the context
        including them, as in ``vidur.entities.Batch``. ``device`` is a vidur device name or a ``DeviceSpec`` (for a
        SKU vidur does not know, e.g. the 40 GB A100 of a published benchmark).
        """
        spec = device if isinstance(device, DeviceSpec) else get_device(device)
        times = self._layer_times(spec, num_q_tokens, num_kv_tokens)
        return times.block_ms * self._num_layers_per_pipeline_stage

    def _layer_times(self, device: DeviceSpec, num_q_tokens: Sequence[int], num_kv_tokens: Sequence[int]) -> LayerTimes:
        decode_requests = decode_context = prefill_q = prefill_kv = prefill_pairs = 0
        for q, kv in zip(num_q_tokens, num_kv_tokens):
            if q == 1:
                decode_requests += 1
                decode_context += kv
            elif q > 1:
                prefill_q += q
                prefill_kv += kv
                prefill_pairs += causal_pairs(q, kv)
        return self.layer_times_from_sums(
            device, decode_requests + prefill_q, decode_requests, decode_context, prefill_q, prefill_kv, prefill_pairs
        )

    def layer_times_from_sums(
        self,
        device: DeviceSpec,
        total_q: int,
        decode_requests: int,
        decode_context: int,
        prefill_q: int,
        prefill_kv: int,
        prefill_pairs: int,
    ) -> LayerTimes:
        """Layer times of a batch from its aggregate shape (all the roofline reads), memoised per shape.

        Decode requests have one query token; ``prefill_*`` sum over the chunks with more (``causal_pairs`` each).
        The fast-forward prices whole runs of iterations from these sums without building vidur batches.
        """
        key = (device.name, total_q, decode_requests, decode_context, prefill_q, prefill_kv, prefill_pairs)
        cached = self._shape_cache.get(key)
        if cached is not None:
            return cached
        dense = self._dense_times(device, total_q)
        decode, prefill = self._attention_times(
            self._device_rates(device), decode_requests, decode_context, prefill_q, prefill_kv, prefill_pairs
        )
        times = dense._replace(attn_decode=decode, attn_prefill=prefill)
        if len(self._shape_cache) >= SHAPE_CACHE_SIZE:
            self._shape_cache.clear()
        self._shape_cache[key] = times
        return times

    def stage_times_from_sums(
        self,
        device: DeviceSpec,
        total_q: int,
        decode_requests: int,
        decode_context: int,
        prefill_q: int,
        prefill_kv: int,
        prefill_pairs: int,
    ) -> tuple[float, float]:
        """``(total_time, model_time)`` in s of a batch of this shape on a single-stage replica.

        The fast-forward's hot path: the same numbers as ``stage_execution_time(layer_times_from_sums(...))``
        without the ``LayerTimes`` copy and the shape cache (a decode run's context grows every iteration, so its
        shapes never repeat).
        """
        dense = self._dense_times(device, total_q)
        decode, prefill = self._attention_times(
            self._device_rates(device), decode_requests, decode_context, prefill_q, prefill_kv, prefill_pairs
        )
        execution = self._execution_time(dense, decode, prefill, 0)
        return execution.total_time, execution.model_time

    def stage_execution_time(self, times: LayerTimes, pipeline_stage: int = 0) -> ExecutionTimeC:
        """vidur's ``ExecutionTime`` of one stage from ``times``, assembled exactly as
        ``BaseExecutionTimePredictor.get_execution_time`` does (so ``total_time`` is bit-identical)."""
        return self._execution_time(times, times.attn_decode, times.attn_prefill, pipeline_stage)

    def _execution_time(self, times: LayerTimes, decode: float, prefill: float, pipeline_stage: int) -> ExecutionTimeC:
        last_stage = pipeline_stage == self._replica_config.num_pipeline_stages - 1
        return ExecutionTimeC(
            self._num_layers_per_pipeline_stage,
            times.attn_rope,
            times.attn_kv_cache_save,
            decode,
            prefill,
            times.attn_pre_proj,
            times.attn_post_proj,
            times.mlp_up_proj,
            times.mlp_down_proj,
            times.mlp_act,
            times.attn_norm,
            times.mlp_norm,
            times.add,
            0 if self._tp == 1 else times.tensor_parallel_comm,
            0 if last_stage else times.pipeline_parallel_comm,
        )

    def _attention_times(
        self, rates: "_Rates", decode_requests: int, decode_context: int, prefill_q: int, prefill_kv: int, prefill_pairs: int
    ) -> tuple[float, float]:
        """Attention time of the decode and of the prefill requests of a batch, ms (0.0 for none)."""
        decode = prefill = 0.0
        if decode_requests:
            decode = self._roofline(
                rates,
                4.0 * decode_context * self._q_dim,
                BYTES_PER_VALUE * (2 * decode_context * self._kv_dim + 2 * decode_requests * self._q_dim),
            )
        if prefill_q:
            prefill = self._roofline(
                rates,
                4.0 * prefill_pairs * self._q_dim,
                BYTES_PER_VALUE * (2 * prefill_q * self._q_dim + 2 * prefill_kv * self._kv_dim),
            )
        return decode, prefill

    def _device_rates(self, device: DeviceSpec) -> _Rates:
        rates = self._rates.get(device.name)
        if rates is None:
            flop_eff, bw_eff = self._config.flop_efficiency, self._config.bandwidth_efficiency
            rates = _Rates(
                flops=device.peak_fp16_tflops * 1e9 * flop_eff,
                mem_bytes=device.hbm_bandwidth_tb_s * 1e9 * bw_eff,
                link_bytes=device.link_bandwidth_gb_s * 1e6 * bw_eff,
            )
            self._rates[device.name] = rates
        return rates

    def _roofline(self, rates: _Rates, flops: float, num_bytes: float) -> float:
        return max(flops / rates.flops, num_bytes / rates.mem_bytes) + self._launch_ms

    def _gemm(self, rates: _Rates, tokens: int, d_in: float, d_out: float) -> float:
        """[tokens, d_in] x [d_in, d_out]: reads weights and input, writes output."""
        return self._roofline(rates, 2.0 * tokens * d_in * d_out, BYTES_PER_VALUE * (d_in * d_out + tokens * (d_in + d_out)))

    def _elementwise(self, rates: _Rates, values_moved: float) -> float:
        """Memory-bound kernel (norm, add, activation, rope, cache write); its FLOPs never reach the compute roof."""
        return self._roofline(rates, 0.0, BYTES_PER_VALUE * values_moved)

    def _dense_times(self, device: DeviceSpec, tokens: int) -> LayerTimes:
        key = (device.name, tokens)
        cached = self._dense_cache.get(key)
        if cached is not None:
            return cached
        r, h, q_dim, kv_dim, mlp = self._device_rates(device), self._hidden, self._q_dim, self._kv_dim, self._mlp_dim
        activation_bytes = BYTES_PER_VALUE * tokens * h
        tp_comm = 0.0
        if self._tp > 1:  # ring all-reduce: each worker sends and receives 2 (tp - 1) / tp of the activations
            tp_comm = 2.0 * (self._tp - 1) / self._tp * activation_bytes / r.link_bytes + self._nccl_ms
        norm = self._elementwise(r, 2 * tokens * h + h)
        times = LayerTimes(
            attn_pre_proj=self._gemm(r, tokens, h, q_dim + 2 * kv_dim),
            attn_post_proj=self._gemm(r, tokens, q_dim, h),
            attn_rope=self._elementwise(r, 2 * tokens * (q_dim + kv_dim)),
            attn_kv_cache_save=self._elementwise(r, 2 * tokens * 2 * kv_dim),
            attn_decode=0.0,
            attn_prefill=0.0,
            mlp_up_proj=self._gemm(r, tokens, h, (2 if self._gated else 1) * mlp),
            mlp_down_proj=self._gemm(r, tokens, mlp, h),
            mlp_act=self._elementwise(r, tokens * mlp * (3 if self._gated else 2)),
            attn_norm=norm,
            mlp_norm=norm if self._post_attn_norm else 0.0,
            add=self._elementwise(r, 3 * tokens * h),
            tensor_parallel_comm=tp_comm,
            pipeline_parallel_comm=activation_bytes / r.link_bytes + self._nccl_ms,
        )
        self._dense_cache[key] = times
        return times

    def _times(self, batch: Batch) -> LayerTimes:
        if self._last is None or self._last[0] is not batch:
            device = self.device_for(batch.replica_id)
            self._last = (batch, self._layer_times(device, batch.num_q_tokens, batch.num_kv_tokens))
        return self._last[1]

    def _get_attention_layer_pre_proj_execution_time(self, batch: Batch) -> float:
        return self._times(batch).attn_pre_proj

    def _get_attention_layer_post_proj_execution_time(self, batch: Batch) -> float:
        return self._times(batch).attn_post_proj

    def _get_attention_rope_execution_time(self, batch: Batch) -> float:
        return self._times(batch).attn_rope

    def _get_attention_kv_cache_save_execution_time(self, batch: Batch) -> float:
        return self._times(batch).attn_kv_cache_save

    def _get_attention_decode_execution_time(self, batch: Batch) -> float:
        return self._times(batch).attn_decode

    def _get_attention_prefill_execution_time(self, batch: Batch) -> float:
        return self._times(batch).attn_prefill

    def _get_mlp_layer_up_proj_execution_time(self, batch: Batch) -> float:
        return self._times(batch).mlp_up_proj

    def _get_mlp_layer_down_proj_execution_time(self, batch: Batch) -> float:
        return self._times(batch).mlp_down_proj

    def _get_mlp_layer_act_execution_time(self, batch: Batch) -> float:
        return self._times(batch).mlp_act

    def _get_tensor_parallel_communication_time(self, batch: Batch) -> float:
        return self._times(batch).tensor_parallel_comm

    def _get_pipeline_parallel_communication_time(self, batch: Batch) -> float:
        return self._times(batch).pipeline_parallel_comm

    def _get_mlp_norm_layer_act_execution_time(self, batch: Batch) -> float:
        return self._times(batch).mlp_norm

    def _get_attn_norm_layer_act_execution_time(self, batch: Batch) -> float:
        return self._times(batch).attn_norm

    def _get_add_layer_act_execution_time(self, batch: Batch) -> float:
        return self._times(batch).add

    def _get_kv_parallel_communication_time(self, batch: Batch) -> float:
        """vidur 0.0.26 never adds KV-parallel communication to a batch's time, so neither model it here."""
        return 0.0


def relative_device_speeds(model_name: str, devices: Sequence[str], tensor_parallel_size: int = 1) -> list[float]:
    """Throughput of each device on the reference mixed batch relative to the fastest of them (fastest = 1.0).

    A mixed prefill+decode batch weighs both roofs, so the ratio sits between the FLOP ratio and the bandwidth
    ratio, like the speed a router actually sees under chunked prefill.
    """
    if not devices:
        return []
    replica_config = ReplicaConfig(
        model_name=model_name,
        device=get_device(devices[0]).name,
        tensor_parallel_size=tensor_parallel_size,
        num_pipeline_stages=1,
    )
    predictor = RooflineExecutionTimePredictor(RooflinePredictorConfig(), replica_config, CacheConfig())
    times = [predictor.stage_time_ms(name, REFERENCE_Q_TOKENS, REFERENCE_KV_TOKENS) for name in devices]
    fastest = min(times)
    return [fastest / t for t in times]


ExecutionTimePredictorRegistry.register(ROOFLINE, RooflineExecutionTimePredictor)
