"""The adaptive warm-up controller's two rules, on hand-made iteration figures."""

from __future__ import annotations

from rllib_ext.adaptive import AdaptiveState, AdaptiveWarmupController


def _controller() -> AdaptiveWarmupController:
    return AdaptiveWarmupController(warmup_steps=1000, balance_threshold=0.9, kl_speedup=3.0, teacher_latency_s=4.0)


def test_low_balance_extends_warmup_only_while_in_warmup() -> None:
    c = _controller()
    assert c.update(step=500, steps_this_iteration=500, balance=0.8, mean_latency_s=5.0).extra_warmup_steps == 500
    assert c.update(step=1500, steps_this_iteration=500, balance=0.8, mean_latency_s=5.0).extra_warmup_steps == 1000
    assert c.update(step=2500, steps_this_iteration=500, balance=0.5, mean_latency_s=5.0).extra_warmup_steps == 1000


def test_good_balance_does_not_extend() -> None:
    assert _controller().update(step=500, steps_this_iteration=500, balance=0.95, mean_latency_s=None) == AdaptiveState()


def test_beating_the_teacher_speeds_up_kl_decay() -> None:
    c = _controller()
    c.update(step=2000, steps_this_iteration=500, balance=0.99, mean_latency_s=4.5)
    assert c.state.kl_step_offset == 0
    c.update(step=2500, steps_this_iteration=500, balance=0.99, mean_latency_s=3.9)
    assert c.state.kl_step_offset == 1000  # (3 - 1) x 500
