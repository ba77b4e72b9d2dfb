"""Phase 1a: heuristic demonstrations sampled in parallel by RLlib env runners, stored as Parquet.

``collect_demos`` builds an ``EnvRunnerGroup`` of remote ``SingleAgentEnvRunner``\\ s whose module is a
:class:`~rllib_ext.teacher.HeuristicTeacherModule`, then for each teacher switches the module and samples in
chunks (one progress-bar tick per chunk). Each runner turns its episode chunks into columns before returning
them, so only compact arrays cross the object store, and the driver writes one Parquet shard per chunk while
the runners go on sampling.
Output goes to a temporary sibling directory that is renamed into place at the end: a failed or interrupted
collection leaves nothing behind.

Dataset (one row per routing decision): ``episode_id, step, obs, action, teacher_action, teacher_ties,
teacher, reward, explored, worker, load, fleet`` (``load``: the fraction of capacity the episode drew, NaN at
the workload's own rate; ``fleet``: its devices, e.g. ``2xh100+2xa100``; see envs.sim.distribution) plus ``metadata.json`` (observation layout, env config, teachers, versions).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.env_runner_group import EnvRunnerGroup
from tqdm.auto import tqdm

from envs.errors import WarmRouteError
from envs.routers.heuristics import is_router, router_names
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv
from rllib_ext.ray_runtime import cpus_per_runner, ensure_ray
from rllib_ext.teacher import TEACHER_ACTION, TEACHER_TIES, HeuristicTeacherModule
from warmroute.artifacts.atomic import staged_dir
from warmroute.artifacts.metadata import ArtifactError, read_metadata, require_fresh_output, write_metadata
from warmroute.artifacts.run_dir import DemoDir

COLUMNS = (
    "episode_id", "step", "obs", "action", "teacher_action", "teacher_ties", "teacher", "reward", "explored", "worker",
    "load", "fleet",
)  # fmt: skip
SETTING_COLUMNS = ("load", "fleet")
"""Columns that demonstrations collected before training over distributions lack (they are still accepted)."""


@dataclass(frozen=True)
class DemoConfig:
    """What to collect and how."""

    env: VidurEnvConfig = field(default_factory=VidurEnvConfig)
    """Routing env (workload, reward, observation)."""
    teachers: tuple[str, ...] = ("least_outstanding",)
    """Heuristic routers to record; their decisions mix into one dataset."""
    steps: int = 20_000
    """Routing decisions to record per teacher (rounded up to whole rounds)."""
    num_env_runners: int = 2
    """Parallel Ray env runners sampling episodes."""
    epsilon: float = 0.0
    """Probability of replacing the teacher's action by a random one (state coverage; labels stay the teacher's)."""
    steps_per_round: int = 1024
    """Decisions per runner between progress updates and Parquet shards."""
    seed: int = 0
    """Seed of env runners (worker w uses seed + w) and teacher RNGs."""

    def __post_init__(self) -> None:
        unknown = [t for t in self.teachers if not is_router(t)]
        if not self.teachers or unknown:
            raise WarmRouteError(
                f"{{flag:teachers}}: unknown router(s) {unknown or '(none given)'}; choose from: {router_names()}"
            )
        if self.steps < 1:
            raise WarmRouteError(f"{{flag:steps}} must be >= 1 (got {self.steps})")
        if self.num_env_runners < 1:
            raise WarmRouteError(f"{{flag:num_env_runners}} must be >= 1 for parallel collection (got {self.num_env_runners})")
        if not 0.0 <= self.epsilon <= 1.0:
            raise WarmRouteError(f"{{flag:epsilon}} must be in [0, 1] (got {self.epsilon})")
        if self.steps_per_round < 1:
            raise WarmRouteError(f"{{flag:steps_per_round}} must be >= 1 (got {self.steps_per_round})")


def _sample_columns(runner: Any, num_timesteps: int, force_reset: bool) -> dict[str, np.ndarray]:
    """Run on an env runner: sample and flatten episode chunks into per-decision columns.

    ``episode_id`` holds RLlib's episode id (a random UUID); the driver renumbers it (:func:`_number_episodes`).
    """
    episodes = runner.sample(num_timesteps=num_timesteps, explore=True, force_reset=force_reset)
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("episode_id", "step", "obs", "action", "teacher_action", "teacher_ties", "reward", "load", "fleet")
    }
    for episode in episodes:
        n = len(episode)
        if n == 0:
            continue
        parts["episode_id"].append(np.full(n, episode.id_, dtype=object))
        parts["step"].append(np.arange(episode.t_started, episode.t_started + n, dtype=np.int64))
        parts["obs"].append(np.asarray(episode.get_observations(slice(0, n)), dtype=np.float32))
        parts["action"].append(np.asarray(episode.get_actions(), dtype=np.int64))
        parts["teacher_action"].append(np.asarray(episode.get_extra_model_outputs(TEACHER_ACTION), dtype=np.int64))
        parts["teacher_ties"].append(np.asarray(episode.get_extra_model_outputs(TEACHER_TIES), dtype=bool))
        parts["reward"].append(np.asarray(episode.get_rewards(), dtype=np.float64))
        infos = episode.get_infos(slice(0, n))  # every step's info carries its episode's load and fleet
        parts["load"].append(np.array([info.get("episode_load", np.nan) for info in infos], dtype=np.float64))
        parts["fleet"].append(np.array([info["episode_fleet"] for info in infos], dtype=object))
    columns = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
    columns["worker"] = np.full(len(columns["step"]), runner.worker_index, dtype=np.int32)
    return columns


def _number_episodes(uuids: np.ndarray, worker: int, numbers: dict[str, int]) -> np.ndarray:
    """``w<worker>-e<n>`` ids, n counting the worker's episodes in the order they started (``numbers`` keeps the count).

    RLlib's episode ids are random UUIDs; numbered ids make the dataset, and the validation split drawn from its
    episodes, the same on every run with the same seed. A worker's chunks reach the driver in the order it sampled
    them (one request in flight per worker), so the numbering is deterministic.
    """
    return np.array([f"w{worker:03d}-e{numbers.setdefault(u, len(numbers)):06d}" for u in uuids], dtype=object)


def _to_table(columns: dict[str, np.ndarray], teacher: str, obs_dim: int, num_replicas: int) -> pa.Table:
    n = len(columns["step"])
    obs = pa.FixedSizeListArray.from_arrays(pa.array(columns["obs"].reshape(-1), pa.float32()), obs_dim)
    ties = pa.FixedSizeListArray.from_arrays(pa.array(columns["teacher_ties"].reshape(-1), pa.bool_()), num_replicas)
    return pa.table(
        {
            "episode_id": pa.array(columns["episode_id"], pa.string()),
            "step": pa.array(columns["step"], pa.int64()),
            "obs": obs,
            "action": pa.array(columns["action"], pa.int64()),
            "teacher_action": pa.array(columns["teacher_action"], pa.int64()),
            "teacher_ties": ties,
            "teacher": pa.array([teacher] * n, pa.string()),
            "reward": pa.array(columns["reward"], pa.float64()),
            "explored": pa.array(columns["action"] != columns["teacher_action"], pa.bool_()),
            "worker": pa.array(columns["worker"], pa.int32()),
            "load": pa.array(columns["load"], pa.float64()),
            "fleet": pa.array(columns["fleet"], pa.string()),
        }
    )


def _sample_rounds(runners: EnvRunnerGroup, steps: int, rounds: int, tag: str) -> Iterator[tuple[int, int, dict]]:
    """Yield ``(worker, chunk_index, columns)`` as each runner finishes a chunk, relaunching it at once until it has done
    ``rounds`` chunks. Runners never wait for each other (no per-round barrier), so a slow episode on one runner
    does not idle the rest."""
    remaining = {worker: rounds for worker in runners.healthy_worker_ids()}

    def launch(worker: int, first: bool) -> None:
        runners.foreach_env_runner_async(
            partial(_sample_columns, num_timesteps=steps, force_reset=first), tag=tag, remote_worker_ids=[worker]
        )

    for worker in remaining:
        launch(worker, first=True)
    while any(remaining.values()):
        if runners.num_in_flight_async_reqs(tag=tag) == 0:
            raise RuntimeError(f"collect-demos: env runners stopped answering with {sum(remaining.values())} chunks to go")
        for worker, columns in runners.fetch_ready_async_reqs(tags=tag, timeout_seconds=0.5):
            remaining[worker] -= 1
            if remaining[worker] > 0:
                launch(worker, first=False)
            yield worker, rounds - remaining[worker] - 1, columns


def build_teacher_runners(config: DemoConfig) -> EnvRunnerGroup:
    """Remote env runners whose module is the (switchable) heuristic teacher."""
    env = config.env
    algo_config = (
        PPOConfig()
        .environment(env=VidurRoutingEnv, env_config=env.to_dict())
        .env_runners(
            num_env_runners=config.num_env_runners,
            num_envs_per_env_runner=1,
            num_cpus_per_env_runner=cpus_per_runner(config.num_env_runners),
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=HeuristicTeacherModule,
                model_config={
                    "router": config.teachers[0],
                    "num_replicas": env.workload.num_replicas,
                    "oracle": env.oracle,
                    "epsilon": config.epsilon,
                    "seed": config.seed,
                },
            )
        )
        .debugging(seed=config.seed)
        # A restarted runner would come back with the first teacher and its seed: fail loudly instead.
        .fault_tolerance(restart_failed_env_runners=False)
    )
    return EnvRunnerGroup(config=algo_config, local_env_runner=False)


def collect_demos(config: DemoConfig, output: str | Path, progress: bool = True) -> dict[str, Any]:
    """Record ``config.steps`` decisions per teacher into ``output`` (Parquet + metadata.json); return a summary."""
    final = require_fresh_output(output)
    ensure_ray()
    layout = config.env.layout
    runners = build_teacher_runners(config)
    rounds = -(-config.steps // (config.steps_per_round * config.num_env_runners))
    rows, sample_s = 0, 0.0
    episode_numbers: dict[int, dict[str, int]] = defaultdict(dict)  # per worker, across teachers
    try:
        with (
            staged_dir(final) as staging,
            tqdm(
                total=rounds * len(config.teachers) * config.num_env_runners,
                desc="collect-demos",
                unit="chunk",
                disable=not progress,
            ) as bar,
        ):
            for t_index, teacher in enumerate(config.teachers):
                runners.foreach_env_runner(
                    lambda er, teacher=teacher, t_index=t_index: er.module.set_teacher(
                        teacher, config.epsilon, config.seed * 1000 + 100 * t_index + er.worker_index
                    ),
                    local_env_runner=False,
                )
                start = time.perf_counter()
                for worker, chunk, columns in _sample_rounds(runners, config.steps_per_round, rounds, tag=teacher):
                    columns["episode_id"] = _number_episodes(columns["episode_id"], worker, episode_numbers[worker])
                    table = _to_table(columns, teacher, layout.dim, layout.num_replicas)
                    pq.write_table(table, DemoDir(staging).shard(teacher, worker, chunk))
                    rows += table.num_rows
                    bar.set_postfix(decisions=rows, per_s=f"{rows / max(sample_s + time.perf_counter() - start, 1e-9):.0f}")
                    bar.update(1)
                sample_s += time.perf_counter() - start
            summary = {"num_rows": rows, "sample_seconds": sample_s, "decisions_per_s": rows / max(sample_s, 1e-9)}
            write_metadata(
                staging,
                DemoDir.KIND,
                layout=layout.to_dict(),
                env_config=config.env.to_dict(),
                teachers=list(config.teachers),
                steps_per_teacher=config.steps,
                epsilon=config.epsilon,
                num_env_runners=config.num_env_runners,
                seed=config.seed,
                **summary,
            )
    finally:
        runners.stop()
    return summary


def load_demos(directory: str | Path, flag: str = "{flag:demo}") -> tuple[pa.Table, dict[str, Any]]:
    """Read a demonstrations directory, refusing empty, corrupted or incomplete data with a one-line error."""
    meta = read_metadata(directory, DemoDir.KIND, flag)
    shards = DemoDir(directory).shards()
    if not shards:
        raise ArtifactError(f"{flag} {directory}: no Parquet shards; collect demonstrations with `warmroute collect-demos`")
    try:
        table = pa.concat_tables([pq.read_table(shard) for shard in shards])
    except (pa.ArrowInvalid, OSError) as exc:
        raise ArtifactError(
            f"{flag} {directory}: corrupted Parquet ({str(exc).splitlines()[0]}); re-collect the demonstrations"
        ) from exc
    missing = [c for c in COLUMNS if c not in table.column_names and c not in SETTING_COLUMNS]
    if missing:
        raise ArtifactError(f"{flag} {directory}: Parquet lacks columns {missing}; re-collect the demonstrations")
    if table.num_rows == 0:
        raise ArtifactError(f"{flag} {directory}: the dataset has no rows; collect with a larger {{flag:steps}}")
    return table, meta


def load_demo_set(directories: list[str | Path], flag: str = "{flag:demo}") -> tuple[pa.Table, dict[str, Any]]:
    """Several demonstration directories read as one dataset, e.g. a different teacher per load band.

    Every directory must share the first one's observation layout. Episode ids get the directory's index as a prefix
    (each collection numbers its episodes from 0), so the validation split still holds out whole episodes. The
    metadata is the first directory's, with the teachers of all of them, the directories in ``sources`` and each
    one's workload in ``env_configs`` (pooled directories may cover different loads and fleets).
    """
    if len(directories) == 1:
        return load_demos(directories[0], flag)
    tables, metas = [], []
    for index, directory in enumerate(directories):
        table, meta = load_demos(directory, flag)
        if metas and meta["layout"] != metas[0]["layout"]:
            raise ArtifactError(
                f"{flag} {directory}: another observation layout than {directories[0]}; collect every directory "
                "with the same --replicas and WarmRoute version"
            )
        ids = pa.array([f"d{index}/{e}" for e in table.column("episode_id").to_pylist()])
        tables.append(table.set_column(table.schema.get_field_index("episode_id"), "episode_id", ids))
        metas.append(meta)
    teachers = list(dict.fromkeys(t for meta in metas for t in meta["teachers"]))
    merged = {
        **metas[0],
        "teachers": teachers,
        "sources": [str(Path(d).absolute()) for d in directories],
        "env_configs": [meta["env_config"] for meta in metas],
    }
    return pa.concat_tables(tables, promote_options="default"), merged
