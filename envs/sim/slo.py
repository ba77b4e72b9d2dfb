"""Service-level objectives: which requests met their TTFT/TBT targets, goodput, and the ``slo`` reward.

A request *meets its SLOs* when its time to first token is at most ``slo_ttft_s`` and the mean time between its
output tokens (over the tokens it actually emitted, see ``envs.sim.vidur_patches``) is at most ``slo_tbt_s``; an unset
SLO is always met. SLO attainment is the share of requests that meet both; goodput is how many met them per second
of the episode (DistServe, OSDI'24).

``--reward slo`` pays each request in two halves, as soon as each can be decided:

* at its first token: ``+0.5`` if TTFT <= ``slo_ttft_s``, else ``0``;
* at its completion: ``+0.5`` if both SLOs are met; ``-0.5`` if TTFT was met but TBT was not (taking the first
  half back); ``0`` if TTFT was missed.

Every request therefore contributes exactly 1 if it met both SLOs and 0 otherwise, so the episode return is the
number of requests that met their SLOs, while a router hears about TTFT (the part routing moves most) one decode
phase earlier than a pay-on-completion reward would tell it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.errors import WarmRouteError
from envs.sim.vidur_patches import emitted_decode_tokens

HALF = 0.5


def tbt_s(request: Any) -> float:
    """Mean seconds between the output tokens a completed request emitted (0 for a single-token answer)."""
    gaps = max(emitted_decode_tokens(request) - 1, 1)
    return (request.completed_at - request.prefill_completed_at) / gaps


def ttft_met(request: Any, slo_ttft_s: float | None) -> bool:
    return slo_ttft_s is None or request.prefill_completed_at - request.arrived_at <= slo_ttft_s


def tbt_met(request: Any, slo_tbt_s: float | None) -> bool:
    return slo_tbt_s is None or tbt_s(request) <= slo_tbt_s


class SloReward:
    """Per-request payments of the ``slo`` reward (see module docstring); the env calls these as events happen."""

    def __init__(self, slo_ttft_s: float | None, slo_tbt_s: float | None) -> None:
        if slo_ttft_s is None and slo_tbt_s is None:
            raise WarmRouteError(
                "{flag:reward} slo needs {flag:slo_ttft_s} and/or {flag:slo_tbt_s} (or a workload preset that sets them)"
            )
        self.slo_ttft_s, self.slo_tbt_s = slo_ttft_s, slo_tbt_s

    def on_first_token(self, request: Any) -> float:
        return HALF if ttft_met(request, self.slo_ttft_s) else 0.0

    def on_completion(self, request: Any) -> float:
        if not ttft_met(request, self.slo_ttft_s):
            return 0.0
        return HALF if tbt_met(request, self.slo_tbt_s) else -HALF


def slo_mask(lat: dict[str, np.ndarray], slo_ttft_s: float | None, slo_tbt_s: float | None) -> np.ndarray:
    """Boolean per request: met both SLOs (from the arrays of ``envs.sim.metrics.request_latencies``)."""
    met = np.ones(lat["ttft"].shape, dtype=bool)
    if slo_ttft_s is not None:
        met &= lat["ttft"] <= slo_ttft_s
    if slo_tbt_s is not None:
        met &= lat["tbt"] <= slo_tbt_s
    return met


def slo_summary(lat: dict[str, np.ndarray], slo_ttft_s: float | None, slo_tbt_s: float | None) -> dict[str, float]:
    """SLO attainment and goodput of one episode (empty when no SLO is set)."""
    if slo_ttft_s is None and slo_tbt_s is None:
        return {}
    met = slo_mask(lat, slo_ttft_s, slo_tbt_s)
    span = float(lat["completed"].max() - lat["arrived"].min()) if met.size else 0.0
    return {
        "slo_attainment": float(met.mean()),
        "goodput_rps": float(met.sum() / span) if span > 0 else 0.0,
        "slo_met": int(met.sum()),
    }
