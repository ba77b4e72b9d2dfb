"""The roofline predictor against published latency measurements (envs/sim/published_latency.py, docs/predictor.md)."""

from __future__ import annotations

import pytest

from envs.sim.published_latency import ERROR_BOUND, POINTS, error


def test_there_are_at_least_six_published_points_on_both_models_and_devices() -> None:
    assert len(POINTS) >= 6
    assert {p.model for p in POINTS} == {"meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3-8B"}
    assert {p.kind for p in POINTS} == {"ttft", "request", "tpot"}


@pytest.mark.parametrize("point", POINTS, ids=lambda p: f"{p.model.split('/')[1]}-{getattr(p.device, 'name', p.device)}-{p.name}")
def test_prediction_error_stays_inside_the_documented_bound(point) -> None:
    assert abs(error(point)) <= ERROR_BOUND


def test_decode_bound_points_are_within_ten_percent() -> None:
    """Batch-1 and large-batch decode are bandwidth-bound, which the roofline models best (see docs)."""
    decode = [p for p in POINTS if p.kind == "tpot" or p.output_tokens > 1000]
    assert decode and all(abs(error(p)) <= 0.10 for p in decode)
