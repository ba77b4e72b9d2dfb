"""Coefficient schedules: exact values, validation with flag names, readable reprs."""

from __future__ import annotations

import math

import pytest

from envs.errors import WarmRouteError
from rllib_ext.schedules import ConstantCoef, CosineCoef, ExponentialCoef, LinearCoef, WarmupCoef, make_kl_schedule


def test_linear_exact_values() -> None:
    s = LinearCoef(1.0, 0.2, 1000)
    assert [s.value(t) for t in (0, 250, 500, 1000, 5000)] == [1.0, 0.8, 0.6, 0.2, 0.2]
    assert s.value(-10) == 1.0


def test_cosine_ends_and_middle() -> None:
    s = CosineCoef(1.0, 0.0, 100)
    assert s.value(0) == 1.0 and s.value(50) == pytest.approx(0.5) and s.value(100) == pytest.approx(0.0)
    assert s.value(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_exponential_is_geometric() -> None:
    s = ExponentialCoef(1.0, 0.01, 100)
    assert s.value(0) == 1.0 and s.value(50) == pytest.approx(0.1) and s.value(100) == 0.01
    to_zero = ExponentialCoef(2.0, 0.0, 10)
    assert to_zero.value(5) == pytest.approx(2.0 * 1e-3**0.5) and to_zero.value(10) == 0.0


def test_constant_and_warmup() -> None:
    assert ConstantCoef(0.3).value(10**9) == 0.3
    w = WarmupCoef(base_value=0.0, warmup_value=0.02, warmup_steps=100)
    assert (w.value(100), w.value(101), w.value(150, extra_warmup_steps=50), w.value(151, 50)) == (0.02, 0.0, 0.02, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "linear", "initial": -1.0, "final": 0.0, "decay_steps": 10}, "kl_ref_coef_initial"),
        ({"kind": "linear", "initial": 1.0, "final": -0.1, "decay_steps": 10}, "kl_ref_coef_final"),
        ({"kind": "cosine", "initial": 0.1, "final": 0.5, "decay_steps": 10}, "must not exceed"),
        ({"kind": "exponential", "initial": 1.0, "final": 0.1, "decay_steps": 0}, "kl_ref_decay_steps"),
        ({"kind": "step", "initial": 1.0, "final": 0.1, "decay_steps": 10}, "kl_ref_schedule"),
        ({"kind": "linear", "initial": float("nan"), "final": 0.0, "decay_steps": 10}, "kl_ref_coef_initial"),
    ],
)
def test_invalid_kl_settings_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(WarmRouteError, match=field):
        make_kl_schedule(**kwargs)


def test_invalid_warmup_settings() -> None:
    with pytest.raises(WarmRouteError, match="entropy_warmup_coef"):
        WarmupCoef(0.0, -0.1, 10)
    with pytest.raises(WarmRouteError, match="warmup_steps"):
        WarmupCoef(0.0, 0.1, -1)


def test_reprs_name_the_settings() -> None:
    assert repr(make_kl_schedule("linear", 1, 0.1, 5)) == "LinearCoef(initial=1, final=0.1, decay_steps=5)"
    assert repr(WarmupCoef(0, 0.01, 7)) == "WarmupCoef(base=0, warmup=0.01, warmup_steps=7)"


def test_rllib_scheduler_built_from_the_warmup_gives_the_same_coefficients() -> None:
    from ray.rllib.utils.schedules.scheduler import Scheduler

    warmup = WarmupCoef(base_value=0.001, warmup_value=0.02, warmup_steps=100)
    scheduler = Scheduler(warmup.piecewise(), framework="torch")
    for step, extra in [(0, 0), (100, 0), (101, 0), (5000, 0), (150, 50), (151, 50), (30, 100)]:
        assert scheduler.update(timestep=max(0, step - extra)) == warmup.value(step, extra), (step, extra)
        assert float(scheduler.get_current_value()) == pytest.approx(warmup.value(step, extra))


def test_ppo_loss_still_reads_the_entropy_coefficient_from_the_scheduler_dict() -> None:
    """Pins the RLlib internal KLRefPPOTorchLearner relies on for the entropy warm-up (see its ``build``)."""
    import inspect

    from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner

    assert "self.entropy_coeff_schedulers_per_module[module_id].get_current_value()" in inspect.getsource(
        PPOTorchLearner.compute_loss_for_module
    )
