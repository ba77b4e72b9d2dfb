"""Phase 1b: behaviour cloning of the PPO routing module from heuristic demonstrations.

Plain torch on the PPO ``RLModule`` itself (cross-entropy on its logits), because the result must be exactly
the module PPO later trains; RLlib's BC algorithm goes through Ray Data and is slow on small machines
(see DESIGN-NOTES). Label smoothing keeps the clone soft, so that the KL to it used by warm-start PPO stays finite.
Validation is split by episode (decisions within an episode are correlated), accuracy counts any replica the
teacher ranks equal to its choice, and training stops when the validation loss stops improving.

Demonstrations of the clairvoyant lookahead also carry every replica's rollout return (``teacher_returns``). With
``cost_weight`` > 0 part of the loss is the clone's expected regret under those returns (cost-sensitive imitation,
as in AggreVaTe): a near-tie costs nothing whichever replica the clone picks, a costly mistake costs its price, where
cross-entropy treats every label alike.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from envs.errors import WarmRouteError
from envs.observation import ObservationLayout
from rllib_ext.demos import load_demo_set
from rllib_ext.models import ARCHITECTURES, DEFAULT_HIDDEN, module_model_config
from rllib_ext.policy_io import build_module, save_policy
from warmroute.artifacts.metadata import ArtifactError, require_fresh_output

PROBE_SIZE = 64


@dataclass(frozen=True)
class BCConfig:
    """Behaviour-cloning hyperparameters."""

    epochs: int = 60
    """Maximum passes over the training split."""
    batch_size: int = 256
    """Decisions per gradient step."""
    lr: float = 3e-3
    """Adam learning rate."""
    label_smoothing: float = 0.05
    """Mass spread uniformly over all replicas in the target (> 0 keeps the clone soft; KL to it stays finite)."""
    validation_fraction: float = 0.1
    """Fraction of episodes held out for validation."""
    patience: int = 8
    """Epochs without validation-loss improvement before stopping."""
    cost_weight: float = 0.0
    """Share of the loss that is the expected regret under the demonstrations' per-replica returns (0: cross-entropy
    alone; needs lookahead demonstrations, which record the returns)."""
    architecture: str = "scorer"
    """``scorer`` (permutation-equivariant, default) or ``mlp``."""
    hidden: tuple[int, ...] = DEFAULT_HIDDEN
    """Hidden layer widths."""
    num_replicas: int | None = None
    """Replica count the clone is for; demos made for another count are refused (None: take the demos')."""
    seed: int = 0
    """Seed of the split, initialisation and minibatch order."""

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"{{flag:epochs}} must be >= 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"{{flag:batch_size}} must be >= 1 (got {self.batch_size})"),
            (self.lr > 0 and math.isfinite(self.lr), f"{{flag:lr}} must be a positive number (got {self.lr})"),
            (0 <= self.label_smoothing < 1, f"{{flag:label_smoothing}} must be in [0, 1) (got {self.label_smoothing})"),
            (
                0 < self.validation_fraction < 1,
                f"{{flag:validation_fraction}} must be in (0, 1) (got {self.validation_fraction})",
            ),
            (self.patience >= 1, f"{{flag:patience}} must be >= 1 (got {self.patience})"),
            (0 <= self.cost_weight <= 1, f"{{flag:cost_weight}} must be in [0, 1] (got {self.cost_weight})"),
            (self.architecture in ARCHITECTURES, f"{{flag:architecture}} must be one of {', '.join(ARCHITECTURES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise WarmRouteError(message)


def _split_by_episode(episode_ids: np.ndarray, teachers: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of validation rows: whole episodes, drawn per teacher so every teacher is validated."""
    held_out: set[str] = set()
    for teacher in np.unique(teachers):
        unique = np.unique(episode_ids[teachers == teacher])
        count = min(max(1, int(round(fraction * len(unique)))), len(unique) - 1) if len(unique) > 1 else 0
        held_out.update(rng.choice(unique, size=count, replace=False).tolist())
    mask = np.fromiter((e in held_out for e in episode_ids), dtype=bool, count=len(episode_ids))
    for teacher in np.unique(teachers):  # a teacher with a single episode: hold out the tail of its rows
        rows = np.flatnonzero(teachers == teacher)
        if not mask[rows].any():
            mask[rows[-max(1, int(fraction * len(rows))) :]] = True
    return mask


def _arrays(table: pa.Table, layout: ObservationLayout) -> dict[str, np.ndarray]:
    return {
        "obs": table.column("obs").combine_chunks().flatten().to_numpy().reshape(-1, layout.dim).astype(np.float32),
        "label": table.column("teacher_action").to_numpy(),
        "ties": table.column("teacher_ties")
        .combine_chunks()
        .flatten()
        .to_numpy(zero_copy_only=False)
        .reshape(-1, layout.num_replicas),
        "teacher": table.column("teacher").to_numpy(zero_copy_only=False),
        "episode": table.column("episode_id").to_numpy(zero_copy_only=False),
    }


def normalised_regret(returns: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """(decisions, replicas) regret of each replica, ``best return - its return``, in units of its episode's mean
    spread (best minus the replicas' mean), so windows, loads and rewards of different scales weigh alike."""
    regret = returns.max(axis=1, keepdims=True) - returns
    spread = regret.mean(axis=1)
    scale = np.ones(len(returns))
    for episode in np.unique(episodes):
        rows = episodes == episode
        mean_spread = spread[rows].mean()
        scale[rows] = mean_spread if mean_spread > 0 else 1.0  # an episode of exact ties: its regrets are all 0
    return (regret / scale[:, None]).astype(np.float32)


def _regret(table: pa.Table, data: dict[str, np.ndarray], layout: ObservationLayout, first: str | Path) -> np.ndarray:
    """The normalised regret of every row, refusing demonstrations that do not record their returns."""
    column = table.column("teacher_returns").combine_chunks() if "teacher_returns" in table.column_names else None
    if column is None or column.null_count:
        raise ArtifactError(
            f"{{flag:demo}} {first}: {{flag:cost_weight}} needs every replica's return, which only "
            "scripts/lookahead_demos.py records; clone these demonstrations with --cost-weight 0"
        )
    returns = column.flatten().to_numpy().reshape(-1, layout.num_replicas)
    return normalised_regret(returns, data["episode"])


def _loss(logits: torch.Tensor, label: torch.Tensor, regret: torch.Tensor | None, config: BCConfig) -> torch.Tensor:
    """Cross-entropy to the label, mixed with the expected regret of the clone's distribution when ``cost_weight``."""
    loss = F.cross_entropy(logits, label, label_smoothing=config.label_smoothing)
    if regret is None:
        return loss
    expected_regret = (torch.softmax(logits, dim=-1) * regret).sum(dim=-1).mean()
    return (1 - config.cost_weight) * loss + config.cost_weight * expected_regret


def _evaluate(module, data: dict[str, np.ndarray], config: BCConfig) -> dict[str, Any]:
    regret = torch.as_tensor(data["regret"]) if "regret" in data else None
    with torch.no_grad():
        logits = module.logits(torch.as_tensor(data["obs"]))
        loss = _loss(logits, torch.as_tensor(data["label"]), regret, config).item()
        choice = logits.argmax(dim=-1).numpy()
    rows = np.arange(len(choice))
    correct = data["ties"][rows, choice]
    per_teacher = {t: float(correct[data["teacher"] == t].mean()) for t in np.unique(data["teacher"])}
    metrics = {"loss": loss, "accuracy": float(correct.mean()), "accuracy_per_teacher": per_teacher}
    if regret is not None:
        metrics["greedy_regret"] = float(data["regret"][rows, choice].mean())
    return metrics


def pretrain(
    demo_dir: str | Path | list[str | Path], output: str | Path, config: BCConfig, progress: bool = True
) -> dict[str, Any]:
    """Clone the demonstrations at ``demo_dir`` (one directory or several, pooled) into a policy directory ``output``;
    return the final metrics."""
    final = require_fresh_output(output)
    demo_dirs = list(demo_dir) if isinstance(demo_dir, list | tuple) else [demo_dir]
    if not demo_dirs:
        raise ArtifactError("{flag:demo} names no directory; give DIR or DIR,DIR,...")
    first = demo_dirs[0]  # errors and the ``demo_dir`` metadata name it; ``demo_dirs`` lists them all
    table, meta = load_demo_set(demo_dirs)
    stored = meta["layout"]
    layout = ObservationLayout(num_replicas=config.num_replicas or int(stored["num_replicas"]), oracle=bool(stored["oracle"]))
    layout.check_compatible(stored, source=f"{{flag:demo}} {first}")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    data = _arrays(table, layout)
    if config.cost_weight > 0:
        data["regret"] = _regret(table, data, layout, first)
    val_mask = _split_by_episode(data["episode"], data["teacher"], config.validation_fraction, rng)
    train = {k: v[~val_mask] for k, v in data.items()}
    if len(train["label"]) == 0:
        raise ArtifactError(
            f"{{flag:demo}} {first}: nothing left to train on after the validation split; collect more {{flag:steps}}"
        )
    val = {k: v[val_mask] for k, v in data.items()}
    module = build_module(layout, module_model_config(layout, config.architecture, config.hidden))
    optimizer = torch.optim.Adam(module.actor_parameters(), lr=config.lr)
    obs_t, label_t = torch.as_tensor(train["obs"]), torch.as_tensor(train["label"])
    regret_t = torch.as_tensor(train["regret"]) if "regret" in train else None
    history: list[dict[str, Any]] = []
    best_loss, best_state, best_epoch, stale = math.inf, None, 0, 0
    start = time.perf_counter()
    bar = tqdm(range(config.epochs), desc="pretrain", unit="epoch", disable=not progress)
    for epoch in bar:
        module.train()
        order = torch.as_tensor(rng.permutation(len(label_t)))
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = _loss(module.logits(obs_t[idx]), label_t[idx], None if regret_t is None else regret_t[idx], config)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        module.eval()
        metrics = {"epoch": epoch, **_evaluate(module, val, config)}
        history.append(metrics)
        bar.set_postfix(val_loss=f"{metrics['loss']:.4f}", val_acc=f"{metrics['accuracy']:.3f}")
        if metrics["loss"] < best_loss - 1e-5:
            best_loss, best_state, best_epoch, stale = metrics["loss"], copy.deepcopy(module.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is None:
        raise ArtifactError(f"{{flag:demo}} {first}: validation loss is not finite; check the demonstrations")
    module.load_state_dict(best_state)
    result = {
        "best_epoch": best_epoch,
        "validation": history[best_epoch],
        "train_rows": int(len(label_t)),
        "validation_rows": int(val_mask.sum()),
        "seconds": time.perf_counter() - start,
    }
    final.mkdir(parents=True, exist_ok=True)
    try:
        save_policy(
            module,
            final,
            layout,
            probe_obs=val["obs"][:PROBE_SIZE],
            source="behaviour_cloning",
            env_config=meta["env_config"],
            demo_env_configs=meta.get("env_configs", [meta["env_config"]]),
            teachers=meta["teachers"],
            demo_dir=str(Path(first).absolute()),
            demo_dirs=[str(Path(d).absolute()) for d in demo_dirs],
            bc_config={**asdict(config), "hidden": list(config.hidden)},
            history=history,
            **result,
        )
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
    return result
