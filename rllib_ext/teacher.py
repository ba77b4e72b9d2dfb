"""Heuristic routers as RLlib modules, so demonstrations are sampled by RLlib's own env runners.

Running the teacher inside an ``EnvRunner`` (instead of a hand-written loop) means demonstrations go through the
same env creation, seeding and env-to-module connectors as PPO training, so a cloned policy sees exactly the
observations it will later be trained and evaluated on.

Each forward pass returns, besides the action taken, the teacher's own choice (``teacher_action``; it differs from
the action only where epsilon-exploration replaced it) and the mask of replicas the teacher ranks equal
(``teacher_ties``). RLlib stores extra forward outputs per step as the episode's ``extra_model_outputs``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override

from envs.errors import WarmRouteError
from envs.observation import ObservationLayout
from envs.routers.heuristics import equivalent_actions, is_router, make_router, router_names

TEACHER_ACTION = "teacher_action"
TEACHER_TIES = "teacher_ties"


class HeuristicTeacherModule(TorchRLModule):
    """Acts with a heuristic router from ``envs.routers.heuristics``; epsilon of the time a uniformly random replica.

    ``model_config``: ``router`` (name), ``num_replicas``, ``oracle``, ``epsilon`` (0..1), ``seed``.
    Not trainable: ``_forward_train`` raises.
    """

    @override(TorchRLModule)
    def setup(self) -> None:
        cfg = self.model_config
        self.layout = ObservationLayout(num_replicas=int(cfg["num_replicas"]), oracle=bool(cfg.get("oracle", False)))
        self.set_teacher(cfg.get("router", "least_outstanding"), float(cfg.get("epsilon", 0.0)), int(cfg.get("seed", 0)))

    def set_teacher(self, router: str, epsilon: float, seed: int) -> None:
        """Switch the router (demo collection reuses one set of env runners for several teachers)."""
        if not is_router(router):
            raise WarmRouteError(f"{{flag:teachers}}: unknown router '{router}'; choose one of: {router_names()}")
        if not 0.0 <= epsilon <= 1.0:
            raise WarmRouteError(f"{{flag:epsilon}} must be in [0, 1] (got {epsilon})")
        self.router_name = router
        self.epsilon = epsilon
        self._router = make_router(router, self.layout)
        self._rng = np.random.default_rng(seed)

    @override(TorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        obs_np = obs.detach().cpu().numpy() if isinstance(obs, torch.Tensor) else np.asarray(obs)
        teacher = self._router(obs_np, self._rng)
        ties = equivalent_actions(self.router_name, self.layout, obs_np, teacher)
        explore = self._rng.random(teacher.shape) < self.epsilon
        actions = np.where(explore, self._rng.integers(self.layout.num_replicas, size=teacher.shape), teacher)
        return {
            Columns.ACTIONS: torch.as_tensor(actions, dtype=torch.int64),
            TEACHER_ACTION: torch.as_tensor(teacher, dtype=torch.int64),
            TEACHER_TIES: torch.as_tensor(ties, dtype=torch.bool),
        }

    @override(TorchRLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError("HeuristicTeacherModule is a fixed router and cannot be trained")
