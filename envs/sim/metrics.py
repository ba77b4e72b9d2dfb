"""Per-request latency statistics of a routed episode (what ``info`` carries at episode end and what
``warmroute evaluate`` reports). Times are simulated seconds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from envs.sim.slo import slo_summary
from envs.sim.vidur_patches import emitted_decode_tokens


def request_latencies(requests: Sequence[Any]) -> dict[str, np.ndarray]:
    """Arrays of e2e latency, time to first token, mean time between tokens and restarts, one entry per request.

    TBT is averaged over the tokens the request emitted: a preempted request's recomputation re-reads its earlier
    output as prompt, so vidur's shrunken ``num_decode_tokens`` would overstate its gaps."""
    arrived = np.array([r.arrived_at for r in requests], dtype=np.float64)
    completed = np.array([r.completed_at for r in requests], dtype=np.float64)
    first_token = np.array([r.prefill_completed_at for r in requests], dtype=np.float64)
    decode = np.array([emitted_decode_tokens(r) for r in requests], dtype=np.float64)
    return {
        "arrived": arrived,
        "completed": completed,
        "e2e": completed - arrived,
        "ttft": first_token - arrived,
        "tbt": (completed - first_token) / np.maximum(decode - 1.0, 1.0),
        "restarts": np.array([r.num_restarts for r in requests], dtype=np.float64),
        "prompt": np.array([r.num_prefill_tokens for r in requests], dtype=np.float64),
        "cached": np.array([getattr(r, "cached_tokens", 0) for r in requests], dtype=np.float64),
    }


def balance_score(action_counts: np.ndarray) -> float:
    """``1 - std(action fractions)``: 1.0 for a perfectly even split, lower the more one replica is favoured."""
    total = action_counts.sum()
    if total == 0:
        return 1.0
    return float(1.0 - np.std(action_counts / total))


def summarize(lat: dict[str, np.ndarray], action_counts: np.ndarray) -> dict[str, Any]:
    """Latency percentiles, throughput and routing balance from pooled per-request arrays."""
    span = float(lat["completed"].max() - lat["arrived"].min()) if lat["e2e"].size else 0.0
    total = int(action_counts.sum())
    return {
        "mean_e2e_s": float(lat["e2e"].mean()),
        "p50_e2e_s": float(np.percentile(lat["e2e"], 50)),
        "p99_e2e_s": float(np.percentile(lat["e2e"], 99)),
        "mean_ttft_s": float(lat["ttft"].mean()),
        "p50_ttft_s": float(np.percentile(lat["ttft"], 50)),
        "p90_ttft_s": float(np.percentile(lat["ttft"], 90)),
        "p99_ttft_s": float(np.percentile(lat["ttft"], 99)),
        "mean_tbt_s": float(lat["tbt"].mean()),
        "throughput_rps": lat["e2e"].size / span if span > 0 else 0.0,
        "cache_hit_rate": float(lat["cached"].sum() / lat["prompt"].sum()) if lat["prompt"].sum() > 0 else 0.0,
        "num_requests": int(lat["e2e"].size),
        "preemptions": int(lat["restarts"].sum()),
        "action_distribution": [float(c / total) if total else 0.0 for c in action_counts],
        "balance_score": balance_score(action_counts),
    }


def episode_metrics(
    requests: Sequence[Any], action_counts: np.ndarray, slo_ttft_s: float | None = None, slo_tbt_s: float | None = None
) -> dict[str, Any]:
    """Summary of one finished episode (with SLO attainment and goodput when an SLO is set)."""
    lat = request_latencies(requests)
    return {**summarize(lat, action_counts), **slo_summary(lat, slo_ttft_s, slo_tbt_s)}
