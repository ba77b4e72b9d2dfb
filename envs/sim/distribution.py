"""Training over a distribution of loads and fleets: each episode draws its own load and device mix from its seed.

An operator trains a router once and runs it while the arrival rate follows the day and GPUs are swapped. A
workload with ``load_range`` and/or ``fleets`` set is a *distribution*: :func:`episode_workload` turns it into the
concrete workload of one episode, drawn from a generator keyed by the episode's seed only, so an episode replays
exactly from its seed (in training, demonstrations and evaluation alike).

**Load** is relative to the workload's own rate, which the presets set at ``LOAD_FACTOR`` (85%) of the measured
capacity (docs/workloads.md): load ``L`` multiplies a generated stream's ``qps`` by ``L / 0.85`` and divides a
trace's ``trace_time_scale`` by it. **A fleet** keeps the replica count (the policy's action space is fixed within a
run; the scorer policy still runs on any count afterwards, docs/deploy.md) and changes the device mix. The rate is
scaled by the fleet's summed roofline speed over the base fleet's, so load stays a fraction of *that* fleet's
capacity: for ``2xh100+2xa100`` against ``4xh100`` this gives a time scale 2.5% above the one measured for
``mooncake_mixed`` (1.015 vs 0.99), close enough for a training distribution. Evaluation grids use the measured
presets instead (benchmarks/generalization.py).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from envs.errors import WarmRouteError
from envs.sim.devices import DEVICE_NAMES

if TYPE_CHECKING:
    from envs.sim.workload import WorkloadConfig

MAX_LOAD = 1.5
"""Largest load (fraction of capacity) a ``load_range`` may ask for: above it queues grow without bound."""
MIN_REQUESTS_PER_REPLICA = 32
"""A fleet whose replicas would get fewer requests per episode than this on average cannot be filled by the trace."""
_TERM = re.compile(r"^\s*(\d+)\s*[x*]\s*([a-z0-9_]+)\s*$")
_DRAW_STREAM = 0x10AD  # keys the per-episode generator apart from every other use of the seed


def parse_load_range(text: str) -> tuple[float, float] | None:
    """``"LOW:HIGH"`` -> ``(low, high)``; ``""`` -> None. Refuses a range outside (0, ``MAX_LOAD``]."""
    if not text:
        return None
    parts = text.split(":")
    try:
        low, high = (float(p) for p in parts) if len(parts) == 2 else (float("nan"),) * 2
    except ValueError:
        low = high = float("nan")
    if not (0 < low <= high <= MAX_LOAD):
        raise WarmRouteError(
            f"{{flag:load_range}} must be LOW:HIGH with 0 < LOW <= HIGH <= {MAX_LOAD:g} (fractions of capacity; got '{text}')"
        )
    return low, high


def parse_fleets(text: str) -> tuple[tuple[str, ...], ...]:
    """``"4xh100;2xh100+2xa100"`` -> one device tuple per fleet; ``""`` -> ``()``. Refuses an unknown device."""
    if not text:
        return ()
    fleets = []
    for spec in text.split(";"):
        devices: list[str] = []
        for term in spec.split("+"):
            match = _TERM.match(term.lower())
            if match is None or int(match.group(1)) < 1:
                raise WarmRouteError(
                    f"{{flag:fleets}}: '{spec.strip()}' is not a fleet; write COUNTxDEVICE terms joined by '+', fleets by ';' "
                    "(e.g. '4xh100;2xh100+2xa100')"
                )
            count, device = int(match.group(1)), match.group(2)
            if device not in DEVICE_NAMES:
                raise WarmRouteError(
                    f"{{flag:fleets}}: unknown device '{device}' in '{spec.strip()}'; choose from: {', '.join(DEVICE_NAMES)}"
                )
            devices += [device] * count
        fleets.append(tuple(devices))
    return tuple(fleets)


def fleet_spec(devices: tuple[str, ...]) -> str:
    """The canonical spec of a fleet, e.g. ``2xh100+2xa100`` (the form ``fleets`` takes)."""
    return "+".join(f"{devices.count(d)}x{d}" for d in dict.fromkeys(devices))


def validate_distribution(w: WorkloadConfig) -> None:
    """Check ``load_range`` and ``fleets``: parseable, same replica count, and enough requests per replica."""
    parse_load_range(w.load_range)
    for devices in parse_fleets(w.fleets):
        if len(devices) != w.num_replicas:
            raise WarmRouteError(
                f"{{flag:fleets}}: '{fleet_spec(devices)}' has {len(devices)} replicas but {{flag:num_replicas}} is "
                f"{w.num_replicas}; within one run every fleet needs the same replica count (mix devices instead)"
            )
    if not (w.load_range or w.fleets):
        return
    if w.num_requests < MIN_REQUESTS_PER_REPLICA * w.num_replicas:
        raise WarmRouteError(
            f"{{flag:fleets}}: {w.num_replicas} replicas share {w.num_requests} requests per episode, fewer than "
            f"{MIN_REQUESTS_PER_REPLICA} each, so the trace cannot fill the fleet; raise {{flag:num_requests}} or use fewer replicas"
        )
    for devices in parse_fleets(w.fleets) or (w.devices,):  # each concrete fleet must hold the model (memory checks)
        apply_setting(w, None, devices, 1.0)


@lru_cache(maxsize=64)
def fleet_speed(model: str, devices: tuple[str, ...], tensor_parallel_size: int) -> float:
    """Summed roofline speed of ``devices`` serving ``model`` (H100 = 1): the fleet's relative capacity."""
    from envs.sim.predictor import relative_device_speeds  # registers vidur plug-ins: only when a fleet is drawn

    speeds = relative_device_speeds(model, ("h100", *devices), tensor_parallel_size)
    return float(sum(speeds[1:]) / speeds[0])


def episode_setting(w: WorkloadConfig, seed: int) -> tuple[float | None, tuple[str, ...]]:
    """The ``(load, devices)`` episode ``seed`` draws (load None: the workload's own rate), from the seed alone."""
    load_range = parse_load_range(w.load_range)
    fleets = parse_fleets(w.fleets)
    rng = np.random.default_rng([_DRAW_STREAM, seed])
    load = float(rng.uniform(*load_range)) if load_range else None
    devices = fleets[int(rng.integers(len(fleets)))] if fleets else w.devices
    return load, devices


def apply_setting(w: WorkloadConfig, load: float | None, devices: tuple[str, ...], load_factor: float) -> WorkloadConfig:
    """``w`` at ``load`` (None: its own rate) on ``devices``, as a concrete workload (no distribution left)."""
    rate = load / load_factor if load is not None else 1.0
    if devices != w.devices:
        tp = w.tensor_parallel_size
        rate *= fleet_speed(w.model, devices, tp) / fleet_speed(w.model, w.devices, tp)
    return w.replace(
        load_range="",
        fleets="",
        replica_devices=tuple(devices) if devices != w.devices else w.replica_devices,
        qps=w.qps * rate,
        trace_time_scale=w.trace_time_scale / rate,
    )
