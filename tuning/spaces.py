"""Search spaces over train flags: the default over the warm-start settings, the ``--space`` file format, and the
translation into Tune domains.

A space file (YAML or JSON) maps train flags to one spec each; a key may be spelt ``lr``, ``--lr``,
``kl-ref-coef-initial`` or ``kl_ref_coef_initial``::

    lr: {loguniform: [1.0e-5, 1.0e-3]}
    kl_ref_coef_initial: {uniform: [0.1, 1.0]}
    kl_ref_schedule: {choice: [linear, cosine]}
    gamma: {grid: [0.95, 0.99]}

``uniform``/``loguniform`` take ``[low, high]`` (integer flags draw integers, both ends included); ``choice``
samples one of the values; ``grid`` tries every value (Tune's ``grid_search``; not with Optuna). The whole file is
checked before Ray starts: unknown keys, malformed specs, ``low > high``, and values that ``TrainConfig`` would
refuse, including every combination of the ranges' ends (so ``kl_ref_coef_final`` can never exceed
``kl_ref_coef_initial`` in any sample).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path
from typing import Any

import yaml
from ray import tune

from envs.errors import WarmRouteError
from rllib_ext.train_config import KLRefConfig, TrainConfig

KINDS = ("uniform", "loguniform", "choice", "grid")
# Flags a sweep may vary: space key -> (TrainConfig section, field). The batch size, network and fleet stay fixed:
# they set the budget and the observation layout that every trial must share.
SWEEPABLE: dict[str, tuple[str, str]] = {
    **{
        k: ("ppo", k)
        for k in ("lr", "gamma", "clip_param", "entropy_coeff", "vf_loss_coeff", "grad_clip", "num_epochs", "minibatch_size")
    },
    "lambda": ("ppo", "lambda_"),
    **{
        k: ("kl", k)
        for k in (
            "kl_ref_coef_initial",
            "kl_ref_coef_final",
            "kl_ref_decay_steps",
            "kl_ref_schedule",
            "warmup_steps",
            "entropy_warmup_coef",
            "critic_warmup_steps",
            "adaptive_warmup",
            "adaptive_balance_threshold",
            "adaptive_kl_speedup",
        )
    },
}
WARM_START_ONLY = tuple(key for key, (section, name) in SWEEPABLE.items() if name in KLRefConfig.warm_only_fields())
"""Keys that change nothing in a cold start (marked on their ``KLRefConfig`` fields)."""
PBT_KEYS = ("lr", "kl_ref_coef_initial", "kl_ref_coef_final")
"""What PBT perturbs: the settings that can change mid-run without rebuilding the network or the schedules' shape."""
MAX_CORNERS = 1 << 14

Space = dict[str, dict[str, list[Any]]]
"""``{key: {kind: values}}``, keys normalised to :data:`SWEEPABLE` names."""


class SpaceError(WarmRouteError):
    """A bad ``--space`` file or spec; the message names the file and key."""


def default_space(cfg: TrainConfig) -> Space:
    """The warm-start settings (or, for a cold start, plain PPO's), with ranges scaled to the run's env-step budget."""
    budget = cfg.iterations * cfg.ppo.train_batch_size
    space: Space = {
        "lr": {"loguniform": [3e-5, 1e-3]},
        "gamma": {"uniform": [0.95, 0.995]},
        "lambda": {"uniform": [0.9, 1.0]},
    }
    if not cfg.kl.enable_warm_start:
        return {**space, "entropy_coeff": {"loguniform": [1e-4, 0.03]}}
    return {
        **space,
        "kl_ref_coef_initial": {"loguniform": [0.05, 2.0]},
        "kl_ref_coef_final": {"choice": [0.0, 0.01]},
        "kl_ref_decay_steps": {"loguniform": [max(1, budget // 10), max(2, budget)]},
        "kl_ref_schedule": {"choice": ["linear", "cosine", "exponential"]},
        "warmup_steps": {"uniform": [0, max(1, budget // 3)]},
        "entropy_warmup_coef": {"loguniform": [1e-3, 0.05]},
        "critic_warmup_steps": {"uniform": [0, max(1, budget // 5)]},
        "adaptive_warmup": {"choice": [False, True]},
    }


def _field_type(key: str) -> type:
    section, name = SWEEPABLE[key]
    return type(getattr(getattr(TrainConfig(), section), name))


def normalise_key(key: str) -> str | None:
    name = key.lstrip("-").replace("-", "_")
    return name if name in SWEEPABLE else None


def _check_spec(key: str, spec: Any, source: str) -> dict[str, list[Any]]:
    kinds = ", ".join(KINDS)
    if not isinstance(spec, dict) or len(spec) != 1:
        raise SpaceError(f"{source}: '{key}' must map to one spec such as {{uniform: [low, high]}} ({kinds})")
    ((kind, values),) = spec.items()
    kind_of = _field_type(key)
    if kind not in KINDS:
        raise SpaceError(f"{source}: '{key}': unknown spec '{kind}'; use one of {kinds}")
    if not isinstance(values, list) or not values:
        raise SpaceError(f"{source}: '{key}': {kind} needs a non-empty list of values")
    if kind in ("uniform", "loguniform"):
        if kind_of not in (int, float):
            raise SpaceError(f"{source}: '{key}' is not numeric; use choice or grid")
        if len(values) != 2 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
        ):
            raise SpaceError(f"{source}: '{key}': {kind} needs [low, high] (two finite numbers)")
        low, high = values
        if low > high:
            raise SpaceError(f"{source}: '{key}': low {low} > high {high}; swap them")
        if kind == "loguniform" and low <= 0:
            raise SpaceError(f"{source}: '{key}': loguniform needs low > 0 (got {low})")
        if kind_of is int and not all(float(v).is_integer() for v in values):
            raise SpaceError(f"{source}: '{key}' is an integer flag; give integer bounds")
        return {kind: [kind_of(low), kind_of(high)]}
    for value in values:
        ok = isinstance(value, kind_of) or (kind_of is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise SpaceError(f"{source}: '{key}': {value!r} is not a {kind_of.__name__}")
    return {kind: [kind_of(v) for v in values]}


def apply_params(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """``base`` with the swept values in ``params`` (keys of :data:`SWEEPABLE`; others ignored) filled in."""
    changes: dict[str, dict[str, Any]] = {"ppo": {}, "kl": {}}
    for key, value in params.items():
        if key in SWEEPABLE:
            section, name = SWEEPABLE[key]
            changes[section][name] = _field_type(key)(value)
    return dataclasses.replace(
        base, ppo=dataclasses.replace(base.ppo, **changes["ppo"]), kl=dataclasses.replace(base.kl, **changes["kl"])
    )


def validate_space(raw: Any, base: TrainConfig, source: str = "{flag:space}") -> Space:
    """Normalised ``raw`` (a mapping read from a file or :func:`default_space`); raise :class:`SpaceError` if bad."""
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(f"{source}: expected a non-empty mapping of train flags to specs")
    space: Space = {}
    for key, spec in raw.items():
        name = normalise_key(str(key))
        if name is None:
            raise SpaceError(f"{source}: unknown key '{key}'; sweepable train flags: {', '.join(SWEEPABLE)}")
        if name in WARM_START_ONLY and not base.kl.enable_warm_start:
            raise SpaceError(f"{source}: '{key}' has no effect without {{flag:enable_warm_start}}; remove it or warm-start")
        space[name] = _check_spec(name, spec, source)
    candidates = [[(key, v) for v in next(iter(spec.values()))] for key, spec in space.items()]
    combos = (
        itertools.product(*candidates)
        if math.prod(len(c) for c in candidates) <= MAX_CORNERS
        else ([c] for c in itertools.chain(*candidates))
    )
    for combo in combos:
        try:
            apply_params(base, dict(combo))
        except ValueError as exc:
            setting = ", ".join(f"{k}={v}" for k, v in combo)
            raise SpaceError(f"{source}: {setting} is refused ({getattr(exc, 'template', exc)})") from None
    return space


def load_space(path: str | Path, base: TrainConfig) -> Space:
    """Read and validate a YAML or JSON space file."""
    source = f"{{flag:space}} {path}"
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpaceError(f"{source}: cannot read ({exc.strerror})") from None
    try:
        raw = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpaceError(
            f"{source}: not valid {'JSON' if str(path).endswith('.json') else 'YAML'} ({str(exc).splitlines()[0]})"
        ) from None
    return validate_space(raw, base, source)


def domain(key: str, spec: dict[str, list[Any]]) -> Any:
    """The Tune domain for one normalised spec."""
    ((kind, values),) = spec.items()
    integer = _field_type(key) is int
    if kind == "uniform":
        return tune.randint(values[0], values[1] + 1) if integer else tune.uniform(*values)
    if kind == "loguniform":
        return tune.lograndint(values[0], values[1] + 1) if integer else tune.loguniform(*values)
    return tune.choice(values) if kind == "choice" else tune.grid_search(values)


def param_space(space: Space, search: str) -> dict[str, Any]:
    """Tune's ``param_space``; ``--search grid`` tries every ``choice`` too and refuses ranges."""
    if search == "grid":
        ranged = [k for k, spec in space.items() if next(iter(spec)) in ("uniform", "loguniform")]
        if ranged:
            raise SpaceError(
                f"{{flag:search}} grid: {', '.join(ranged)} {'is a range' if len(ranged) == 1 else 'are ranges'}; "
                "give grid or choice values, or use {flag:search} random/optuna"
            )
        return {key: tune.grid_search(next(iter(spec.values()))) for key, spec in space.items()}
    if search == "optuna":
        gridded = [k for k, spec in space.items() if "grid" in spec]
        if gridded:
            raise SpaceError(
                f"{{flag:search}} optuna samples, it cannot run a grid ({', '.join(gridded)}); use choice, or {{flag:search}} random/grid"
            )
    return {key: domain(key, spec) for key, spec in space.items()}
