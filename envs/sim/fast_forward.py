"""Fast-forward: advance a sarathi replica through many iterations in one step, with exactly vidur's outcome.

Between two routing decisions most of vidur's work is iterations of a replica whose running set only progresses:
decodes add one token each, chunked prefills take the chunk budget left over, requests finish. With no arrival
before the next decision, that progression is fully determined by sarathi's rules, so :class:`FastForward` plays
it out directly when the env meets a ``ReplicaScheduleEvent`` of an idle replica: per iteration it forms the batch
sarathi would form, prices it from its aggregate shape (``RooflineExecutionTimePredictor.layer_times_from_sums``,
assembled into vidur's own ``ExecutionTime`` so every time is bit-identical), applies block growth, completions,
first tokens and the prefix cache's book-keeping, and defers each decode's per-iteration request fields to one
exact update (sequential sums, so even ``execution_time`` matches). It then hands the replica back to vidur with a
``ReplicaScheduleEvent`` at the end of the last advanced iteration; vidur forms the next batch itself.

An iteration is advanced only if it provably equals step-by-step simulation, otherwise vidur runs it:

* it ends strictly before the next arrival (and, for multi-turn streams, before any follow-up turn another
  replica could inject), so no decision observes a replica ahead of time;
* no request could be admitted from the replica's queue (sarathi's admission test, evaluated without side
  effects; a queued prefix request whose cache hit is not yet taken stops the run) and, with a queue, the run
  ends at the first completion (it frees memory);
* every decode's block growth fits with a block to spare (no preemption can occur);
* the replica is plain sarathi or the prefix-caching sarathi, one pipeline stage, at most one micro-batch of
  running requests, and the predictor is the roofline (vidur's profiled predictors are stepped: see
  ``FAST_FORWARD_PREDICTORS``).

Ties at exactly equal float times between an arrival and a batch end are ordered by vidur's event ids, which differ
when fewer events are created; the horizon test is strict, so an arrival at the very end of an iteration leaves
that iteration to vidur.
"""

from __future__ import annotations

import functools
import heapq
import math
import operator
from dataclasses import dataclass, field
from typing import Any

from vidur.events.replica_schedule_event import ReplicaScheduleEvent
from vidur.events.request_arrival_event import RequestArrivalEvent
from vidur.scheduler.replica_scheduler.sarathi_replica_scheduler import SarathiReplicaScheduler

from envs.prefix.sim import PrefixSarathiScheduler
from envs.sim.memory import KVUsage
from envs.sim.predictor import RooflineExecutionTimePredictor, causal_pairs

FAST_FORWARD_PREDICTORS = ("roofline",)
"""Predictors fast-forward supports: it prices iterations from their aggregate shape, which only the roofline has."""
_SCHEDULERS = (SarathiReplicaScheduler, PrefixSarathiScheduler)


@dataclass
class Run:
    """What an advanced run did that the env's book-keeping needs, in processing order."""

    first_tokens: list[tuple[float, Any]] = field(default_factory=list)
    completions: list[tuple[float, Any]] = field(default_factory=list)
    handled: bool = True
    """False: vidur must still handle the schedule event (after the env books this run)."""


BUSY = Run()
"""A schedule event of a replica inside an advanced run: a no-op, as it would find the replica busy."""


class FastForward:
    """Per-episode controller; the env calls :meth:`on_replica_schedule` for each ``ReplicaScheduleEvent``."""

    def __init__(self, sim: Any, schedulers: list[Any], kv: KVUsage) -> None:
        self._heap = sim._event_queue
        self._schedulers = schedulers
        self._kv = kv
        self._index = {rs._replica_id: i for i, rs in enumerate(schedulers)}
        self._arrivals = [event._time for _, event in self._heap if type(event) is RequestArrivalEvent]
        heapq.heapify(self._arrivals)
        self._handoff: list[Any] = [None] * len(schedulers)
        self._until: list[float] = [0.0] * len(schedulers)
        self._running: list[_Advance | None] = [None] * len(schedulers)
        predictor = schedulers[0]._execution_time_predictor
        self._predictor = predictor if isinstance(predictor, RooflineExecutionTimePredictor) else None
        self._devices = [self._predictor.device_for(rs._replica_id) for rs in schedulers] if self._predictor else []
        self._min_think: float | None = None
        if any(isinstance(rs, PrefixSarathiScheduler) and rs._config.cache_on_schedule for rs in schedulers):
            self._predictor = None  # it caches blocks when vidur's own batch path schedules them: vidur steps
        for rs in schedulers:
            if isinstance(rs, PrefixSarathiScheduler):
                rs.arrival_times = self._arrivals
                gaps = [rs._stream[s.next_turn].arrival_s for s in rs._stream if s.next_turn >= 0]
                if gaps:
                    self._min_think = min(gaps)

    def on_replica_schedule(self, event: ReplicaScheduleEvent) -> Run | None:
        """Advance the event's replica if possible: the run (or ``BUSY``), or None to let vidur handle the event."""
        index = self._index[event._replica_id]
        handoff = self._handoff[index]
        if handoff is None:
            return None if self._predictor is None else self._advance(index, event._time)
        if event is not handoff:
            return BUSY
        self._handoff[index] = None
        started = self._running[index]
        if started is None:  # the run ended before this event: nothing in flight
            return self._advance(index, event._time)
        self._running[index] = None
        ended = started.finish()
        run = self._advance(index, event._time)
        if run is None:  # vidur forms the next batch: the event is handled as usual after the ended iteration
            ended.handled = False
            return ended
        run.first_tokens[:0] = ended.first_tokens
        run.completions[:0] = ended.completions
        return run

    # ------------------------------------------------------------------ planning and applying, iteration by iteration
    def _horizon(self, index: int, now: float) -> float:
        arrivals = self._arrivals
        while arrivals and arrivals[0] < now:
            heapq.heappop(arrivals)
        horizon = arrivals[0] if arrivals else math.inf
        if self._min_think is not None:  # another replica may finish a turn and inject its follow-up
            for other, rs in enumerate(self._schedulers):
                if other == index:
                    continue
                busy_until = self._until[other] if self._handoff[other] is not None else now
                if not (
                    rs._num_running_batches or self._handoff[other] is not None or rs._preempted_requests or rs._request_queue
                ):
                    continue  # holds no request: it finishes nothing before the next decision
                horizon = min(horizon, busy_until + self._min_think)
        return horizon

    def _advance(self, index: int, now: float) -> Run | None:
        rs = self._schedulers[index]
        running = rs._preempted_requests
        if (
            type(rs) not in _SCHEDULERS
            or rs._num_running_batches
            or rs._num_running_stages
            or rs._num_stages != 1
            or rs.is_sequence_pipeline_parallel_enabled
            or not running
            or len(running) > rs._max_micro_batch_size
        ):
            return None
        for request in running:
            if (
                request._num_stage_processed_tokens != request._num_processed_tokens
                or getattr(request, "host_tokens_to_load", 0)
                or not request._scheduled
            ):
                return None
        horizon = self._horizon(index, now)
        return _Advance(self, index, rs, now, horizon).play()


class _Advance:
    """One run of one replica; mutates vidur's state as each iteration is accepted."""

    def __init__(self, owner: FastForward, index: int, rs: Any, now: float, horizon: float) -> None:
        self.owner, self.index, self.rs, self.now, self.horizon = owner, index, rs, now, horizon
        self.block = rs._cache_config.block_size
        self.caching = isinstance(rs, PrefixSarathiScheduler) and rs._caching
        self.prefix = isinstance(rs, PrefixSarathiScheduler)
        self.chunk = rs._config.chunk_size
        self.decodes: list[Any] = []
        self.prefills: list[Any] = []
        for request in rs._preempted_requests:
            (self.decodes if request._is_prefill_complete else self.prefills).append(request)
        self.start: dict[int, int] = {}  # decode request id -> first deferred iteration
        self.base: dict[int, int] = {}  # decode request id -> processed tokens at that iteration
        self.done_at: dict[int, list[Any]] = {}
        self.grow_at: dict[int, list[Any]] = {}
        self.decode_context = 0
        for request in self.decodes:
            self._defer(request, 0)
        self.starts: list[float] = []
        self.totals: list[float] = []
        self.models: list[float] = []
        self.ends: list[float] = []
        self.run = Run()
        self.pending: tuple[int, float, list, list] | None = None  # started iteration: (j, end, chunks, skipped)
        self.iterations = 0  # ended iterations
        self.last_order: tuple[list, int, list] = ([], 0, [])
        # the cache's pinned loose blocks change only when requests prefill or finish (``fit`` evicts unpinned
        # blocks only), so they are read again only then; ``fit`` is idempotent until then
        self.blocked = rs._blocked_by_cache() if self.caching else 0
        self.fitted = False

    def _defer(self, request: Any, j: int) -> None:
        """From iteration ``j`` on, ``request`` decodes one token per iteration until it completes."""
        rid, processed = request._id, request._num_processed_tokens
        self.start[rid], self.base[rid] = j, processed
        self.decode_context += processed + 1
        self.done_at.setdefault(j + request.total_tokens - processed - 1, []).append(request)
        reserved = self._reserved_blocks(request) * self.block
        self.grow_at.setdefault(j + max(0, reserved + 1 - processed), []).append(request)

    def _reserved_blocks(self, request: Any) -> int:
        blocks = self.rs._allocation_map[request._id]
        return blocks + self.rs._resident.get(request._id, 0) if self.caching else blocks

    def _admits_head(self, allocated: int, batch_size: int, total_q: int) -> bool | None:
        """Would sarathi admit the queue head now? None: the test has a side effect (prefix hit not yet taken)."""
        rs = self.rs
        if len(rs._allocation_map) == rs._config.batch_size_cap or batch_size == rs._max_micro_batch_size:
            return False
        head = rs._request_queue[0]
        free = rs._cache_config.num_blocks - allocated - self.blocked
        need = math.ceil(head._num_prefill_tokens / self.block)
        if self.caching:
            if head._id not in rs._hit_taken and head._id not in rs._allocation_map:
                return None
            need -= rs._resident.get(head._id, 0)
        if free - need < rs._watermark_blocks:
            return False
        return min(head._num_prefill_tokens - head._num_processed_tokens, self.chunk - total_q) > 0

    def play(self) -> Run | None:
        """Accept iterations while they provably match vidur; the one that crosses the horizon is started (its
        batch is formed before the decision, as in vidur) and finished by :meth:`finish` at its end."""
        rs, owner = self.rs, self.owner
        j, s = 0, self.now
        while self.decodes or self.prefills:
            # ---- form iteration j as sarathi would: decodes (1 token each), then prefill chunks in order
            total_q = len(self.decodes)
            chunks: list[tuple[Any, int]] = []
            skipped: list[Any] = []
            for request in self.prefills:
                q = max(0, min(request._num_prefill_tokens - request._num_processed_tokens, self.chunk - total_q))
                if q == 0:
                    skipped.append(request)
                else:
                    total_q += q
                    chunks.append((request, q))
            growing = [r for r in self.grow_at.get(j, ()) if not r._completed and r._id in self.start]
            allocated = rs._num_allocated_blocks + len(growing)
            if rs._cache_config.num_blocks - allocated - self.blocked < 1:
                break  # a decode might find no free block: vidur decides the preemption
            if rs._request_queue:
                admits = self._admits_head(allocated, len(self.decodes) + len(chunks), total_q)
                if admits is None or admits:
                    break
            # ---- price it
            decode_requests, decode_context = len(self.decodes), self.decode_context
            prefill_q = prefill_kv = prefill_pairs = 0
            for request, q in chunks:
                kv = request._num_processed_tokens + q
                if q == 1:
                    decode_requests += 1
                    decode_context += kv
                else:
                    prefill_q += q
                    prefill_kv += kv
                    prefill_pairs += causal_pairs(q, kv)
            total, model = owner._predictor.stage_times_from_sums(
                owner._devices[self.index], total_q, decode_requests, decode_context, prefill_q, prefill_kv, prefill_pairs
            )
            t = s + total
            # ---- accept it: schedule-time effects
            for request in growing:
                rs.allocate(request._id, 1)
                self.grow_at.setdefault(j + self.block, []).append(request)
            self.grow_at.pop(j, None)
            if self.caching and growing:
                rs._fit()
            owner._kv.record_blocks(self.index, s, rs._num_allocated_blocks)
            self.starts.append(s)
            self.totals.append(total)
            self.models.append(model)
            self.ends.append(t)
            for request, _ in chunks:
                request.on_batch_schedule(s)
                request.on_batch_stage_schedule(s)
            self.pending = (j, t, chunks, skipped)
            if not t < self.horizon:
                break  # a decision comes first: the iteration runs on, finish() ends it
            if not self._end_iteration() and rs._request_queue:
                break  # freed memory may admit the queue head: vidur decides
            j, s = j + 1, t
            if owner._arrivals:
                self.horizon = min(self.horizon, owner._arrivals[0])
        if self.pending is None:
            if self.iterations == 0:
                return None
            self._hand_back()
        owner._handoff[self.index] = handoff = ReplicaScheduleEvent(self.ends[-1], rs._replica_id)
        heapq.heappush(owner._heap, (handoff._priority_number, handoff))
        owner._until[self.index] = handoff._time
        owner._running[self.index] = self if self.pending is not None else None
        return self.run

    def finish(self) -> Run:
        """End the started iteration (at its end time, the current event's) and give the replica back to vidur."""
        self.run = Run()  # the run returned by play() has been booked already
        self._end_iteration()
        self._hand_back()
        return self.run

    def _end_iteration(self) -> bool:
        """End-of-iteration effects of the started iteration, in batch order (decodes, then chunks); True if no
        request completed."""
        rs, owner = self.rs, self.owner
        j, t, chunks, skipped = self.pending
        if not chunks and not skipped and j not in self.done_at:  # decodes only, none finishes: context grows
            self.decode_context += len(self.decodes)
            if self.caching and not self.fitted:
                rs._fit()
                self.fitted = True
            self.last_order = ([], len(self.decodes), [])
            self.pending = None
            self.iterations = j + 1
            return True
        total, model = self.totals[j], self.models[j]
        for request, q in chunks:
            request.on_batch_stage_end(t, 0, total, model, q)
            request.on_batch_end(t, q)
        finished = self.done_at.pop(j, [])
        for request in finished:
            self._flush(request, j)
        finished_decodes = [r for r in self.decodes if r._completed] if finished else []
        prefilled = [r for r, _ in chunks if r._is_prefill_complete]
        for request in prefilled:
            self.run.first_tokens.append((t, request))
        done = finished_decodes + [r for r in prefilled if r._completed]
        for request in done:
            rs.free(request._id)
            self.run.completions.append((t, request))
        if self.prefix:
            for request in finished_decodes + prefilled:
                rs.after_iteration(request)
            if self.caching:
                rs._fit()
                self.fitted = True
                if finished or prefilled:
                    self.blocked = rs._blocked_by_cache()
        if done:
            owner._kv.record_blocks(self.index, t, rs._num_allocated_blocks)
        # ---- the running set of iteration j + 1 (and vidur's list of it, should vidur take over)
        self.decode_context += len(self.decodes)
        if finished:
            for request in finished:
                self.decode_context -= request.total_tokens + 1  # it would have grown to total + 1
                del self.start[request._id]
            self.decodes = [r for r in self.decodes if not r._completed]
        ordered_skipped = sorted(skipped, key=_arrived_at)
        self.last_order = (ordered_skipped, len(self.decodes), [r for r, _ in chunks if not r._completed])
        for request, _ in chunks:
            if request._is_prefill_complete and not request._completed:
                self.decodes.append(request)
                self._defer(request, j + 1)
        self.prefills = ordered_skipped + [r for r, _ in chunks if not r._is_prefill_complete]
        self.pending = None
        self.iterations = j + 1
        return not done

    def _hand_back(self) -> None:
        """Flush every deferred decode and leave sarathi's running list in the order vidur's would have."""
        ordered_skipped, num_decodes, chunked = self.last_order
        decodes = self.decodes[:num_decodes]
        for request in decodes:
            self._flush(request, self.iterations - 1)
        self.rs._preempted_requests = ordered_skipped + decodes + chunked

    def _flush(self, request: Any, last: int) -> None:
        """Apply iterations ``start..last`` of a decode to its vidur ``Request`` exactly as its per-iteration
        ``on_batch_schedule``/``on_batch_stage_schedule``/``on_batch_stage_end``/``on_batch_end`` calls would."""
        first = self.start[request._id]
        count = last - first + 1
        starts, ends = self.starts, self.ends
        request._latest_iteration_scheduling_delay = starts[last] - (
            ends[last - 1] if last > first else request._latest_iteration_completed_at
        )
        request._latest_iteration_scheduled_at = starts[last]
        if request._latest_stage_completed_at == 0:
            request._preempted_time = 0
        else:
            request._preempted_time += starts[first] - request._latest_stage_completed_at
        # later iterations start exactly when the previous one ended: each adds 0.0 to the preempted time
        request._latest_stage_scheduled_at = starts[last]
        request._execution_time = functools.reduce(operator.add, self.totals[first : last + 1], request._execution_time)
        request._model_execution_time = functools.reduce(
            operator.add, self.models[first : last + 1], request._model_execution_time
        )
        request._latest_stage_completed_at = ends[last]
        request._preempted = True
        request._num_stage_processed_tokens += count
        request._num_processed_tokens += count
        if request._num_processed_tokens == request.total_tokens:
            request._completed_at = ends[last]
            request._completed = True
        request._latest_iteration_completed_at = ends[last]
        request._num_processed_iterations += count
        self.start[request._id] = last + 1


def _arrived_at(request: Any) -> float:
    return request._arrived_at
