"""Training over a distribution of loads and fleets: draws from the seed, the env runs the drawn setting, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from envs.errors import WarmRouteError
from envs.observation import REPLICA_FEATURE_INDEX
from envs.sim.workload import LOAD_FACTOR, preset
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv

MIXED = "4xh100;2xh100+2xa100"


def _mooncake(**changes: object):
    return preset("mooncake").replace(num_requests=128, trace_start=2000, trace_windows=4, **changes)


def test_each_episode_draws_its_load_and_fleet_from_its_seed_alone() -> None:
    w = _mooncake(load_range="0.5:0.95", fleets=MIXED)
    settings = [w.episode_setting(seed) for seed in range(40)]
    assert settings == [w.episode_setting(seed) for seed in range(40)]
    loads = np.array([load for load, _ in settings])
    assert 0.5 <= loads.min() and loads.max() <= 0.95 and loads.max() - loads.min() > 0.3
    assert {devices for _, devices in settings} == {("h100",) * 4, ("h100", "h100", "a100", "a100")}


def test_load_scales_the_trace_time_scale_relative_to_85_percent() -> None:
    w = _mooncake(load_range="0.5:0.5")
    episode = w.episode_workload(7)
    assert episode.trace_time_scale == pytest.approx(w.trace_time_scale * LOAD_FACTOR / 0.5)
    assert not episode.is_distribution and episode.devices == w.devices


def test_a_slower_fleet_gets_a_slower_replay_close_to_the_measured_preset() -> None:
    w = _mooncake(fleets="2xh100+2xa100")
    episode = w.episode_workload(0)
    assert episode.devices == ("h100", "h100", "a100", "a100")
    # measured: mooncake_mixed runs at 85% of its capacity with time scale 0.99 (the speed sum gives 1.015)
    assert episode.trace_time_scale == pytest.approx(preset("mooncake_mixed").trace_time_scale, rel=0.03)


def test_the_env_runs_and_reports_the_drawn_setting() -> None:
    w = _mooncake(load_range="0.5:0.95", fleets=MIXED)
    env = VidurRoutingEnv(VidurEnvConfig(workload=w))
    speed = REPLICA_FEATURE_INDEX["relative_speed"]
    seen = set()
    first = {devices: seed for seed, (_, devices) in reversed(list(enumerate(map(w.episode_setting, range(40)))))}
    for seed in sorted(first.values()):
        obs, info = env.reset(seed=seed)
        load, devices = w.episode_setting(seed)
        assert info["episode_load"] == load and info["episode_fleet"] == ("4xh100" if "a100" not in devices else "2xh100+2xa100")
        speeds = env._replica_raw[:, speed]
        assert (speeds < 1).any() == ("a100" in devices)
        seen.add(info["episode_fleet"])
        _, _, _, _, step_info = env.step(0)
        assert step_info["episode_load"] == load
    assert seen == {"4xh100", "2xh100+2xa100"}


def test_an_episode_replays_exactly_from_its_seed() -> None:
    w = _mooncake(load_range="0.5:0.95", fleets=MIXED)

    def rollout(seed: int) -> list[np.ndarray]:
        env = VidurRoutingEnv(VidurEnvConfig(workload=w))
        obs, _ = env.reset(seed=seed)
        out, done, k = [obs], False, 0
        while not done and k < 64:
            obs, _, done, _, _ = env.step(k % 4)
            out.append(obs)
            k += 1
        return out

    for a, b in zip(rollout(3), rollout(3)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"load_range": "0:1"}, "load_range"),
        ({"load_range": "0.5:1.6"}, "load_range"),
        ({"load_range": "0.9:0.5"}, "load_range"),
        ({"fleets": "4xh200"}, "unknown device 'h200'"),
        ({"fleets": "4xh100;8xh100"}, "same replica count"),
        ({"fleets": "64xh100", "num_replicas": 64}, "cannot fill"),
    ],
)
def test_bad_distributions_are_refused_naming_the_field(changes: dict, needle: str) -> None:
    with pytest.raises(WarmRouteError, match=needle) as error:
        _mooncake(**changes)
    assert error.value.field in ("load_range", "fleets")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--load-range", "0:1"], "--load-range"),
        (["--load-range", "0.5:2"], "--load-range"),
        (["--fleets", "2xh100+2xb200"], "--fleets: unknown device 'b200'"),
        (["--fleets", "64xh100", "--replicas", "64"], "--fleets: 64 replicas share 512 requests"),
    ],
)
def test_bad_distribution_flags_are_one_line_errors_with_exit_2(
    tmp_path: Path, cli_in_process, args: list[str], needle: str
) -> None:
    out = tmp_path / "run"
    result = cli_in_process("train", "--workload", "mooncake", "--iterations", "1", "--output", str(out), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not out.exists()
