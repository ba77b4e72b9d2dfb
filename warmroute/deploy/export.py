"""``warmroute export``: a saved policy as a TorchScript router that runs without RLlib (see docs/deploy.md).

The policy is loaded like everywhere else (:func:`rllib_ext.policy_io.load_policy`: layout check, probe check,
resized when it is a scorer and ``--replicas`` differs from its own count), its actor is wrapped in
:class:`~warmroute.deploy.router_file.RawFeatureRouter` and scripted, and the scripted router must reproduce the RLlib
module's logits and greedy choices on the probe batch (converted back to raw units) before anything is written.
The file is written next to its destination and renamed into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import copy
import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.errors import WarmRouteError
from envs.observation import ObservationLayout
from rllib_ext.models import RoutingModule
from rllib_ext.policy_io import load_policy, probe_batch
from warmroute.artifacts.atomic import staged_file
from warmroute.artifacts.metadata import ArtifactError, library_versions, read_metadata
from warmroute.artifacts.run_dir import PolicyDir
from warmroute.deploy.router_file import ROUTER_METADATA, RawFeatureRouter, router_metadata

EXPORT_ATOL = 1e-5


@dataclass(frozen=True)
class ExportConfig:
    """What to export and for which fleet."""

    policy: str
    """Policy directory (``warmroute pretrain`` output or a training run's ``policy/``)."""
    output: str
    """New router file (TorchScript, e.g. router.pt); must not exist."""
    num_replicas: int | None = None
    """Replica count the router is checked on (None: the policy's own). A scorer router then accepts any count;
    an mlp router only its own."""

    def __post_init__(self) -> None:
        if self.num_replicas is not None and self.num_replicas < 1:
            raise WarmRouteError(f"{{flag:num_replicas}} must be >= 1 (got {self.num_replicas})")

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "output": self.output, "num_replicas": self.num_replicas}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportConfig:
        return cls(policy=data["policy"], output=data["output"], num_replicas=data.get("num_replicas"))


def script_router(module: RoutingModule, layout: ObservationLayout) -> torch.jit.ScriptModule:
    """The module's actor with the normalisation of ``layout`` in front, scripted."""
    scorer = module.architecture == "scorer"
    router = RawFeatureRouter(copy.deepcopy(module.actor), layout, scorer, 0 if scorer else module.num_replicas)
    return torch.jit.script(router.eval())


def raw_inputs(obs: np.ndarray, layout: ObservationLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw ``(B, R, F)`` replica statistics and ``(B, G)`` request features behind observations ``obs`` of ``layout``
    (exact: every scale is a power of two)."""
    replicas, request = layout.split(obs)
    return (
        torch.as_tensor(replicas * layout.replica_scales, dtype=torch.float32),
        torch.as_tensor(request * layout.request_scales, dtype=torch.float32),
    )


def check_router(router: torch.jit.ScriptModule, module: RoutingModule, obs: np.ndarray, layout: ObservationLayout) -> float:
    """Max abs logit gap between ``router`` on raw inputs and ``module`` on ``obs``; raise if off or if any greedy
    choice differs."""
    with torch.no_grad():
        expected = module.logits(torch.as_tensor(obs, dtype=torch.float32))
        replicas, request = raw_inputs(obs, layout)
        got = router.logits(replicas, request)
        choices = router(replicas, request)
    gap = float((got - expected).abs().max())
    if gap > EXPORT_ATOL or not torch.equal(choices, expected.argmax(dim=-1)):
        raise ArtifactError(f"the scripted router does not reproduce the policy (max logit gap {gap:.2e}); not written")
    return gap


def _check_output(output: Path) -> None:
    """Refuse an output that exists or whose directory is missing before any policy is loaded."""
    if output.exists():
        raise ArtifactError(f"{{flag:output}} {output}: already exists; choose a new file name or remove it")
    if not output.parent.is_dir():
        raise ArtifactError(f"{{flag:output}} {output}: directory {output.parent} does not exist; create it first")


def router_from_policy(
    policy: str | Path, num_replicas: int | None = None, flag: str = "{flag:policy}"
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The policy at ``policy`` as a checked, scripted router for ``num_replicas`` replicas (None: its own count),
    with the metadata router.pt would carry."""
    stored = ObservationLayout.from_dict(read_metadata(policy, PolicyDir.KIND, flag)["layout"])
    count = num_replicas or stored.num_replicas
    layout = ObservationLayout(num_replicas=count, oracle=stored.oracle)  # this WarmRoute's version: an old policy is refused
    module, meta = load_policy(policy, layout, flag)
    router = script_router(module, layout)
    obs, _ = probe_batch(policy, count, layout.num_replica_features, flag)
    gap = check_router(router, module, obs, layout)
    info = router_metadata(
        layout,
        module.architecture,
        checked_on_replicas=count,
        probe_max_logit_gap=gap,
        policy={key: meta.get(key) for key in ("source", "teachers", "env_config", "warm_start", "env_steps")},
        policy_path=str(Path(policy).absolute()),
        versions=library_versions(),
    )
    return router, info


def export_router(cfg: ExportConfig) -> dict[str, Any]:
    """Write ``cfg.output``; return its metadata (with the measured logit gap on the probe batch)."""
    output = Path(cfg.output)
    _check_output(output)
    with ExitStack() as stack:
        try:
            temp = stack.enter_context(staged_file(output))  # made first: an unwritable place fails before loading
        except OSError as exc:
            raise ArtifactError(
                f"{{flag:output}} {output}: cannot write in {output.parent} ({exc.strerror}); choose another place"
            ) from exc
        router, info = router_from_policy(cfg.policy, cfg.num_replicas)
        info["export"] = cfg.to_dict()
        torch.jit.save(router, temp, _extra_files={ROUTER_METADATA: json.dumps(info, indent=2)})
    return info
