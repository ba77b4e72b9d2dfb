"""Fast-forward must not change a single simulated number: the same episode with it on and off, compared."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from envs.errors import WarmRouteError
from envs.evaluation.evaluate import HeuristicPolicy
from envs.sim.workload import WorkloadConfig, preset
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv
from warmroute.cli.workload_args import add_workload_args, env_config_from_args

FIELDS = ("arrived_at", "_scheduled_at", "prefill_completed_at", "completed_at", "num_restarts", "cached_tokens")


def _episode(workload, fast_forward: bool, router: str, reward: str = "e2e") -> dict:
    env = VidurRoutingEnv(VidurEnvConfig(workload=workload, fast_forward=fast_forward, reward=reward))
    policy = HeuristicPolicy(router, env.layout)
    obs, _ = env.reset(seed=5)
    observations, rewards, actions, done, info = [obs], [], [], False, {}
    while not done:
        action = policy.act(obs)
        obs, reward, done, _, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        actions.append(action)
    # follow-up turns get vidur Request ids in creation order, which differs: key them by stream position
    requests = {getattr(r, "prefix_index", r.id): [float(getattr(r, f, 0)) for f in FIELDS] for r in env.routed_requests}
    return {"requests": requests, "obs": np.array(observations), "rewards": np.array(rewards), "actions": actions, "info": info}


@pytest.mark.parametrize(
    ("name", "router", "num_requests", "reward"),
    [
        ("default", "least_outstanding", 80, "e2e"),
        ("heterogeneous", "least_outstanding", 80, "ttft"),
        ("mooncake", "weighted_scorer", 60, "e2e"),
        ("multi_turn", "weighted_scorer", 160, "e2e"),
        ("long_context", "least_outstanding", 50, "slo"),
    ],
)
def test_fast_forward_reproduces_step_by_step_simulation(name: str, router: str, num_requests: int, reward: str) -> None:
    workload = preset(name).replace(num_requests=num_requests)
    step = _episode(workload, False, router, reward)
    fast = _episode(workload, True, router, reward)
    assert fast["actions"] == step["actions"]
    assert fast["requests"].keys() == step["requests"].keys()
    ids = sorted(step["requests"])
    np.testing.assert_allclose([fast["requests"][i] for i in ids], [step["requests"][i] for i in ids], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(fast["obs"], step["obs"])
    np.testing.assert_allclose(fast["rewards"], step["rewards"], rtol=1e-9, atol=1e-9)
    assert fast["info"]["kv_usage_peak"] == step["info"]["kv_usage_peak"]
    np.testing.assert_allclose(fast["info"]["kv_usage_mean"], step["info"]["kv_usage_mean"], rtol=0, atol=1e-12)
    for key in ("preemptions", "cache_hit_rate"):
        if key in step["info"]:
            assert fast["info"][key] == pytest.approx(step["info"][key], abs=1e-9)


def test_fast_forward_reproduces_preemptions_step_by_step() -> None:
    """Llama-2-7B (no GQA) with long answers fills two A40s' KV caches: sarathi preempts and restarts requests.

    Fast-forward hands a replica back to vidur before any decode could find no free block, so every preemption
    is vidur's own; this holds it to that, request by request.
    """
    workload = WorkloadConfig(
        model="meta-llama/Llama-2-7b-hf",
        device="a40",
        num_replicas=2,
        qps=2.0,
        num_requests=60,
        lengths="uniform",
        min_tokens=2048,
        max_tokens=4096,
        prefill_to_decode_ratio=1.0,
    )
    step = _episode(workload, False, "least_outstanding")
    fast = _episode(workload, True, "least_outstanding")
    assert step["info"]["preemptions"] > 0, "the case is meant to preempt"
    assert fast["info"]["preemptions"] == step["info"]["preemptions"]
    assert fast["actions"] == step["actions"]
    ids = sorted(step["requests"])
    restarts = FIELDS.index("num_restarts")
    assert [fast["requests"][i][restarts] for i in ids] == [step["requests"][i][restarts] for i in ids]
    assert sum(step["requests"][i][restarts] for i in ids) > 0
    np.testing.assert_allclose([fast["requests"][i] for i in ids], [step["requests"][i] for i in ids], rtol=0, atol=1e-9)
    assert fast["info"]["kv_usage_peak"] == step["info"]["kv_usage_peak"]


def test_fast_forward_is_refused_for_vidurs_profiled_predictors() -> None:
    workload = preset("default").replace(predictor="linear_regression")
    with pytest.raises(WarmRouteError, match="fast_forward on needs predictor roofline"):
        VidurEnvConfig(workload=workload, fast_forward=True)
    assert not VidurEnvConfig(workload=workload).uses_fast_forward
    assert VidurEnvConfig().uses_fast_forward


@pytest.mark.parametrize(
    ("typed", "expected"),
    [([], None), (["--fast-forward", "auto"], None), (["--fast-forward", "on"], True), (["--fast_forward", "off"], False)],
)
def test_fast_forward_flag_sets_the_env_config(typed: list[str], expected: bool | None) -> None:
    parser = argparse.ArgumentParser()
    add_workload_args(parser, VidurEnvConfig())
    assert env_config_from_args(parser.parse_args(typed), VidurEnvConfig()).fast_forward is expected


def test_fast_forward_on_with_a_profiled_predictor_is_a_one_line_error(tmp_path: Path, cli_in_process) -> None:
    out = tmp_path / "out.json"
    result = cli_in_process(
        "evaluate", "--policy", "round_robin", "--episodes", "1", "--quiet", "--json", str(out),
        "--predictor", "linear_regression", "--fast-forward", "on",
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--fast-forward on needs --predictor roofline" in lines[0], result.stderr
    assert not out.exists()
