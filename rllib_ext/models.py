"""The PPO ``RLModule`` used everywhere: behaviour cloning, PPO training and evaluation.

Default architecture, ``scorer`` (permutation-equivariant): one shared MLP reads each replica's features plus the
pending request's features and outputs that replica's score; the scores are the categorical logits. The same
weights therefore serve any replica count, relabelling replicas relabels the policy, and "pick the least loaded"
is a one-dimensional function the network learns from a handful of demonstrations. The critic is a separate
network of the same kind whose per-replica embeddings are mean- and max-pooled into a value, so fitting the value
function never moves the cloned actor.

``mlp`` (selectable) is a plain actor MLP and critic MLP on the flat observation.

Logits come out of a linear layer (never a tanh), so the policy can become as sharp as it needs to. The value
head's last layer starts at zero: right after behaviour cloning the critic knows nothing, and a zero prediction
is a better start than a random one.

``model_config`` keys: ``architecture`` (``scorer``|``mlp``), ``hidden`` (list of layer widths),
``num_replicas``, ``num_replica_features``, ``num_request_features`` (from ``ObservationLayout``).
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import nn

from envs.errors import WarmRouteError
from envs.observation import ObservationLayout
from rllib_ext.ray_runtime import silence

# RLlib 2.60's own ``RLModule.__init__`` builds the deprecated ``RLModuleConfig`` for every module (rl_module.py,
# "TODO (sven): Deprecate this"), so each module built logs this deprecation although we pass no config object.
# Importing this module (every process that builds a RoutingModule does) drops that one message.
silence("ray._common.deprecation", "DeprecationWarning: `RLModule(config=[RLModuleConfig object])`")

ARCHITECTURES = ("scorer", "mlp")
DEFAULT_HIDDEN = (64, 64)


def module_model_config(
    layout: ObservationLayout, architecture: str = "scorer", hidden: tuple[int, ...] = DEFAULT_HIDDEN
) -> dict[str, Any]:
    """The ``model_config`` of the routing module for observations of ``layout``."""
    if architecture not in ARCHITECTURES:
        raise WarmRouteError(f"{{flag:architecture}} must be one of {', '.join(ARCHITECTURES)} (got '{architecture}')")
    if not hidden or min(hidden) < 1:
        raise WarmRouteError(f"{{flag:hidden}} needs at least one positive layer width (got {list(hidden)})")
    return {
        "architecture": architecture,
        "hidden": list(hidden),
        "num_replicas": layout.num_replicas,
        "num_replica_features": layout.num_replica_features,
        "num_request_features": layout.num_request_features,
    }


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them and none after the last."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RoutingModule(TorchRLModule, ValueFunctionAPI):
    """Categorical routing policy with a value function, for PPO on ``VidurRoutingEnv``."""

    @override(TorchRLModule)
    def setup(self) -> None:
        cfg = self.model_config
        self.architecture = cfg.get("architecture", "scorer")
        hidden = [int(h) for h in cfg.get("hidden", DEFAULT_HIDDEN)]
        self.num_replicas = int(cfg["num_replicas"])
        self.num_replica_features = int(cfg["num_replica_features"])
        self.num_request_features = int(cfg["num_request_features"])
        per_replica_in = self.num_replica_features + self.num_request_features
        obs_dim = self.num_replicas * self.num_replica_features + self.num_request_features
        if self.action_space is not None and self.action_space.n != self.num_replicas:
            raise ValueError(f"model_config num_replicas={self.num_replicas} but action space is {self.action_space}")
        if self.architecture == "scorer":
            self.actor = _mlp([per_replica_in, *hidden, 1])
            self.critic_embed = nn.Sequential(_mlp([per_replica_in, *hidden]), nn.ReLU())
            self.critic_head = nn.Linear(2 * hidden[-1], 1)
        elif self.architecture == "mlp":
            self.actor = _mlp([obs_dim, *hidden, self.num_replicas])
            self.critic_embed = nn.Sequential(_mlp([obs_dim, *hidden]), nn.ReLU())
            self.critic_head = nn.Linear(hidden[-1], 1)
        else:
            raise ValueError(f"unknown architecture '{self.architecture}'; choose one of {', '.join(ARCHITECTURES)}")
        nn.init.zeros_(self.critic_head.weight)
        nn.init.zeros_(self.critic_head.bias)

    def _per_replica_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, R, F + G)``: each replica's features followed by the request's features."""
        cut = self.num_replicas * self.num_replica_features
        replicas = obs[..., :cut].reshape(*obs.shape[:-1], self.num_replicas, self.num_replica_features)
        request = obs[..., cut:].unsqueeze(-2).expand(*obs.shape[:-1], self.num_replicas, self.num_request_features)
        return torch.cat([replicas, request], dim=-1)

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-probabilities ``(B, R)`` of routing to each replica."""
        if self.architecture == "scorer":
            return self.actor(self._per_replica_inputs(obs)).squeeze(-1)
        return self.actor(obs)

    @override(TorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {Columns.ACTION_DIST_INPUTS: self.logits(batch[Columns.OBS])}

    @override(TorchRLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self._forward(batch, **kwargs)

    @override(ValueFunctionAPI)
    def compute_values(self, batch: dict[str, Any], embeddings: Any | None = None) -> torch.Tensor:
        obs = batch[Columns.OBS]
        if self.architecture == "scorer":
            embedded = self.critic_embed(self._per_replica_inputs(obs))
            pooled = torch.cat([embedded.mean(dim=-2), embedded.amax(dim=-2)], dim=-1)
            return self.critic_head(pooled).squeeze(-1)
        return self.critic_head(self.critic_embed(obs)).squeeze(-1)

    def actor_parameters(self) -> list[nn.Parameter]:
        """Parameters that define the policy (frozen during critic warm-up)."""
        return list(self.actor.parameters())
