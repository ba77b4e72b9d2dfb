"""``latency_model``: a supervised TTFT regressor that routes each request to the replica it predicts fastest.

The supervised baseline a systems engineer asks about before reinforcement learning, in the spirit of llm-d's
predicted-latency scorer (llm-d blog, 2026-03-13: XGBoost trained on observed TTFT per candidate pod, with a little
exploration so that it sees the replicas the scorer would not pick). Here:

* **Logging** (``envs.evaluation.latency_fit``, which runs the env). Episodes of a logging router (``least_ttft`` by default) with epsilon-random exploration on the
  training windows or seeds; each decision logs the chosen replica's observation row, the request's features and
  the request's observed TTFT once the episode ends.
* **Fit.** XGBoost (``xgboost-cpu``) regresses log TTFT on ``[replica features, request features]`` (one row per
  decision: the model is per replica, so any fleet size works). The log keeps the heavy tail from dominating and
  does not change which replica is lowest.
* **Route.** Predict for every replica, take the lowest (ties: lower index).

The fitted model is one XGBoost JSON file (never a pickle) whose ``warmroute`` attribute holds the observation
layout, so a file made for another layout is refused in one line. Named ``latency_model:model=PATH``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from envs.errors import WarmRouteError
from envs.observation import ObservationLayout

if TYPE_CHECKING:
    import xgboost

LATENCY_MODEL = "latency_model"
FIT_COMMAND = "scripts/fit_latency_model.py"
ATTRIBUTE = "warmroute"
"""XGBoost model attribute holding the JSON metadata (layout, logging policy, fit statistics)."""
NTHREAD = 1
"""XGBoost threads (DMatrix, training, prediction): routing is one small batch at a time. Note: once XGBoost has
run, a process that forks (a fork-context ProcessPoolExecutor, the lookahead) deadlocks in the child's first
prediction (GNU OpenMP after fork) unless ``OMP_NUM_THREADS=1`` was set at start: use the spawn context."""
MIN_TTFT_S = 1e-3
"""Floor of the regression target before the log (a TTFT is never 0, but a full hit computes one token)."""


def features(replicas: np.ndarray, request: np.ndarray) -> np.ndarray:
    """``(B, R, F + G)`` regression inputs: each replica's observation row next to the request's features."""
    tiled = np.broadcast_to(request[..., None, :], (*replicas.shape[:-1], request.shape[-1]))
    return np.concatenate([replicas, tiled], axis=-1)


def load_latency_model(path: str, layout: ObservationLayout) -> xgboost.Booster:
    """The fitted booster at ``path``, refused in one line when missing, unreadable or made for another layout."""
    import xgboost

    fix = f"fit one with {FIT_COMMAND}"
    if not Path(path).is_file():
        raise WarmRouteError(f"{{flag:policies}} {LATENCY_MODEL}:model={path}: no such file; {fix}")
    booster = xgboost.Booster()
    try:
        booster.load_model(path)
    except xgboost.core.XGBoostError as exc:
        raise WarmRouteError(
            f"{{flag:policies}} {LATENCY_MODEL}:model={path}: not an XGBoost JSON model ({str(exc).splitlines()[0]}); {fix}"
        ) from None
    booster.set_param({"nthread": NTHREAD})
    meta = booster.attr(ATTRIBUTE)
    if meta is None:
        raise WarmRouteError(f"{{flag:policies}} {LATENCY_MODEL}:model={path}: no WarmRoute metadata in the model; {fix}")
    layout.check_compatible(json.loads(meta)["layout"], source=f"{LATENCY_MODEL}:model={path}", any_replica_count=True)
    return booster


def latency_model_router(name: str, layout: ObservationLayout) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """Router for ``latency_model:model=PATH`` over observations of ``layout``."""
    settings = dict(s.partition("=")[::2] for s in name.split(":")[1:])
    if set(settings) != {"model"} or not settings["model"]:
        raise WarmRouteError(
            f"{{flag:policies}} {name}: give the fitted file as {LATENCY_MODEL}:model=PATH ({FIT_COMMAND} fits one)"
        )
    import xgboost

    booster = load_latency_model(settings["model"], layout)

    def route(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        replicas, request = layout.split(np.asarray(obs, dtype=np.float64))
        x = features(replicas, request)
        predicted = booster.predict(xgboost.DMatrix(x.reshape(-1, x.shape[-1]), nthread=NTHREAD)).reshape(x.shape[:-1])
        return predicted.argmin(axis=-1)

    return route
