"""Workloads: a serialisable description of the cluster and its traffic, presets, and validation.

A :class:`WorkloadConfig` is a frozen dataclass of plain values (JSON round-trips through ``to_dict``/``from_dict``),
so Tune trials, Ray Jobs and every saved artefact carry the exact workload they ran on. It is turned into a vidur
``SimulationConfig`` only inside the env (see ``envs.sim.simulation``).

Preset rates are 85% of the capacity measured by ``scripts/measure_capacity.py`` (see docs/workloads.md).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass, field

from envs.errors import WarmRouteError
from envs.sim.devices import DEVICE_NAMES
from envs.sim.distribution import apply_setting, episode_setting, validate_distribution
from envs.sim.memory import kv_capacity_tokens

MODEL_NAMES: tuple[str, ...] = (
    "meta-llama/Llama-3-8B",
    "meta-llama/Llama-3-70B",
    "meta-llama/Llama-2-7b-hf",
    "meta-llama/Llama-2-70b-hf",
    "codellama/CodeLlama-34b-Instruct-hf",
    "internlm/internlm-20b",
    "internlm/internlm2-20b",
    "microsoft/phi-2",
    "Qwen/Qwen-72B",
)
REPLICA_SCHEDULERS: tuple[str, ...] = ("sarathi", "vllm", "orca")
PREDICTORS: tuple[str, ...] = ("roofline", "random_forrest", "linear_regression")
LENGTH_KINDS: tuple[str, ...] = ("fixed", "uniform", "zipf", "trace")
MAX_SEED = 100_000  # evaluation seeds are 2**31 + seed * 10_000 + k and must stay below 2**32


class WorkloadError(WarmRouteError):
    """Invalid workload setting; the message names the CLI flag and how to fix it."""


@dataclass(frozen=True)
class WorkloadConfig:
    """Cluster and traffic of one routing problem. All fields are CLI-overridable (``--kebab-case``)."""

    num_replicas: int = 4
    """Number of model replicas the router chooses between."""
    model: str = "meta-llama/Llama-3-8B"
    """Model served by every replica (a vidur model name)."""
    device: str = "h100"
    """GPU SKU of every replica, unless ``replica_devices`` is set."""
    replica_devices: tuple[str, ...] = ()
    """Per-replica GPU SKU (length ``num_replicas``) for heterogeneous fleets; empty = all ``device``."""
    tensor_parallel_size: int = 1
    """GPUs per replica (tensor parallelism)."""
    replica_scheduler: str = "sarathi"
    """Per-replica batching scheduler (vidur's sarathi, vllm or orca)."""
    chunk_size: int = 512
    """Sarathi prefill chunk size in tokens."""
    qps: float = 43.5
    """Mean arrival rate in requests per second (simulated time)."""
    arrival: str = "poisson"
    """Arrival process: ``poisson`` or ``gamma:CV`` (CV = coefficient of variation of inter-arrival times)."""
    lengths: str = "zipf"
    """Request lengths: ``fixed``, ``uniform``, ``zipf`` or ``trace:PATH`` (CSV with num_prefill_tokens, num_decode_tokens)."""
    min_tokens: int = 128
    """Smallest total (prefill + decode) tokens of a synthetic request."""
    max_tokens: int = 4096
    """Largest total tokens of a request (also sizes vidur's KV-cache slots)."""
    prefill_to_decode_ratio: float = 3.0
    """Prefill tokens per decode token for synthetic lengths."""
    zipf_theta: float = 0.6
    """Zipf skew of total request length (higher = more short requests)."""
    num_requests: int = 512
    """Requests per episode."""
    predictor: str = "roofline"
    """Execution-time predictor: the offline ``roofline`` or vidur's ``random_forrest``/``linear_regression``."""
    seed: int = 0
    """Base seed (0..MAX_SEED): unseeded env resets draw request seeds from a stream keyed by
    ``(seed, worker_index, vector_index)``; evaluation uses held-out seeds derived from it."""
    name: str = field(default="custom", compare=False)
    """Preset the config came from (informational)."""
    gpu_memory_utilization: float = 0.9
    """Fraction of each GPU's memory for weights + KV cache, in (0, 1] (vidur's planner hard-codes 0.9)."""
    slo_ttft_s: float | None = None
    """Time-to-first-token SLO, seconds (None: no SLO; needed by ``--reward slo`` and SLO attainment)."""
    slo_tbt_s: float | None = None
    """Time-between-tokens SLO (mean over a request's output tokens), seconds (None: no SLO)."""
    prefix_workload: str = "none"
    """Prefix-sharing stream (docs/prefix_caching.md): ``none``, ``mooncake`` (the bundled Mooncake trace),
    ``jsonl:PATH`` (a trace in that format), ``shared_prefix`` or ``multi_turn``; replaces ``lengths``/``arrival``."""
    prefix_caching: bool = True
    """Reuse cached prefixes on a prefix workload (off: every prompt is prefilled in full)."""
    host_cache_gb: float = 128.0
    """Host-DRAM KV tier per replica, GB (0 = HBM only); default: half of a DGX H100's 256 GB DRAM per GPU."""
    trace_time_scale: float = 1.0
    """Simulated seconds per trace second (0.25 replays the trace 4x faster)."""
    trace_start: int = 0
    """Index of the trace request that opens the scored window of ``num_requests`` requests."""
    trace_lead_in: int = 0
    """Trace requests before the window replayed into the caches only (not simulated, not scored)."""
    trace_windows: int = 1
    """Consecutive windows an episode's seed picks from: episode ``seed`` scores the window opening at
    ``trace_start + (seed % trace_windows) * num_requests`` (1: every episode replays the same window). Training on
    many windows keeps a policy from memorising one slice of the trace."""
    prefix_groups: int = 64
    """``shared_prefix``: number of groups, each with its own system prompt."""
    prefix_tokens: int = 2048
    """``shared_prefix``: tokens of a group's system prompt (the shared prefix)."""
    question_tokens: int = 128
    """``shared_prefix``: tokens of a request's own question; ``multi_turn``: tokens of each new user message."""
    output_tokens: int = 256
    """``shared_prefix``/``multi_turn``: generated tokens per request."""
    group_zipf_theta: float = 0.0
    """``shared_prefix``: group popularity, 0 = uniform, > 0 = Zipf(theta)."""
    sessions: int = 32
    """``multi_turn``: chats per episode; ``num_requests`` turns are dealt among them."""
    think_time_s: float = 5.0
    """``multi_turn``: mean (exponential) time between an answer and the next turn, simulated seconds."""
    load_range: str = ""
    """Training over loads: ``LOW:HIGH`` (fractions of capacity, in (0, 1.5]); each episode draws its load from the
    range, scaling the rate by load / 0.85 (the presets run at 85%). Empty: the workload's own rate."""
    fleets: str = ""
    """Training over fleets: ``SPEC;SPEC`` with SPEC like ``4xh100`` or ``2xh100+2xa100`` (same replica count);
    each episode draws one, its rate scaled by the fleet's summed speed (envs.sim.distribution). Empty: ``devices``."""

    def __post_init__(self) -> None:
        validate(self)

    @property
    def devices(self) -> tuple[str, ...]:
        """The device of each replica."""
        return self.replica_devices or (self.device,) * self.num_replicas

    @property
    def gamma_cv(self) -> float | None:
        return float(self.arrival.split(":", 1)[1]) if self.arrival.startswith("gamma:") else None

    def trace_window_start(self, seed: int) -> int:
        """Index of the first scored trace request of episode ``seed``."""
        return self.trace_start + (seed % self.trace_windows) * self.num_requests

    @property
    def has_prefix(self) -> bool:
        """Requests share prompt prefixes (a ``prefix_workload`` is set), so replicas keep a prefix cache."""
        return self.prefix_workload != "none"

    @property
    def is_trace(self) -> bool:
        """Requests replay a trace (``mooncake`` or ``jsonl:PATH``) with its own arrival times, so ``qps`` is unused
        and an episode is a window of the trace."""
        return self.prefix_workload.split(":", 1)[0] in ("mooncake", "jsonl")

    @property
    def fleet(self) -> str:
        """The replicas by device, e.g. ``2 x h100 + 2 x a100``."""
        return " + ".join(f"{self.devices.count(d)} x {d}" for d in dict.fromkeys(self.devices))

    @property
    def traffic(self) -> str:
        """How requests arrive: the rate, or for a trace its time scale and window."""
        traffic = (
            f"trace time scale {self.trace_time_scale:g} from trace request {self.trace_start}"
            if self.is_trace
            else f"qps {self.qps:g}"
        )
        if self.trace_windows > 1:
            traffic += (
                f" ({self.trace_windows} windows of {self.num_requests} requests, after a {self.trace_lead_in}-request lead-in)"
            )
        return traffic

    def describe(self) -> str:
        """Fleet, model, traffic and episode length in one line (the report's; ``warmroute evaluate`` prints the
        fleet and traffic)."""
        return f"{self.fleet}; {self.model}; {self.traffic}; {self.num_requests} requests per episode"

    @property
    def trace_path(self) -> str | None:
        return self.lengths.split(":", 1)[1] if self.lengths.startswith("trace:") else None

    @property
    def is_distribution(self) -> bool:
        """Episodes draw their load and/or fleet (``load_range``/``fleets`` set): see :meth:`episode_workload`."""
        return bool(self.load_range or self.fleets)

    def episode_setting(self, seed: int) -> tuple[float | None, tuple[str, ...]]:
        """``(load, devices)`` of episode ``seed`` (load None: the workload's own rate); from the seed alone."""
        return episode_setting(self, seed)

    def episode_workload(self, seed: int) -> WorkloadConfig:
        """The concrete workload episode ``seed`` runs: itself, or for a distribution the load and fleet it draws."""
        if not self.is_distribution:
            return self
        load, devices = episode_setting(self, seed)
        return apply_setting(self, load, devices, LOAD_FACTOR)

    def replace(self, **changes: object) -> WorkloadConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["replica_devices"] = list(self.replica_devices)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> WorkloadConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise WorkloadError(f"workload: unknown field(s) {unknown}; known fields: {sorted(known)}")
        values = dict(data)
        values["replica_devices"] = tuple(values.get("replica_devices", ()))
        return cls(**values)


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(values)


def validate(w: WorkloadConfig) -> None:
    """Raise :class:`WorkloadError` with a one-line message naming the offending flag."""
    if w.num_replicas < 1:
        raise WorkloadError(f"{{flag:num_replicas}} must be >= 1 (got {w.num_replicas})")
    if w.model not in MODEL_NAMES:
        raise WorkloadError(f"{{flag:model}}: unknown model '{w.model}'; choose one of: {_choices(MODEL_NAMES)}")
    for device in (w.device, *w.replica_devices):
        if device not in DEVICE_NAMES:
            raise WorkloadError(
                f"{{flag:device}}/{{flag:replica_devices}}: unknown device '{device}'; choose one of: {_choices(DEVICE_NAMES)}"
            )
    if w.replica_devices and len(w.replica_devices) != w.num_replicas:
        raise WorkloadError(
            f"{{flag:replica_devices}} lists {len(w.replica_devices)} devices but {{flag:num_replicas}} is {w.num_replicas}; give one device per replica"
        )
    if w.tensor_parallel_size < 1:
        raise WorkloadError(f"{{flag:tensor_parallel_size}} must be >= 1 (got {w.tensor_parallel_size})")
    if w.replica_scheduler not in REPLICA_SCHEDULERS:
        raise WorkloadError(
            f"{{flag:replica_scheduler}}: unknown '{w.replica_scheduler}'; choose one of: {_choices(REPLICA_SCHEDULERS)}"
        )
    if w.chunk_size < 1:
        raise WorkloadError(f"{{flag:chunk_size}} must be >= 1 (got {w.chunk_size})")
    if not w.qps > 0:
        raise WorkloadError(f"{{flag:qps}} must be > 0 (got {w.qps})")
    if w.arrival != "poisson":
        cv = w.arrival.split(":", 1)[1] if w.arrival.startswith("gamma:") else None
        try:
            ok = cv is not None and float(cv) > 0
        except ValueError:
            ok = False
        if not ok:
            raise WorkloadError(f"{{flag:arrival}} must be 'poisson' or 'gamma:CV' with CV > 0 (got '{w.arrival}')")
    kind = w.lengths.split(":", 1)[0]
    if kind not in LENGTH_KINDS or (kind == "trace") != (":" in w.lengths):
        raise WorkloadError(f"{{flag:lengths}} must be one of fixed, uniform, zipf, trace:PATH (got '{w.lengths}')")
    if w.trace_path is not None:
        _validate_trace(w.trace_path, w.num_requests)
    if not 2 <= w.min_tokens <= w.max_tokens:
        raise WorkloadError(f"{{flag:min_tokens}}/{{flag:max_tokens}} need 2 <= min <= max (got {w.min_tokens}, {w.max_tokens})")
    if not w.prefill_to_decode_ratio > 0:
        raise WorkloadError(f"{{flag:prefill_to_decode_ratio}} must be > 0 (got {w.prefill_to_decode_ratio})")
    if not 0 < w.zipf_theta < 1:
        raise WorkloadError(f"{{flag:zipf_theta}} must be in (0, 1) (got {w.zipf_theta})")
    if w.num_requests < 1:
        raise WorkloadError(f"{{flag:num_requests}} must be >= 1 (got {w.num_requests})")
    if not 0 <= w.seed <= MAX_SEED:
        raise WorkloadError(f"{{flag:seed}} must be in 0..{MAX_SEED} (got {w.seed})")
    if w.predictor not in PREDICTORS:
        raise WorkloadError(f"{{flag:predictor}}: unknown '{w.predictor}'; choose one of: {_choices(PREDICTORS)}")
    _validate_slo_and_memory(w)
    validate_distribution(w)


def _validate_slo_and_memory(w: WorkloadConfig) -> None:
    """SLOs must be positive; every replica's KV cache must hold one max-length request (see envs.sim.memory)."""
    for name, value in (("slo_ttft_s", w.slo_ttft_s), ("slo_tbt_s", w.slo_tbt_s)):
        if value is not None and not value > 0:
            raise WorkloadError(f"{{flag}} must be > 0 seconds (got {value})", field=name)
    if not 0 < w.gpu_memory_utilization <= 1:
        raise WorkloadError(f"{{flag:gpu_memory_utilization}} must be in (0, 1] (got {w.gpu_memory_utilization})")
    for device in dict.fromkeys(w.devices):
        try:
            capacity = kv_capacity_tokens(w, device)
        except AssertionError:  # vidur's ReplicaConfig asserts that TP divides the heads and the hidden size
            raise WorkloadError(
                f"{{flag:tensor_parallel_size}} {w.tensor_parallel_size} does not divide the attention heads of {w.model}; pick a divisor"
            ) from None
        if capacity < w.max_tokens:
            raise WorkloadError(
                f"{{flag:gpu_memory_utilization}} {w.gpu_memory_utilization:g}: a {device} replica of {w.model} at TP "
                f"{w.tensor_parallel_size} holds {max(capacity, 0)} KV tokens, less than one {{flag:max_tokens}} "
                f"{w.max_tokens} request; raise {{flag:gpu_memory_utilization}} or {{flag:tensor_parallel_size}}, or lower {{flag:max_tokens}}"
            )
    _validate_prefix(w)


PREFIX_WORKLOADS: tuple[str, ...] = ("none", "mooncake", "shared_prefix", "multi_turn")


def _validate_prefix(w: WorkloadConfig) -> None:
    """Checks of the prefix-sharing fields (see envs.prefix.workloads)."""
    kind = w.prefix_workload.split(":", 1)[0]
    if kind not in PREFIX_WORKLOADS + ("jsonl",) or (kind == "jsonl") != (":" in w.prefix_workload):
        raise WorkloadError(
            f"{{flag:prefix_workload}} must be one of {_choices(PREFIX_WORKLOADS)} or jsonl:PATH (got '{w.prefix_workload}')"
        )
    if not isinstance(w.prefix_caching, bool):
        raise WorkloadError(f"{{flag:prefix_caching}} must be on or off (got '{w.prefix_caching}')")
    if not w.host_cache_gb >= 0:
        raise WorkloadError(f"{{flag:host_cache_gb}} must be >= 0 (got {w.host_cache_gb})")
    if not w.has_prefix:
        return
    if w.replica_scheduler != "sarathi" or w.predictor != "roofline":
        raise WorkloadError(
            "{flag:prefix_workload} needs {flag:replica_scheduler} sarathi and {flag:predictor} roofline (the cache hooks into both)"
        )
    if w.is_trace:
        _validate_trace_window(w)
    elif kind == "shared_prefix":
        if w.prefix_groups < 1:
            raise WorkloadError(f"{{flag:prefix_groups}} must be >= 1 (got {w.prefix_groups})")
        if w.prefix_tokens < 1:
            raise WorkloadError(f"{{flag:prefix_tokens}} must be >= 1 (got {w.prefix_tokens})")
        if w.question_tokens < 1:
            raise WorkloadError(
                f"{{flag:question_tokens}} must be >= 1 (got {w.question_tokens}): the shared prefix ({{flag:prefix_tokens}} "
                f"{w.prefix_tokens}) must be shorter than the prompt"
            )
        if w.group_zipf_theta < 0:
            raise WorkloadError(f"{{flag:group_zipf_theta}} must be >= 0 (got {w.group_zipf_theta})")
    else:
        if not 1 <= w.sessions <= w.num_requests:
            raise WorkloadError(f"{{flag:sessions}} must be in 1..{{flag:num_requests}} ({w.num_requests}) (got {w.sessions})")
        if w.question_tokens < 1:
            raise WorkloadError(f"{{flag:question_tokens}} must be >= 1 (got {w.question_tokens})")
        if not w.think_time_s >= 0:
            raise WorkloadError(f"{{flag:think_time_s}} must be >= 0 (got {w.think_time_s})")
    if kind in ("shared_prefix", "multi_turn") and w.output_tokens < 1:
        raise WorkloadError(f"{{flag:output_tokens}} must be >= 1 (got {w.output_tokens})")


def _validate_trace_window(w: WorkloadConfig) -> None:
    from envs.prefix.workloads import TraceFormatError, load_trace, trace_file

    if not w.trace_time_scale > 0:
        raise WorkloadError(f"{{flag:trace_time_scale}} must be > 0 (got {w.trace_time_scale})")
    if w.trace_start < 0 or w.trace_lead_in < 0:
        raise WorkloadError(
            f"{{flag:trace_start}} and {{flag:trace_lead_in}} must be >= 0 (got {w.trace_start}, {w.trace_lead_in})"
        )
    if w.trace_lead_in > w.trace_start:
        raise WorkloadError(
            f"{{flag:trace_lead_in}} ({w.trace_lead_in}) must be <= {{flag:trace_start}} ({w.trace_start}): the lead-in precedes the window"
        )
    path = trace_file(w.prefix_workload)
    try:
        rows = load_trace(path)
    except TraceFormatError as exc:
        raise WorkloadError(f"{{flag:prefix_workload}}: {exc.template}") from exc
    if w.trace_windows < 1:
        raise WorkloadError(f"{{flag:trace_windows}} must be >= 1 (got {w.trace_windows})")
    if w.trace_start + w.trace_windows * w.num_requests > len(rows):
        raise WorkloadError(
            f"{{flag:trace_start}} {w.trace_start} + {{flag:trace_windows}} {w.trace_windows} x {{flag:num_requests}} {w.num_requests} "
            f"runs past the end of {path} ({len(rows)} requests); lower one of them"
        )


def _validate_trace(path: str, num_requests: int) -> None:
    """A trace CSV must exist, have the two length columns and at least ``num_requests`` rows."""
    if not os.path.isfile(path):
        raise WorkloadError(
            f"{{flag:lengths}}: trace file '{path}' does not exist; give a CSV with num_prefill_tokens,num_decode_tokens"
        )
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            rows = sum(1 for row in reader if row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise WorkloadError(f"{{flag:lengths}}: cannot read trace file '{path}' ({exc})") from exc
    missing = [c for c in ("num_prefill_tokens", "num_decode_tokens") if c not in header]
    if missing:
        raise WorkloadError(
            f"{{flag:lengths}}: trace file '{path}' lacks column(s) {', '.join(missing)} (header: {', '.join(header) or 'empty'})"
        )
    if rows < num_requests:
        raise WorkloadError(
            f"{{flag:lengths}}: trace file '{path}' has {rows} requests but {{flag:num_requests}} is {num_requests}; lower {{flag:num_requests}}"
        )


# Capacities (requests/s at saturation, least_outstanding routing) measured by scripts/measure_capacity.py;
# presets run at 85% of them. See docs/workloads.md for the table and how to re-measure.
LOAD_FACTOR = 0.85
DEFAULT_PRESET = "default"
# mooncake: capacity 6.24 req/s (session_hash); the held-out tail of the trace (requests 9000+) arrives at
# 3.70 req/s, so a time scale of 3.70 / (0.85 * 6.24) = 0.70 replays it at 85% of capacity.
MOONCAKE_TIME_SCALE = 0.70
# mooncake_mixed (2 x H100 + 2 x A100): capacity 4.41 req/s (least_ttft; the best of the four older routers,
# weighted_scorer, reaches 3.18), so 3.70 / (0.85 * 4.41) = 0.99.
MOONCAKE_MIXED_TIME_SCALE = 0.99
# mooncake_8 (8 x H100): capacity 11.85 req/s (session_hash), so 3.70 / (0.85 * 11.85) = 0.367.
MOONCAKE_8_TIME_SCALE = 0.367
# mooncake_16 (16 x H100): capacity 23.73 req/s (least_ttft), so 3.70 / (0.85 * 23.73) = 0.183.
MOONCAKE_16_TIME_SCALE = 0.183
SHARED_PREFIX_QPS = 30.1  # 0.85 x 35.41 (session_hash)
SHARED_PREFIX_MIXED_QPS = 15.2  # 0.85 x 17.93 (session_hash)
MULTI_TURN_QPS = 106.0  # 0.85 x 124.7 (weighted_scorer, 2-turn flood; see scripts/measure_capacity.py)
PRESETS: dict[str, WorkloadConfig] = {
    DEFAULT_PRESET: WorkloadConfig(name=DEFAULT_PRESET),
    "heterogeneous": WorkloadConfig(name="heterogeneous", replica_devices=("h100", "h100", "a100", "a100"), qps=32.2),
    "bursty": WorkloadConfig(name="bursty", arrival="gamma:3", qps=43.5),
    # Llama-2-7B's shape (no GQA: 0.5 MB of KV per token) stands in for a 32k-context MHA model such as
    # LLaMA-2-7B-32K; heavy-tailed prompts up to 32k tokens. SLOs from idle single-request latencies (docs/memory_and_slo.md).
    "long_context": WorkloadConfig(
        name="long_context",
        model="meta-llama/Llama-2-7b-hf",
        lengths="zipf",
        min_tokens=256,
        max_tokens=32768,
        zipf_theta=0.9,
        prefill_to_decode_ratio=15.0,
        qps=2.39,
        slo_ttft_s=0.5,
        slo_tbt_s=0.025,
    ),
    # Prefix-sharing presets (docs/prefix_caching.md): rates are 85% of the capacity measured with the best
    # cache-aware router. mooncake's scored window is in the held-out tail of the trace (requests 9000+).
    "mooncake": WorkloadConfig(
        name="mooncake", prefix_workload="mooncake", trace_start=10000, trace_lead_in=2000, trace_time_scale=MOONCAKE_TIME_SCALE
    ),
    "shared_prefix": WorkloadConfig(
        name="shared_prefix",
        prefix_workload="shared_prefix",
        qps=SHARED_PREFIX_QPS,
        prefix_groups=256,
        prefix_tokens=4096,
        question_tokens=128,
        output_tokens=256,
    ),
    "multi_turn": WorkloadConfig(
        name="multi_turn",
        prefix_workload="multi_turn",
        qps=MULTI_TURN_QPS,
        sessions=128,
        question_tokens=256,
        output_tokens=256,
        think_time_s=1.0,
    ),
}
PRESETS["shared_prefix_mixed"] = PRESETS["shared_prefix"].replace(
    name="shared_prefix_mixed", replica_devices=("h100", "h100", "a100", "a100"), qps=SHARED_PREFIX_MIXED_QPS
)
PRESETS["mooncake_mixed"] = PRESETS["mooncake"].replace(
    name="mooncake_mixed", replica_devices=("h100", "h100", "a100", "a100"), trace_time_scale=MOONCAKE_MIXED_TIME_SCALE
)
# Larger fleets replay the trace faster. Their windows hold 1000 requests (62 per replica on 16 replicas): the
# held-out windows 9000/10000/11000 still do not overlap, and training windows from 2000 end before 9000.
LARGE_FLEET_REQUESTS = 1000
PRESETS["mooncake_8"] = PRESETS["mooncake"].replace(
    name="mooncake_8", num_replicas=8, num_requests=LARGE_FLEET_REQUESTS, trace_time_scale=MOONCAKE_8_TIME_SCALE
)
PRESETS["mooncake_16"] = PRESETS["mooncake"].replace(
    name="mooncake_16", num_replicas=16, num_requests=LARGE_FLEET_REQUESTS, trace_time_scale=MOONCAKE_16_TIME_SCALE
)


def preset(name: str) -> WorkloadConfig:
    """Return the named preset, or raise a one-line error listing the presets."""
    if name not in PRESETS:
        raise WorkloadError(f"{{flag:workload}}: unknown preset '{name}'; choose one of: {_choices(tuple(PRESETS))}")
    return PRESETS[name]
