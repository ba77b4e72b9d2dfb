"""Gymnasium env in which the agent is vidur's global scheduler: one decision per arriving request.

The env steps vidur's event heap itself (the loop of ``Simulator.run()``) and pauses whenever the next event is a
``GlobalScheduleEvent`` with requests waiting: each waiting request, oldest first, is one ``step``. The chosen
replica gets the request at once (so the next observation sees it), and once the queue is empty the event's
``ReplicaScheduleEvent``\\ s are created exactly as vidur's own handler would, so routing a request the way a vidur
scheduler would reproduces vidur's per-request latencies (to 1e-9 s in tests/test_fidelity.py).

Reward (dense, see docs/environment.md): ``-(1/reward_scale_s) * integral of N(t) dt`` between consecutive
decisions, where N(t) is the number of requests in the system (``e2e``) or still waiting for their first token
(``ttft``); the tail after the last decision is drained into the last step. By Little's law the episode return is
exactly ``-sum(latency) / reward_scale_s``, so every action's effect on every request it delays is counted.
``slo`` instead pays each request for meeting its TTFT/TBT SLOs (``envs.sim.slo``): the episode return is the number
of requests that met them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from vidur.config import CacheConfig, ReplicaConfig
from vidur.events.batch_end_event import BatchEndEvent
from vidur.events.global_schedule_event import GlobalScheduleEvent
from vidur.events.replica_schedule_event import ReplicaScheduleEvent
from vidur.events.request_arrival_event import RequestArrivalEvent

from envs.errors import WarmRouteError
from envs.observation import REPLICA_FEATURE_INDEX, REQUEST_FEATURE_INDEX, ObservationLayout
from envs.prefix.sim import PrefixRooflineConfig, PrefixRooflinePredictor, prefix_observation
from envs.sim.distribution import fleet_spec
from envs.sim.fast_forward import FAST_FORWARD_PREDICTORS, FastForward
from envs.sim.memory import KVUsage
from envs.sim.metrics import episode_metrics
from envs.sim.predictor import relative_device_speeds
from envs.sim.simulation import new_simulator
from envs.sim.slo import SloReward
from envs.sim.workload import DEFAULT_PRESET, WorkloadConfig, preset

REWARDS = ("e2e", "ttft", "slo")
# Training episodes draw request seeds below this; evaluation uses seeds from it upwards (held out).
HELD_OUT_SEED_BASE = 2**31


@dataclass(frozen=True)
class VidurEnvConfig:
    """Everything that defines the routing env; JSON-serialisable through ``to_dict``."""

    workload: WorkloadConfig = field(default_factory=lambda: preset(DEFAULT_PRESET))
    """Cluster and traffic (see envs.sim.workload)."""
    reward: str = "e2e"
    """``e2e``: minus summed end-to-end latency; ``ttft``: minus summed time to first token; ``slo``: requests
    that met the workload's SLOs (``slo_ttft_s``/``slo_tbt_s``)."""
    reward_scale_s: float = 1.0
    """Seconds of latency per unit of reward (episode return = -sum(latency) / reward_scale_s)."""
    oracle: bool = False
    """Observe the pending request's decode length (unknown to a real router: off by default)."""
    fast_forward: bool | None = None
    """Advance runs of iterations between decisions in one step, exactly (``envs.sim.fast_forward``). None: on
    with the roofline predictor, off with vidur's profiled ones; True: on (refused for those); False: off."""

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise WarmRouteError(f"{{flag:reward}} must be one of {', '.join(REWARDS)} (got '{self.reward}')")
        if not self.reward_scale_s > 0:
            raise WarmRouteError(f"{{flag:reward_scale_s}} must be > 0 (got {self.reward_scale_s})")
        if self.reward == "slo":
            SloReward(self.workload.slo_ttft_s, self.workload.slo_tbt_s)  # raises without an SLO
        if self.fast_forward and self.workload.predictor not in FAST_FORWARD_PREDICTORS:
            raise WarmRouteError(
                f"{{flag:fast_forward}} on needs {{flag:predictor}} roofline: fast-forward prices iterations from the batch shape, "
                f"which vidur's {self.workload.predictor} predictor does not expose; use {{flag:fast_forward}} auto or off"
            )

    @property
    def uses_fast_forward(self) -> bool:
        """Whether episodes are fast-forwarded (resolves the None default)."""
        return self.fast_forward if self.fast_forward is not None else self.workload.predictor in FAST_FORWARD_PREDICTORS

    @property
    def layout(self) -> ObservationLayout:
        return ObservationLayout(num_replicas=self.workload.num_replicas, oracle=self.oracle)

    def to_dict(self) -> dict:
        return {
            "workload": self.workload.to_dict(),
            "reward": self.reward,
            "reward_scale_s": self.reward_scale_s,
            "oracle": self.oracle,
            "fast_forward": self.fast_forward,
        }

    @classmethod
    def from_dict(cls, data: dict) -> VidurEnvConfig:
        workload = data.get("workload", {})
        if not isinstance(workload, WorkloadConfig):
            workload = WorkloadConfig.from_dict(workload)
        return cls(
            workload=workload,
            reward=data.get("reward", "e2e"),
            reward_scale_s=float(data.get("reward_scale_s", 1.0)),
            oracle=bool(data.get("oracle", False)),
            fast_forward=data.get("fast_forward"),
        )


class VidurRoutingEnv(gym.Env):
    """Route each arriving request to one of ``num_replicas`` replicas of a vidur-simulated cluster.

    ``config`` is a :class:`VidurEnvConfig` or its dict form (RLlib passes an ``EnvContext`` whose
    ``worker_index``/``vector_index`` decorrelate the seed streams of parallel env copies).
    """

    metadata = {"render_modes": []}

    def __init__(self, config: VidurEnvConfig | dict | None = None) -> None:
        worker = int(getattr(config, "worker_index", 0))
        vector = int(getattr(config, "vector_index", 0))
        if config is None:
            config = VidurEnvConfig()
        elif not isinstance(config, VidurEnvConfig):
            config = VidurEnvConfig.from_dict(config)
        self.config = config
        self.workload = config.workload
        self.layout = config.layout
        num_replicas = self.workload.num_replicas
        self.action_space = gym.spaces.Discrete(num_replicas)
        self.observation_space = gym.spaces.Box(0.0, np.inf, shape=(self.layout.dim,), dtype=np.float32)
        self._fleet_devices: dict[tuple[str, ...], np.ndarray] = {}
        self._device = self._fleet_features(self.workload.devices)
        self._worker, self._vector = worker, vector
        self._seed_stream = np.random.default_rng([self.workload.seed, worker, vector])
        self._sim = None

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._seed_stream = np.random.default_rng([seed, self._worker, self._vector])
            self.episode_seed = int(seed)
        else:
            self.episode_seed = int(self._seed_stream.integers(HELD_OUT_SEED_BASE))
        episode = self.workload.episode_workload(self.episode_seed)
        load, _ = self.workload.episode_setting(self.episode_seed)
        self._setting: dict[str, Any] = {"episode_fleet": fleet_spec(episode.devices)}
        if load is not None:  # drawn from the workload's load_range (else the workload's own rate)
            self._setting["episode_load"] = load
        self._device = self._fleet_features(episode.devices)
        self._sim = new_simulator(episode, self.episode_seed)
        scheduler = self._sim.scheduler
        self._replica_ids = sorted(scheduler._replica_schedulers, key=lambda rid: rid.id)
        self._replica_schedulers = [scheduler.get_replica_scheduler(rid) for rid in self._replica_ids]
        self._num_blocks = [rs._cache_config.num_blocks for rs in self._replica_schedulers]
        self._outstanding: list[dict[int, Any]] = [{} for _ in self._replica_ids]
        self._replica_of: dict[int, int] = {}
        self._routed: list[Any] = []
        self._actions = np.zeros(self.workload.num_replicas, dtype=np.int64)
        self._last_action = -1
        self._current_event: GlobalScheduleEvent | None = None
        self._time = 0.0
        self._in_system = 0
        self._awaiting_first_token = 0
        self._first_token_seen: set[int] = set()
        self._area = 0.0
        self._kv = KVUsage(self._replica_schedulers, self._num_blocks)
        self._replica_index = {rid: i for i, rid in enumerate(self._replica_ids)}
        self._fast = FastForward(self._sim, self._replica_schedulers, self._kv) if self.config.uses_fast_forward else None
        self._slo = SloReward(self.workload.slo_ttft_s, self.workload.slo_tbt_s) if self.config.reward == "slo" else None
        self._done = False
        self._advance_to_decision()
        return self._observation(), {"episode_seed": self.episode_seed, **self._setting}

    def _fleet_features(self, devices: tuple[str, ...]) -> np.ndarray:
        """:func:`device_features` of ``devices``, computed once per fleet (episodes may draw their fleet)."""
        if devices not in self._fleet_devices:
            w = self.workload
            self._fleet_devices[devices] = device_features(w.model, devices, w.tensor_parallel_size)
        return self._fleet_devices[devices]

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._sim is None or self._done:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset()")
        if not self.action_space.contains(int(action)):
            raise ValueError(
                f"action {action!r} out of range for Discrete({self.workload.num_replicas}): pick a replica 0..{self.workload.num_replicas - 1}"
            )
        self._route(int(action))
        self._area = 0.0
        if self._current_event is None:  # else more requests arrived at this instant: no time passes
            self._advance_to_decision()
        reward = self._area if self._slo is not None else -self._area / self.config.reward_scale_s
        info: dict[str, Any] = dict(self._setting)  # every step says which load and fleet its episode drew
        if self._done:
            info = episode_metrics(self._routed, self._actions, self.workload.slo_ttft_s, self.workload.slo_tbt_s)
            info.update(self._kv.summary())
            info["episode_seed"] = self.episode_seed
        return self._observation(), reward, self._done, False, info

    @property
    def routed_requests(self) -> list[Any]:
        """vidur ``Request`` objects routed so far this episode, in routing order."""
        return self._routed

    # ------------------------------------------------------------------ simulation
    def _route(self, index: int) -> None:
        """Hand the oldest waiting request to replica ``index`` (what vidur's GlobalScheduleEvent does per request)."""
        queue = self._sim.scheduler._request_queue
        request = queue.pop(0)
        replica_id = self._replica_ids[index]
        self._replica_schedulers[index].add_request(request)
        self._current_event._request_mapping.append((replica_id, request))
        self._outstanding[index][request.id] = request
        self._replica_of[request.id] = index
        # the hit the router saw on this replica (taken at admission): counted off its pending prefill meanwhile
        request.routed_hit_tokens = int(self._replica_raw[index, _HBM] + self._replica_raw[index, _HOST])
        self._routed.append(request)
        self._actions[index] += 1
        self._last_action = index
        if not queue:
            self._finish_global_schedule()

    def _finish_global_schedule(self) -> None:
        """Pop the paused GlobalScheduleEvent and emit its ReplicaScheduleEvents in vidur's order."""
        event = self._current_event
        heapq.heappop(self._sim._event_queue)
        event._replica_set = set()
        for replica_id, _ in event._request_mapping:
            event._replica_set.add(replica_id)
        self._sim._add_events([ReplicaScheduleEvent(event.time, rid) for rid in event._replica_set])
        self._current_event = None

    def _advance_to_decision(self) -> None:
        """Run events until a request waits for routing, or to the end of the episode (integrating the reward:
        ``area`` is the latency integral, or for ``slo`` the SLO payments of the requests decided meanwhile).

        This is ``Simulator.run()``'s loop (vidur sets no time limit here) with the env's book-keeping inlined:
        it runs for every simulated event, so it avoids attribute lookups and calls where it can.
        """
        sim = self._sim
        heap = sim._event_queue
        queue = sim.scheduler._request_queue
        scheduler, metric_store = sim.scheduler, sim.metric_store
        slo = self._slo
        ttft = self.config.reward == "ttft" or slo is not None
        now, area = self._time, self._area
        fast, replica_index = self._fast, self._replica_index
        in_system, awaiting = self._in_system, self._awaiting_first_token
        while heap:
            event = heap[0][1]
            counted = 0 if slo is not None else awaiting if ttft else in_system
            if queue and self._current_event is None and type(event) is GlobalScheduleEvent:
                scheduler.sort_requests()
                event._replica_set = []
                event._request_mapping = []
                self._current_event = event
                area += counted * (event._time - now)
                now = event._time
                break
            heapq.heappop(heap)
            area += counted * (event._time - now)
            now = sim._time = event._time
            kind = type(event)
            if kind is ReplicaScheduleEvent and fast is not None:
                run = fast.on_replica_schedule(event)
                if run is not None:  # advanced in one step: book its first tokens and completions at their times
                    for at, request in run.first_tokens:
                        if ttft and request._id not in self._first_token_seen:
                            self._first_token_seen.add(request._id)
                            awaiting -= 1
                            area += slo.on_first_token(request) if slo is not None else at - now
                    for at, request in run.completions:
                        in_system -= 1
                        self._outstanding[self._replica_of[request._id]].pop(request._id, None)
                        if slo is not None:
                            area += slo.on_completion(request)
                        elif not ttft:
                            area += at - now
                    if run.handled:
                        continue
            for new_event in event.handle_event(scheduler, metric_store):
                heapq.heappush(heap, (new_event._priority_number, new_event))
            if kind is RequestArrivalEvent:
                in_system += 1
                awaiting += 1
            elif kind is ReplicaScheduleEvent:
                self._kv.record(replica_index[event._replica_id], now)
            elif kind is BatchEndEvent:
                self._kv.record(replica_index[event._replica_id], now)
                for request in event._batch._requests:
                    if ttft and request._is_prefill_complete and request._id not in self._first_token_seen:
                        self._first_token_seen.add(request._id)
                        awaiting -= 1
                        if slo is not None:
                            area += slo.on_first_token(request)
                    if request._completed:
                        in_system -= 1
                        self._outstanding[self._replica_of[request._id]].pop(request._id, None)
                        if slo is not None:
                            area += slo.on_completion(request)
        else:
            self._done = True
        self._time, self._area = now, area
        self._in_system, self._awaiting_first_token = in_system, awaiting

    # ------------------------------------------------------------------ observation
    def _observation(self) -> np.ndarray:
        layout = self.layout
        replica_raw = load_features(
            self._replica_schedulers, self._outstanding, self._num_blocks, self._device, self._last_action
        )
        queue = self._sim.scheduler._request_queue
        request_raw = np.zeros(layout.num_request_features)
        if queue and not self._done:
            request_raw[0] = queue[0].num_prefill_tokens
            if layout.oracle:
                request_raw[_ORACLE] = queue[0].num_decode_tokens
            if hasattr(queue[0], "prefix"):
                request_raw[_AFFINITY] = prefix_observation(self._replica_schedulers, queue[0].prefix, replica_raw[:, _CACHE])
        self._replica_raw = replica_raw
        return layout.build(replica_raw, request_raw)


def device_features(model: str, devices: tuple[str, ...], tensor_parallel_size: int = 1) -> np.ndarray:
    """Per replica ``(relative_speed, prefill_s_per_token, host_load_s_per_token)``, priced by the roofline.

    The prefill price is one 512-token chunk at 4k tokens of context (the trace's typical suffix on a cached
    prefix) divided by 512; the host price is the host-tier load of one token's KV over the device's host link.
    """
    replica = ReplicaConfig(model_name=model, device=devices[0], tensor_parallel_size=tensor_parallel_size, num_pipeline_stages=1)
    predictor = PrefixRooflinePredictor(PrefixRooflineConfig(), replica, CacheConfig())
    prefill = [predictor.stage_time_ms(d, (PRICE_CHUNK,), (PRICE_CONTEXT,)) / 1000 / PRICE_CHUNK for d in devices]
    host = [predictor.host_load_ms(d, 1) / 1000 for d in devices]
    speeds = relative_device_speeds(model, devices, tensor_parallel_size)
    return np.column_stack([speeds, prefill, host])


PRICE_CHUNK, PRICE_CONTEXT = 512, 4096


def load_features(
    schedulers: list[Any],
    outstanding: list[dict[int, Any]],
    num_blocks: list[int],
    device: np.ndarray,
    last_routed: int,
    queued_extra: list[int] | None = None,
) -> np.ndarray:
    """Raw ``(R, F)`` replica features read from vidur's replica schedulers (the prefix-cache columns stay 0).

    Shared by the env and the deployable vidur global scheduler (``warmroute.deploy.vidur_scheduler``), so both observe
    exactly the same numbers. ``outstanding[i]``: requests routed to replica ``i`` and not finished;
    ``device``: :func:`device_features`; ``queued_extra[i]``: requests routed to it that vidur has not yet put in
    its queue. A request not yet admitted counts its prompt minus the hit the router saw when routing it
    (``routed_hit_tokens``, set by the env) as uncached prefill.
    """
    replica_raw = np.zeros((len(schedulers), len(REPLICA_FEATURE_INDEX)))
    for i, rs in enumerate(schedulers):
        replica_raw[i, _OUT] = len(outstanding[i])
        replica_raw[i, _QUEUED] = rs.num_pending_requests + (queued_extra[i] if queued_extra else 0)
        replica_raw[i, _RUNNING] = len(rs._allocation_map)
        pending = uncached = 0
        for r in outstanding[i].values():
            left = r._num_prefill_tokens - r._num_processed_tokens
            if left > 0:
                pending += left
                uncached += r._num_prefill_tokens - max(r._num_processed_tokens, getattr(r, "routed_hit_tokens", 0))
        replica_raw[i, _PREFILL] = pending
        replica_raw[i, _UNCACHED] = uncached
        replica_raw[i, _KV] = rs.num_allocated_blocks / num_blocks[i]
        replica_raw[i, _ACTIVE] = rs.num_allocated_blocks * rs._cache_config.block_size
    replica_raw[:, [_SPEED, _PRICE, _HOST_PRICE]] = device
    if last_routed >= 0:
        replica_raw[last_routed, _LAST] = 1.0
    return replica_raw


_OUT = REPLICA_FEATURE_INDEX["outstanding_requests"]
_QUEUED = REPLICA_FEATURE_INDEX["queued_requests"]
_RUNNING = REPLICA_FEATURE_INDEX["running_requests"]
_PREFILL = REPLICA_FEATURE_INDEX["pending_prefill_tokens"]
_KV = REPLICA_FEATURE_INDEX["kv_cache_usage"]
_SPEED = REPLICA_FEATURE_INDEX["relative_speed"]
_LAST = REPLICA_FEATURE_INDEX["last_routed"]
_UNCACHED = REPLICA_FEATURE_INDEX["pending_uncached_prefill_tokens"]
_ACTIVE = REPLICA_FEATURE_INDEX["active_kv_tokens"]
_PRICE = REPLICA_FEATURE_INDEX["prefill_s_per_token"]
_HOST_PRICE = REPLICA_FEATURE_INDEX["host_load_s_per_token"]
_HBM = REPLICA_FEATURE_INDEX["cached_hbm_tokens"]
_HOST = REPLICA_FEATURE_INDEX["cached_host_tokens"]
_CACHE = slice(_HBM, REPLICA_FEATURE_INDEX["host_cache_fill"] + 1)
_AFFINITY = REQUEST_FEATURE_INDEX["affinity_key"]
_ORACLE = len(REQUEST_FEATURE_INDEX)

ENV_ID = "WarmRoute/VidurRouting-v0"
"""Gymnasium id of :class:`VidurRoutingEnv` (``gym.make(ENV_ID, config=VidurEnvConfig(...))``)."""

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="envs.vidur_env:VidurRoutingEnv")
