"""Demonstrations collected by real Ray env runners: schema, metadata, teacher labels, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from envs.errors import WarmRouteError
from envs.observation import ObservationLayout
from envs.routers.heuristics import make_router
from rllib_ext.demos import COLUMNS, DemoConfig, load_demos
from warmroute.artifacts.metadata import ArtifactError

pytestmark = pytest.mark.slow  # real Ray actors and RLlib algorithms


def test_two_runners_collect_the_requested_decisions(lo_demos) -> None:
    out, summary, config = lo_demos
    table, meta = load_demos(out)
    assert table.num_rows == summary["num_rows"] >= 2 * config.steps
    assert set(table.column("worker").to_pylist()) == {1, 2}
    counts = {t: table.column("teacher").to_pylist().count(t) for t in config.teachers}
    assert all(c >= config.steps for c in counts.values()), counts
    assert meta["teachers"] == list(config.teachers)
    assert meta["layout"] == config.env.layout.to_dict()
    assert meta["env_config"]["workload"]["num_requests"] == 64
    assert {"ray", "torch", "vidur"} <= set(meta["versions"])


def test_collection_is_reproducible_under_a_seed(lo_demos, tmp_path: Path) -> None:
    """Same seed, same dataset in the same order, whichever runner finishes first (BC's split depends on it)."""
    from rllib_ext.demos import collect_demos

    first_dir, _, config = lo_demos
    collect_demos(config, tmp_path / "again", progress=False)
    first, _ = load_demos(first_dir)
    again, _ = load_demos(tmp_path / "again")
    for column in ("episode_id", "step", "obs", "action", "teacher", "worker"):
        assert first.column(column).equals(again.column(column)), column


def test_schema_and_labels(lo_demos) -> None:
    out, _, config = lo_demos
    table, _ = load_demos(out)
    assert tuple(table.column_names) == COLUMNS
    layout = config.env.layout
    assert table.schema.field("obs").type == pa.list_(pa.float32(), layout.dim)
    assert table.schema.field("teacher_ties").type == pa.list_(pa.bool_(), layout.num_replicas)
    obs = np.asarray(table.column("obs").to_pylist(), dtype=np.float32)
    teacher = np.asarray(table.column("teacher").to_pylist())
    label = np.asarray(table.column("teacher_action").to_pylist())
    action = np.asarray(table.column("action").to_pylist())
    explored = np.asarray(table.column("explored").to_pylist())
    # The recorded label is what the teacher picks on the recorded observation.
    rows = teacher == "least_outstanding"
    recomputed = make_router("least_outstanding", layout)(obs[rows], np.random.default_rng(0))
    np.testing.assert_array_equal(recomputed, label[rows])
    np.testing.assert_array_equal(explored, action != label)
    assert 0.02 < explored.mean() < 0.2  # epsilon 0.1, a random pick hits the teacher's choice 1/4 of the time
    steps = np.asarray(table.column("step").to_pylist())
    assert steps.min() == 0 and np.all(np.isfinite(table.column("reward").to_numpy()))


def test_config_validation() -> None:
    with pytest.raises(WarmRouteError, match="teachers"):
        DemoConfig(teachers=("oracle",))
    with pytest.raises(WarmRouteError, match="epsilon"):
        DemoConfig(epsilon=1.5)
    with pytest.raises(WarmRouteError, match="num_env_runners"):
        DemoConfig(num_env_runners=0)


def test_refuses_missing_empty_and_corrupted(tmp_path: Path, lo_demos) -> None:
    with pytest.raises(ArtifactError, match="no such directory"):
        load_demos(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ArtifactError, match="no metadata.json"):
        load_demos(empty)
    src, _, _ = lo_demos
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text((src / "metadata.json").read_text())
    (broken / "part-0.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(ArtifactError, match="corrupted Parquet"):
        load_demos(broken)
    no_rows = tmp_path / "no_rows"
    no_rows.mkdir()
    (no_rows / "metadata.json").write_text((src / "metadata.json").read_text())
    first = sorted(src.glob("*.parquet"))[0]
    pq.write_table(pq.read_table(first).slice(0, 0), no_rows / "part-0.parquet")
    with pytest.raises(ArtifactError, match="no rows"):
        load_demos(no_rows)


def test_cli_refuses_non_empty_output_and_writes_nothing(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    result = run_cli("collect-demos", "--policy", "round_robin", "--steps", "10", "--output", str(out), "--quiet")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--output" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_layout_json_roundtrip(lo_demos) -> None:
    out, _, config = lo_demos
    stored = json.loads((out / "metadata.json").read_text())["layout"]
    assert ObservationLayout.from_dict(stored) == config.env.layout


def test_cli_collects_with_two_runners(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "demos"
    result = run_cli(
        "collect-demos",
        "--policy",
        "least_work,power_of_two",
        "--steps",
        "120",
        "--steps-per-round",
        "60",
        "--num-env-runners",
        "2",
        "--num-requests",
        "40",
        "--output",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table, meta = load_demos(out)
    assert meta["teachers"] == ["least_work", "power_of_two"] and meta["num_env_runners"] == 2
    assert table.num_rows >= 240 and "decisions" in result.stdout


def test_demonstrations_record_the_load_and_fleet_each_episode_drew(ray_session, lo_demos, tmp_path: Path) -> None:
    from envs.sim.workload import preset
    from envs.vidur_env import VidurEnvConfig
    from rllib_ext.demos import collect_demos

    plain, _ = load_demos(lo_demos[0])
    assert np.isnan(plain.column("load").to_numpy()).all() and set(plain.column("fleet").to_pylist()) == {"4xh100"}
    workload = preset("default").replace(num_requests=128, load_range="0.5:0.9", fleets="4xh100;2xh100+2xa100")
    config = DemoConfig(env=VidurEnvConfig(workload=workload), steps=600, num_env_runners=2, steps_per_round=300, seed=1)
    collect_demos(config, tmp_path / "dist", progress=False)
    table, _ = load_demos(tmp_path / "dist")
    rows = table.select(["episode_id", "load", "fleet"]).to_pylist()
    per_episode: dict[str, set] = {}
    for row in rows:
        per_episode.setdefault(row["episode_id"], set()).add((row["load"], row["fleet"]))
    assert all(len(settings) == 1 for settings in per_episode.values())  # one setting per episode
    loads = [load for ((load, _),) in per_episode.values()]
    assert min(loads) >= 0.5 and max(loads) <= 0.9 and len(set(loads)) == len(loads)
    assert {fleet for ((_, fleet),) in per_episode.values()} <= {"4xh100", "2xh100+2xa100"}
