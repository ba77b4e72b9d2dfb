"""The routing RLModule: equivariance, unbounded logits, zero-initialised value head, both architectures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from envs.errors import WarmRouteError
from envs.observation import ObservationLayout
from rllib_ext.models import module_model_config
from rllib_ext.policy_io import build_module

LAYOUT = ObservationLayout(num_replicas=4)


def _obs(batch: int = 8) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(0).random((batch, LAYOUT.dim)), dtype=torch.float32)


def _permute_replicas(obs: torch.Tensor, perm: list[int]) -> torch.Tensor:
    cut = LAYOUT.num_replicas * LAYOUT.num_replica_features
    replicas = obs[:, :cut].reshape(-1, LAYOUT.num_replicas, LAYOUT.num_replica_features)[:, perm]
    return torch.cat([replicas.reshape(len(obs), -1), obs[:, cut:]], dim=-1)


def test_scorer_is_permutation_equivariant_and_value_invariant() -> None:
    module = build_module(LAYOUT, module_model_config(LAYOUT, "scorer"))
    torch.nn.init.normal_(module.critic_head.weight)
    obs = _obs()
    perm = [2, 0, 3, 1]
    with torch.no_grad():
        logits = module.logits(obs)
        logits_perm = module.logits(_permute_replicas(obs, perm))
        values = module.compute_values({Columns.OBS: obs})
        values_perm = module.compute_values({Columns.OBS: _permute_replicas(obs, perm)})
    torch.testing.assert_close(logits_perm, logits[:, perm])
    torch.testing.assert_close(values_perm, values)


@pytest.mark.parametrize("architecture", ["scorer", "mlp"])
def test_forward_outputs_and_zero_value_head(architecture: str) -> None:
    module = build_module(LAYOUT, module_model_config(LAYOUT, architecture))
    out = module.forward_train({Columns.OBS: _obs()})
    assert out[Columns.ACTION_DIST_INPUTS].shape == (8, 4)
    assert torch.all(module.compute_values({Columns.OBS: _obs()}) == 0)


def test_logits_are_unbounded() -> None:
    module = build_module(LAYOUT, module_model_config(LAYOUT, "scorer", hidden=(8,)))
    with torch.no_grad():
        for p in module.actor.parameters():
            p.mul_(0).add_(5.0)
    logits = module.logits(_obs())
    assert logits.abs().max() > 10  # a tanh-squashed head could never exceed 1


def test_bad_model_config() -> None:
    with pytest.raises(WarmRouteError, match="architecture"):
        module_model_config(LAYOUT, "transformer")
    with pytest.raises(WarmRouteError, match="hidden"):
        module_model_config(LAYOUT, "scorer", hidden=())
