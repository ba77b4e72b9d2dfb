"""Saving and loading routing policies (the RLModule plus metadata), and acting with them outside RLlib.

A policy directory holds three files, none of which can run code when it is read:

* ``weights.safetensors``: the module's tensors (safetensors: a JSON header and raw bytes);
* ``metadata.json`` (kind ``policy``): the architecture (``model_config``: architecture, hidden sizes, feature
  counts), the observation layout, the env config and how it was trained;
* ``probe.npz`` (read with ``allow_pickle=False``): a fixed batch of observations with the action probabilities the
  module gave when it was saved.

Loading builds the module from the JSON, loads the tensors strictly (every name and shape must match) and proves the
weights arrived by reproducing ``probe.npz``. Policies are shared (a colleague's directory, a sweep's ``best/``), so
nothing here unpickles: RLlib's checkpoint format (``module_state.pkl``, ``class_and_ctor_args.pkl``) is used only
for training checkpoints inside a run directory, which the run itself wrote (docs/warm_start.md, "Trust boundary").

One policy, any fleet size: a ``scorer`` module's weights are per replica, so a scorer policy loads for another
replica count (:func:`check_policy_layout` then compares only the per-replica and request features). It is loaded
and verified at its stored count first, then rebuilt for the new count (:func:`resize_module`) and verified again
on the probe re-laid out for that count (:func:`probe_batch`). An ``mlp`` policy's input and output sizes are tied
to its count: it is refused on any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from envs.observation import ObservationLayout
from rllib_ext.models import ARCHITECTURES, RoutingModule
from warmroute.artifacts.metadata import ArtifactError, read_metadata, write_metadata
from warmroute.artifacts.run_dir import PolicyDir


def build_module(layout: ObservationLayout, model_config: dict[str, Any]) -> RoutingModule:
    """A fresh routing module for observations of ``layout`` (random actor, zero value head)."""
    spec = RLModuleSpec(
        module_class=RoutingModule,
        observation_space=gym.spaces.Box(0.0, np.inf, shape=(layout.dim,), dtype=np.float32),
        action_space=gym.spaces.Discrete(layout.num_replicas),
        model_config=model_config,
    )
    return spec.build()


def check_policy_layout(meta: dict[str, Any], layout: ObservationLayout, source: str) -> None:
    """Refuse a policy (its ``metadata.json`` as ``meta``) that cannot act on observations of ``layout``.

    A scorer policy may be used on any replica count; every other architecture needs its own count.
    """
    stored = meta["layout"]
    architecture = meta.get("model_config", {}).get("architecture", "scorer")
    count = stored.get("num_replicas")
    if architecture != "scorer" and count != layout.num_replicas:
        raise ArtifactError(
            f"{source}: an '{architecture}' policy's input and output sizes are tied to its {count} replicas "
            f"(this run has {layout.num_replicas}); train one for {layout.num_replicas} replicas or use {{flag:architecture}} scorer"
        )
    layout.check_compatible(stored, source=source, any_replica_count=architecture == "scorer")


def resized_model_config(model_config: dict[str, Any], num_replicas: int) -> dict[str, Any]:
    """``model_config`` of the same network for ``num_replicas`` replicas."""
    return {**model_config, "num_replicas": int(num_replicas)}


def resize_module(module: RoutingModule, num_replicas: int) -> RoutingModule:
    """``module`` rebuilt for ``num_replicas`` replicas with the same weights (a scorer's weights are per replica)."""
    if module.num_replicas == num_replicas:
        return module
    if module.architecture != "scorer":
        raise ArtifactError(
            f"an '{module.architecture}' module is tied to its {module.num_replicas} replicas and cannot be resized"
        )
    config = resized_model_config(module.model_config, num_replicas)
    spec = RLModuleSpec(
        module_class=type(module),
        observation_space=gym.spaces.Box(
            0.0, np.inf, shape=(num_replicas * module.num_replica_features + module.num_request_features,), dtype=np.float32
        ),
        action_space=gym.spaces.Discrete(num_replicas),
        model_config=config,
    )
    resized = spec.build()
    resized.load_state_dict(module.state_dict())  # strict: every tensor has the same name and shape
    resized.train(module.training)
    return resized


def action_probabilities(module: RoutingModule, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = module.logits(torch.as_tensor(obs, dtype=torch.float32))
        return torch.softmax(logits, dim=-1).numpy()


def save_policy(
    module: RoutingModule, directory: Path, layout: ObservationLayout, probe_obs: np.ndarray, **metadata: Any
) -> None:
    """Write ``module`` with metadata and a probe batch into ``directory`` (which must exist)."""
    folder = PolicyDir(directory)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}
    save_file(state, str(folder.weights))
    np.savez(folder.probe, obs=probe_obs.astype(np.float32), probs=action_probabilities(module, probe_obs))
    write_metadata(folder.path, PolicyDir.KIND, layout=layout.to_dict(), model_config=module.model_config, **metadata)


def _stored_model_config(meta: dict[str, Any], source: str) -> dict[str, Any]:
    """``model_config`` from ``metadata.json``, checked before a module is built from it."""
    config = meta.get("model_config")
    keys = ("num_replicas", "num_replica_features", "num_request_features")
    ok = (
        isinstance(config, dict)
        and config.get("architecture") in ARCHITECTURES
        and isinstance(config.get("hidden"), list)
        and all(isinstance(h, int) and h >= 1 for h in config["hidden"])
        and config["hidden"]
        and all(isinstance(config.get(k), int) and config[k] >= 1 for k in keys)
    )
    if not ok:
        raise ArtifactError(f"{source}: metadata.json has no valid model_config (architecture, hidden, counts); re-create it")
    return {"architecture": config["architecture"], "hidden": list(config["hidden"]), **{k: config[k] for k in keys}}


def read_weights(directory: str | Path, flag: str = "{flag:policy}") -> dict[str, torch.Tensor]:
    """The module tensors of the policy at ``directory`` (safetensors: parsing never runs code)."""
    path = PolicyDir(directory).weights
    if not path.is_file():
        raise ArtifactError(f"{flag} {directory}: missing {path.name} (incomplete policy directory); re-create it")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{flag} {directory}: {path.name} is not a safetensors file ({exc}); re-create the policy") from exc


def load_policy(
    directory: str | Path, layout: ObservationLayout | None = None, flag: str = "{flag:policy}"
) -> tuple[RoutingModule, dict[str, Any]]:
    """Load a saved policy, refusing one made for another observation layout; verify it against its probe."""
    meta = read_metadata(directory, PolicyDir.KIND, flag)
    source = f"{flag} {directory}"
    stored = ObservationLayout.from_dict(meta["layout"])
    expected = layout or stored
    check_policy_layout(meta, expected, source)
    module = build_module(stored, _stored_model_config(meta, source))
    try:
        module.load_state_dict(read_weights(directory, flag))  # strict: a missing or renamed tensor is refused
    except RuntimeError as exc:  # names or shapes differ from the architecture in metadata.json
        raise ArtifactError(f"{source}: weights do not fit the architecture in metadata.json; re-create the policy") from exc
    module.eval()
    verify_probe(module, directory, flag)  # at the stored count: the weights arrived
    if module.num_replicas != expected.num_replicas:
        module = resize_module(module, expected.num_replicas)
        verify_probe(module, directory, flag)  # at the new count: the resized module acts like the stored one
    return module, meta


def probe_batch(
    directory: str | Path, num_replicas: int, num_replica_features: int, flag: str = "{flag:policy}"
) -> tuple[np.ndarray, np.ndarray]:
    """The saved probe ``(obs, probs)``, re-laid out for ``num_replicas`` replicas.

    Replica ``j`` of the new batch copies stored replica ``j mod R``. A scorer's logit for a replica depends only on
    that replica's and the request's features, so its probabilities on the new batch are the stored ones at
    ``j mod R``, renormalised: the expectation comes from disk, not from the resizing code it checks.
    """
    path = PolicyDir(directory).probe
    if not path.is_file():
        raise ArtifactError(f"{flag} {directory}: missing {path.name} (incomplete policy directory)")
    try:
        probe = np.load(path, allow_pickle=False)  # a pickle (or an object array) is refused, never loaded
        obs, probs = probe["obs"], probe["probs"]
    except (ValueError, OSError, KeyError, IndexError) as exc:
        raise ArtifactError(
            f"{flag} {directory}: {path.name} is not a probe batch of plain arrays (pickled data is never loaded); "
            "re-create the policy"
        ) from exc
    stored = probs.shape[-1]
    if stored == num_replicas:
        return obs, probs
    cut = stored * num_replica_features
    replicas = obs[:, :cut].reshape(len(obs), stored, num_replica_features)
    index = np.arange(num_replicas) % stored
    tiled = np.concatenate([replicas[:, index].reshape(len(obs), -1), obs[:, cut:]], axis=-1)
    expected = probs[:, index] / probs[:, index].sum(axis=-1, keepdims=True)
    return tiled.astype(np.float32), expected


def verify_probe(module: RoutingModule, directory: str | Path, flag: str = "{flag:policy}", atol: float = 1e-5) -> float:
    """Max abs difference between ``module``'s action probabilities and the saved probe (re-laid out for the
    module's replica count); raise if above ``atol``."""
    obs, probs = probe_batch(directory, module.num_replicas, module.num_replica_features, flag)
    diff = float(np.abs(action_probabilities(module, obs) - probs).max())
    if diff > atol:
        raise ArtifactError(f"{flag} {directory}: loaded weights do not reproduce the saved policy (max prob diff {diff:.2e})")
    return diff


class CheckpointPolicy:
    """A saved policy as an ``envs.evaluation.evaluate.Policy``: sampled by default, ``greedy`` takes the argmax."""

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
