"""The deployable router: a TorchScript module from raw replica statistics to a replica index, and its loader.

``router.pt`` (written by ``warmroute export``, :mod:`warmroute.deploy.export`) holds a scripted
:class:`RawFeatureRouter` and, as a TorchScript extra file, ``warmroute_router.json``: feature names, units and
scales, the observation version, the replica-count rule and library versions. ``torch.jit.load`` reads both; no
pickle is involved, and nothing here imports Ray, so a serving process (or :mod:`warmroute.deploy.vidur_scheduler`)
needs torch only. The input contract is in docs/deploy.md.

Scripted rather than traced: a trace records the replica count of its example input, while the scorer's
per-replica network must accept any count (the ``expand`` over the replica axis stays symbolic in a script).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from envs.errors import WarmRouteError
from envs.observation import FEATURE_UNITS, OBSERVATION_VERSION, REPLICA_FEATURES, ObservationLayout

ROUTER_METADATA = "warmroute_router.json"
"""Name of the JSON metadata stored inside router.pt (``torch.jit.save(..., _extra_files=...)``)."""
ROUTER_KIND = "router"
ROUTER_FORMAT = 1
ANY_COUNT = "any"


class RawFeatureRouter(nn.Module):
    """Raw ``(..., R, F)`` replica statistics and ``(..., G)`` request features -> replica index ``(...)``.

    The division by each feature's scale is the observation normalisation of ``envs.observation``, baked in; the
    network is the policy's actor, copied. ``num_replicas`` is 0 for a scorer (any count) and the fixed count
    otherwise.
    """

    def __init__(self, actor: nn.Module, layout: ObservationLayout, per_replica: bool, num_replicas: int) -> None:
        super().__init__()
        self.actor = actor
        self.register_buffer("replica_scales", torch.as_tensor(layout.replica_scales, dtype=torch.float32))
        self.register_buffer("request_scales", torch.as_tensor(layout.request_scales, dtype=torch.float32))
        self.per_replica = per_replica
        self.num_replicas = num_replicas

    @torch.jit.export
    def logits(self, replica_stats: torch.Tensor, request: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-probabilities ``(..., R)`` of routing the request to each replica."""
        if replica_stats.size(-1) != self.replica_scales.size(0):
            raise ValueError("replica_stats: last dimension must be the number of replica features")
        if request.size(-1) != self.request_scales.size(0):
            raise ValueError("request: last dimension must be the number of request features")
        replicas = replica_stats / self.replica_scales
        request = request / self.request_scales
        if self.per_replica:
            sizes = list(replicas.shape)
            sizes[-1] = request.size(-1)
            return self.actor(torch.cat([replicas, request.unsqueeze(-2).expand(sizes)], dim=-1)).squeeze(-1)
        if replicas.size(-2) != self.num_replicas:
            raise ValueError("replica_stats: this router was exported for a fixed replica count (see its metadata)")
        return self.actor(torch.cat([replicas.flatten(-2), request], dim=-1))

    def forward(self, replica_stats: torch.Tensor, request: torch.Tensor) -> torch.Tensor:
        """The greedy choice: index of the replica with the largest logit."""
        return torch.argmax(self.logits(replica_stats, request), dim=-1)


def router_metadata(layout: ObservationLayout, architecture: str, **fields: Any) -> dict[str, Any]:
    """The JSON stored in router.pt: everything a consumer needs to build inputs and to refuse a mismatch."""
    return {
        "kind": ROUTER_KIND,
        "format_version": ROUTER_FORMAT,
        "observation_version": layout.version,
        "oracle": layout.oracle,
        "architecture": architecture,
        "replicas": ANY_COUNT if architecture == "scorer" else layout.num_replicas,
        "replica_features": [{"name": n, "unit": FEATURE_UNITS[n], "scale": s} for n, s in REPLICA_FEATURES],
        "request_features": [
            {"name": n, "unit": FEATURE_UNITS[n], "scale": float(s)}
            for n, s in zip(layout.request_features, layout.request_scales)
        ],
        "inputs": {
            "replica_stats": "float32 (R, F) or (B, R, F): raw replica_features, in that order",
            "request": "float32 (G,) or (B, G): raw request_features, in that order",
        },
        "outputs": {"forward": "int64 () or (B,): replica index", "logits": "float32 (R,) or (B, R)"},
        **fields,
    }


def load_router(
    path: str | Path, num_replicas: int | None = None, flag: str = "{flag:router}"
) -> tuple[torch.jit.ScriptModule, dict]:
    """Load router.pt and its metadata; refuse one made for other features, or for another fixed replica count."""
    path = Path(path)
    if not path.is_file():
        raise WarmRouteError(f"{flag} {path}: no such file; write one with `warmroute export`")
    extra = {ROUTER_METADATA: ""}
    try:
        router = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra[ROUTER_METADATA])
    except (RuntimeError, ValueError) as exc:  # not a TorchScript archive, or no/corrupted metadata
        raise WarmRouteError(f"{flag} {path}: not a WarmRoute router ({type(exc).__name__}); re-export it") from exc
    if not isinstance(meta, dict) or meta.get("kind") != ROUTER_KIND or meta.get("format_version") != ROUTER_FORMAT:
        raise WarmRouteError(f"{flag} {path}: not a WarmRoute router of format {ROUTER_FORMAT}; re-export it")
    names = [f["name"] for f in meta["replica_features"]]
    if meta["observation_version"] != OBSERVATION_VERSION or names != [n for n, _ in REPLICA_FEATURES]:
        raise WarmRouteError(
            f"{flag} {path}: made for observation version {meta['observation_version']}, this WarmRoute builds "
            f"version {OBSERVATION_VERSION}; re-export it from a policy trained on this version"
        )
    if num_replicas is not None and meta["replicas"] not in (ANY_COUNT, num_replicas):
        raise WarmRouteError(
            f"{flag} {path}: an '{meta['architecture']}' router is tied to {meta['replicas']} replicas "
            f"(this fleet has {num_replicas}); export a scorer policy or one trained for {num_replicas} replicas"
        )
    router.eval()
    return router, meta
