"""Saving and loading routing policies (the RLModule plus metadata), and acting with them outside RLlib.

A policy directory holds ``module/`` (RLlib's own ``RLModule`` checkpoint format: no pickle of our objects),
``metadata.json`` (kind ``policy``: layout, env config, model config, how it was trained) and ``probe.npz``: a
fixed batch of observations with the action probabilities the module gave when it was saved. Whoever loads the
policy (evaluation, or PPO warm start) can prove the weights really arrived by reproducing ``probe.npz``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.rl_module.rl_module import RLModule, RLModuleSpec

from envs.observation import ObservationLayout
from rllib_ext.artifacts import ArtifactError, read_metadata, write_metadata
from rllib_ext.models import RoutingModule
from rllib_ext.run_dir import PolicyDir


def build_module(layout: ObservationLayout, model_config: dict[str, Any]) -> RoutingModule:
    spec = RLModuleSpec(
        module_class=RoutingModule,
        observation_space=gym.spaces.Box(0.0, np.inf, shape=(layout.dim,), dtype=np.float32),
        action_space=gym.spaces.Discrete(layout.num_replicas),
        model_config=model_config,
    )
    return spec.build()


def action_probabilities(module: RoutingModule, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = module.logits(torch.as_tensor(obs, dtype=torch.float32))
        return torch.softmax(logits, dim=-1).numpy()


def save_policy(
    module: RoutingModule, directory: Path, layout: ObservationLayout, probe_obs: np.ndarray, **metadata: Any
) -> None:
    """Write ``module`` with metadata and a probe batch into ``directory`` (which must exist)."""
    folder = PolicyDir(directory)
    module.save_to_path(str(folder.module.absolute()))
    np.savez(folder.probe, obs=probe_obs.astype(np.float32), probs=action_probabilities(module, probe_obs))
    write_metadata(folder.path, PolicyDir.KIND, layout=layout.to_dict(), model_config=module.model_config, **metadata)


def load_policy(
    directory: str | Path, layout: ObservationLayout | None = None, flag: str = "--policy"
) -> tuple[RoutingModule, dict[str, Any]]:
    """Load a saved policy, refusing one made for another observation layout; verify it against its probe."""
    meta = read_metadata(directory, PolicyDir.KIND, flag)
    stored = meta["layout"]
    expected = layout or ObservationLayout.from_dict(stored)
    expected.check_compatible(stored, source=f"{flag} {directory}")
    module_path = PolicyDir(directory).module
    if not module_path.is_dir():
        raise ArtifactError(f"{flag} {directory}: missing {module_path.name}/ (incomplete checkpoint)")
    try:
        module = RLModule.from_checkpoint(str(module_path.absolute()))
    except Exception as exc:  # RLlib raises many types for a damaged checkpoint
        raise ArtifactError(
            f"{flag} {directory}: cannot load {module_path.name}/ ({type(exc).__name__}); re-create the policy"
        ) from exc
    module.eval()
    verify_probe(module, directory, flag)
    return module, meta


def verify_probe(module: RoutingModule, directory: str | Path, flag: str = "--policy", atol: float = 1e-5) -> float:
    """Max abs difference between ``module``'s action probabilities and the saved probe; raise if above ``atol``."""
    path = PolicyDir(directory).probe
    if not path.is_file():
        raise ArtifactError(f"{flag} {directory}: missing {path.name} (incomplete policy directory)")
    probe = np.load(path, allow_pickle=False)
    diff = float(np.abs(action_probabilities(module, probe["obs"]) - probe["probs"]).max())
    if diff > atol:
        raise ArtifactError(f"{flag} {directory}: loaded weights do not reproduce the saved policy (max prob diff {diff:.2e})")
    return diff


class CheckpointPolicy:
    """A saved policy as an ``envs.evaluation.Policy``: sampled by default, ``greedy`` takes the argmax."""

    def __init__(self, directory: str | Path, layout: ObservationLayout, greedy: bool = False) -> None:
        self.module, self.metadata = load_policy(directory, layout)
        self.greedy = greedy
        self.name = "/".join(Path(directory).absolute().parts[-2:]) + (" (greedy)" if greedy else "")
        self._rng = np.random.default_rng(0)

    @classmethod
    def from_module(cls, module: RoutingModule, name: str, greedy: bool = False) -> CheckpointPolicy:
        """Wrap an already loaded module (e.g. from an RLlib training checkpoint)."""
        policy = cls.__new__(cls)
        policy.module, policy.metadata, policy.greedy, policy.name = module, {}, greedy, name
        policy._rng = np.random.default_rng(0)
        return policy

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> int:
        probs = action_probabilities(self.module, obs[None, :])[0]
        if self.greedy:
            return int(np.argmax(probs))
        return int(self._rng.choice(len(probs), p=probs / probs.sum()))
