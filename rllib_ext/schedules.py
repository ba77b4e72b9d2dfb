"""Coefficient schedules over lifetime env steps: small, validated, interchangeable objects.

Every schedule answers ``value(step)`` for a lifetime env-step count, which RLlib restores with a checkpoint, so
a resumed run continues its schedules exactly where they stopped. Invalid settings raise ``WarmRouteError`` naming
the config field (the CLI shows its flag), before any Ray work starts.

* KL-to-reference coefficient: starts high so PPO stays near the cloned policy while the critic is still poor,
  then decays so PPO may improve on the teacher (``LinearCoef``, ``CosineCoef``, ``ExponentialCoef``).
* Entropy coefficient: a raised value for a warm-up period (``WarmupCoef``): the cloned policy is sharp, and
  without extra exploration PPO would only see the teacher's choices.
"""

from __future__ import annotations

import math

from envs.errors import WarmRouteError

KL_SCHEDULES = ("linear", "cosine", "exponential", "constant")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise WarmRouteError(message)


class ConstantCoef:
    """The same value at every step."""

    def __init__(self, value: float) -> None:
        _check(math.isfinite(value) and value >= 0, f"{{flag:kl_ref_coef_initial}} must be a finite number >= 0 (got {value})")
        self.initial = self.final = float(value)

    def value(self, step: int) -> float:
        return self.initial

    def __repr__(self) -> str:
        return f"ConstantCoef({self.initial:g})"


class _DecayCoef:
    """Decays from ``initial`` to ``final`` over ``decay_steps`` env steps, then stays at ``final``."""

    def __init__(self, initial: float, final: float, decay_steps: int) -> None:
        _check(
            math.isfinite(initial) and initial >= 0, f"{{flag:kl_ref_coef_initial}} must be a finite number >= 0 (got {initial})"
        )
        _check(math.isfinite(final) and final >= 0, f"{{flag:kl_ref_coef_final}} must be a finite number >= 0 (got {final})")
        _check(
            final <= initial,
            f"{{flag:kl_ref_coef_final}} ({final:g}) must not exceed {{flag:kl_ref_coef_initial}} ({initial:g}) for a decaying schedule",
        )
        _check(decay_steps > 0, f"{{flag:kl_ref_decay_steps}} must be > 0 (got {decay_steps})")
        self.initial, self.final, self.decay_steps = float(initial), float(final), int(decay_steps)

    def progress(self, step: int) -> float:
        return min(max(step, 0) / self.decay_steps, 1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(initial={self.initial:g}, final={self.final:g}, decay_steps={self.decay_steps})"


class LinearCoef(_DecayCoef):
    """Straight line from ``initial`` to ``final``."""

    def value(self, step: int) -> float:
        p = self.progress(step)
        return self.final if p >= 1.0 else self.initial + (self.final - self.initial) * p


class CosineCoef(_DecayCoef):
    """Half cosine: slow at both ends, so the policy is held longest near the reference and near the end value."""

    def value(self, step: int) -> float:
        return self.final + 0.5 * (self.initial - self.final) * (1.0 + math.cos(math.pi * self.progress(step)))


class ExponentialCoef(_DecayCoef):
    """Geometric interpolation: equal ratios per step, so most of the decay happens early.

    With ``final == 0`` a geometric curve never arrives, so the curve decays to ``initial * 1e-3`` and then
    drops to 0 at ``decay_steps``.
    """

    def value(self, step: int) -> float:
        p = self.progress(step)
        if p >= 1.0:
            return self.final
        if self.initial == 0.0:
            return 0.0
        end = self.final if self.final > 0 else self.initial * 1e-3
        return self.initial * (end / self.initial) ** p


class WarmupCoef:
    """``warmup_value`` up to and including env step ``warmup_steps``, ``base_value`` afterwards.

    (An update at lifetime step ``s`` learns from the batch sampled up to ``s``; it is a warm-up update when the
    whole batch lies in the warm-up.)
    """

    def __init__(self, base_value: float, warmup_value: float, warmup_steps: int) -> None:
        _check(
            math.isfinite(base_value) and base_value >= 0,
            f"{{flag:entropy_coeff}} must be a finite number >= 0 (got {base_value})",
        )
        _check(
            math.isfinite(warmup_value) and warmup_value >= 0,
            f"{{flag:entropy_warmup_coef}} must be a finite number >= 0 (got {warmup_value})",
        )
        _check(warmup_steps >= 0, f"{{flag:warmup_steps}} must be >= 0 (got {warmup_steps})")
        self.base_value, self.warmup_value, self.warmup_steps = float(base_value), float(warmup_value), int(warmup_steps)

    def value(self, step: int, extra_warmup_steps: int = 0) -> float:
        """``extra_warmup_steps`` lets the adaptive controller prolong the warm-up."""
        return self.warmup_value if step <= self.warmup_steps + extra_warmup_steps else self.base_value

    def piecewise(self) -> list[list[float]]:
        """The same schedule in RLlib's ``[[step, value], ...]`` form (``Scheduler``; past the last point: base).

        ``value(s, extra)`` equals the RLlib schedule at ``max(0, s - extra)``.
        """
        end = self.warmup_steps + 1
        return [[0, self.warmup_value], [end, self.warmup_value], [end, self.base_value]]

    def __repr__(self) -> str:
        return f"WarmupCoef(base={self.base_value:g}, warmup={self.warmup_value:g}, warmup_steps={self.warmup_steps})"


KLSchedule = ConstantCoef | _DecayCoef
"""What :func:`make_kl_schedule` returns."""


def make_kl_schedule(kind: str, initial: float, final: float, decay_steps: int) -> KLSchedule:
    """The KL-to-reference schedule named ``kind`` (see ``KL_SCHEDULES``)."""
    classes = {"linear": LinearCoef, "cosine": CosineCoef, "exponential": ExponentialCoef}
    if kind == "constant":
        return ConstantCoef(initial)
    _check(kind in classes, f"{{flag:kl_ref_schedule}} must be one of {', '.join(KL_SCHEDULES)} (got '{kind}')")
    return classes[kind](initial, final, decay_steps)
