"""Adaptive warm-up control (opt-in): react to how the warm-started policy is actually doing.

Two rules, applied after every training iteration from the routing metrics of finished training episodes:

* while the entropy warm-up is on and the balance score is under ``balance_threshold``, extend the warm-up by
  the iteration's env steps: a policy that piles requests onto few replicas still needs exploration;
* once the policy's mean latency beats its teacher's, advance the KL-to-reference schedule ``kl_speedup`` times
  faster: the anchor has done its job and now only holds PPO back.

The state is two integers, sent to every learner each iteration and saved with each checkpoint (JSON).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class AdaptiveState:
    extra_warmup_steps: int = 0
    """Env steps added to the entropy warm-up."""
    kl_step_offset: int = 0
    """Env steps the KL schedule has been advanced beyond the real step count."""

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class AdaptiveWarmupController:
    """Decides the :class:`AdaptiveState` from per-iteration balance and latency."""

    def __init__(
        self,
        warmup_steps: int,
        balance_threshold: float,
        kl_speedup: float,
        teacher_latency_s: float,
        state: AdaptiveState | None = None,
    ) -> None:
        self.warmup_steps = warmup_steps
        self.balance_threshold = balance_threshold
        self.kl_speedup = kl_speedup
        self.teacher_latency_s = teacher_latency_s
        self.state = state or AdaptiveState()

    def update(self, step: int, steps_this_iteration: int, balance: float | None, mean_latency_s: float | None) -> AdaptiveState:
        in_warmup = step <= self.warmup_steps + self.state.extra_warmup_steps
        if in_warmup and balance is not None and balance < self.balance_threshold:
            self.state.extra_warmup_steps += steps_this_iteration
        if mean_latency_s is not None and mean_latency_s < self.teacher_latency_s:
            self.state.kl_step_offset += int(round((self.kl_speedup - 1.0) * steps_this_iteration))
        return self.state

    def __repr__(self) -> str:
        return (
            f"AdaptiveWarmupController(balance<{self.balance_threshold:g} extends warm-up, "
            f"KL x{self.kl_speedup:g} once latency < {self.teacher_latency_s:.3f}s, state={self.state})"
        )
