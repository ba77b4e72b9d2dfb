"""PPO learner with a scheduled KL penalty towards a frozen behaviour-cloned reference policy.

    loss = L_PPO(clip, vf, entropy(t)) + coef(t) * E_s[ KL( pi(.|s) || pi_ref(.|s) ) ]

Why KL to the *reference* and not PPO's own KL to the sampling policy (``use_kl_loss``): PPO's term only limits
the step size of each update, so after a few hundred updates the policy can have drifted anywhere; the reference
term anchors it to the competent teacher clone until the critic is good enough to trust the advantages, and its
coefficient then decays so PPO can improve on the teacher. The KL is exact for the categorical policy, computed
from log-softmax on both sides (no log(0)), and masked like PPO's own terms.

Schedules (``rllib_ext.schedules``) are driven by RLlib's lifetime env-step count, restored with checkpoints.
During a critic warm-up (the first ``critic_warmup_steps`` env steps) the actor's gradients are dropped, so the
value function learns the cloned policy's returns before any policy update can erase what was cloned.

All settings arrive in ``config.learner_config_dict`` (see ``rllib_ext.train_config.KLRefConfig.learner_config_dict``)
and are read in :meth:`build` only.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME
from ray.rllib.utils.schedules.scheduler import Scheduler

from rllib_ext.metrics import ENTROPY_COEF, KL_COEF, KL_REF, POLICY_FROZEN
from rllib_ext.policy_io import load_policy, resize_module
from rllib_ext.schedules import WarmupCoef, make_kl_schedule


def categorical_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row for categorical logits, from log-softmax (finite for any finite logits)."""
    log_p = torch.log_softmax(logits, dim=-1)
    log_q = torch.log_softmax(ref_logits, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


class KLRefPPOTorchLearner(PPOTorchLearner):
    """``PPOTorchLearner`` + ``coef(t) * KL(pi || pi_ref)``, entropy warm-up, critic warm-up."""

    @override(PPOTorchLearner)
    def build(self) -> None:
        super().build()
        cfg = self.config.learner_config_dict
        self.kl_schedule = make_kl_schedule(
            cfg["kl_ref_schedule"], cfg["kl_ref_coef_initial"], cfg["kl_ref_coef_final"], cfg["kl_ref_decay_steps"]
        )
        self.entropy_schedule = WarmupCoef(self.config.entropy_coeff, cfg["entropy_warmup_coef"], cfg["warmup_steps"])
        self.critic_warmup_steps = int(cfg.get("critic_warmup_steps", 0))
        self.ref_path = cfg.get("kl_ref_path")
        self.ref_modules: dict[str, RLModule] = {}
        if self.ref_path:
            for module_id in self.module.keys():
                # A scorer clone made on another replica count: same weights, rebuilt for this module's count.
                count = self.module[module_id].unwrapped().num_replicas
                ref = resize_module(load_policy(self.ref_path, flag="{flag:pretrained_actor_path}")[0], count).to(self._device)
                ref.eval()
                for param in ref.parameters():
                    param.requires_grad_(False)
                self.ref_modules[module_id] = ref
        # Adaptive warm-up (driver-controlled): extra warm-up steps and KL-schedule steps skipped ahead.
        self.extra_warmup_steps = 0
        self.kl_step_offset = 0
        self.kl_coef = self.kl_schedule.value(0)
        self.policy_frozen = self.critic_warmup_steps > 0
        self._actor_refs: set[Any] | None = None
        # RLlib internal relied on: PPO's loss reads the entropy coefficient from PPOLearner's
        # ``entropy_coeff_schedulers_per_module`` (pinned by tests/test_kl_learner.py). Each module gets an RLlib
        # ``Scheduler`` holding the warm-up; it is advanced in ``before_gradient_based_update`` (PPO advances it only
        # after the update, which would lag the warm-up by one iteration) and shifted by the adaptive extension.
        for module_id in self.module.keys():
            self.entropy_coeff_schedulers_per_module[module_id] = Scheduler(
                self.entropy_schedule.piecewise(), framework="torch", device=self._device
            )
        self.entropy_coef = self.entropy_schedule.value(0)

    def set_adaptive_state(self, extra_warmup_steps: int, kl_step_offset: int) -> None:
        self.extra_warmup_steps, self.kl_step_offset = int(extra_warmup_steps), int(kl_step_offset)

    @override(PPOTorchLearner)
    def before_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().before_gradient_based_update(timesteps=timesteps)
        step = int(timesteps.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0))
        self.kl_coef = self.kl_schedule.value(step + self.kl_step_offset) if self.ref_modules else 0.0
        for module_id in self.module.keys():
            self.entropy_coef = self.entropy_coeff_schedulers_per_module[module_id].update(
                timestep=max(0, step - self.extra_warmup_steps)
            )
        self.policy_frozen = step <= self.critic_warmup_steps  # the update at step s learns from steps up to s
        for module_id in self.module.keys():
            self.metrics.log_value((module_id, KL_COEF), self.kl_coef, window=1)
            self.metrics.log_value((module_id, ENTROPY_COEF), self.entropy_coef, window=1)
            self.metrics.log_value((module_id, POLICY_FROZEN), float(self.policy_frozen), window=1)

    @override(PPOTorchLearner)
    def compute_loss_for_module(
        self, *, module_id: str, config: Any, batch: dict[str, Any], fwd_out: dict[str, Any]
    ) -> torch.Tensor:
        ppo_loss = super().compute_loss_for_module(module_id=module_id, config=config, batch=batch, fwd_out=fwd_out)
        ref = self.ref_modules.get(module_id)
        if ref is None:
            return ppo_loss
        logits = fwd_out[Columns.ACTION_DIST_INPUTS]
        with torch.no_grad():
            ref_logits = ref.logits(batch[Columns.OBS])
        kl = categorical_kl(logits, ref_logits)
        mask = batch.get(Columns.LOSS_MASK)
        kl_ref = kl[mask].sum() / mask.sum().clamp(min=1) if mask is not None else kl.mean()
        self.metrics.log_value((module_id, KL_REF), kl_ref.detach(), window=1)
        return ppo_loss + self.kl_coef * kl_ref  # L = L_PPO + coef(t) * KL(pi || pi_ref)

    def _actor_param_refs(self) -> set[Any]:
        if self._actor_refs is None:  # parameters are fixed once the learner is built
            self._actor_refs = {
                self.get_param_ref(p) for mid in self.module.keys() for p in self.module[mid].unwrapped().actor_parameters()
            }
        return self._actor_refs

    @override(PPOTorchLearner)
    def postprocess_gradients(self, gradients_dict: dict[Any, torch.Tensor]) -> dict[Any, torch.Tensor]:
        if self.policy_frozen:  # drop the actor's gradients before clipping, so they do not shrink the critic's step
            actor = self._actor_param_refs()
            gradients_dict = {pid: g for pid, g in gradients_dict.items() if pid not in actor}
        return super().postprocess_gradients(gradients_dict)

    @override(PPOTorchLearner)
    def apply_gradients(self, gradients_dict: dict[Any, torch.Tensor]) -> None:
        if self.policy_frozen:  # backward() filled the actor's .grad; without it Adam skips those parameters
            for pid in self._actor_param_refs():
                self._params[pid].grad = None
        super().apply_gradients(gradients_dict)
