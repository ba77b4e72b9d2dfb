"""Today's production routers (Dynamo's KV cost, llm-d's sticky-until-saturated, least predicted TTFT, the fitted
latency model) follow their published rules on hand-built observations, and bad settings are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from envs.evaluation.latency_fit import fit_latency_model
from envs.observation import REPLICA_FEATURE_INDEX, REQUEST_FEATURE_INDEX, ObservationLayout
from envs.routers.heuristics import is_router, make_router
from envs.routers.latency_model import ATTRIBUTE
from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv

LAYOUT = ObservationLayout(num_replicas=4)
F, Q = REPLICA_FEATURE_INDEX, REQUEST_FEATURE_INDEX
H100_PRICE, A100_PRICE = 2.8e-5, 8.0e-5  # s per prefill token, roughly the roofline's (envs.vidur_env.device_features)


def _obs(prompt: float = 4096, **columns: tuple[float, ...]) -> np.ndarray:
    """An observation from raw per-replica columns (feature name -> 4 values); H100 prices unless given."""
    replicas = np.zeros((4, LAYOUT.num_replica_features))
    replicas[:, F["relative_speed"]] = 1.0
    replicas[:, F["prefill_s_per_token"]] = H100_PRICE
    replicas[:, F["host_load_s_per_token"]] = 2.6e-6
    for name, values in columns.items():
        replicas[:, F[name]] = values
    request = np.zeros(LAYOUT.num_request_features)
    request[Q["prefill_tokens"]] = prompt
    return LAYOUT.build(replicas, request)


def _route(name: str, obs: np.ndarray, seed: int = 0) -> int:
    return int(make_router(name, LAYOUT)(obs[None], np.random.default_rng(seed))[0])


def test_kv_cost_takes_the_lowest_weighted_prefill_plus_active_blocks() -> None:
    # prompt 8 blocks. Logits (blocks): r0 8 uncached + 8 active + 8 new = 24; r1 full hit 0 + 24 + 8 = 32; r2 8 + 0 + 8 = 16
    obs = _obs(8 * 512, cached_hbm_tokens=(0, 4096, 0, 0), active_kv_tokens=(4096, 12288, 0, 6144))
    assert _route("kv_cost", obs) == 2
    # weight 4: r1 = 0 + 32 = 32 beats r2 = 32 + 8 = 40
    assert _route("kv_cost:overlap_score_weight=4", obs) == 1


def test_kv_cost_credits_host_hits_at_three_quarters_and_counts_queued_prefill_on_request() -> None:
    # r0: 4096 tokens in HBM; r1: 4096 in host (credit 0.75 -> 1024 tokens to compute); equal active blocks
    obs = _obs(8192, cached_hbm_tokens=(4096, 0, 0, 0), cached_host_tokens=(0, 4096, 0, 0), active_kv_tokens=(0, 0, 0, 0))
    assert _route("kv_cost", obs) == 0
    assert _route("kv_cost:host_credit=1", obs) == 0  # tie at equal credit: the lower index
    queued = _obs(8192, cached_hbm_tokens=(4096, 0, 0, 0), pending_uncached_prefill_tokens=(20000, 0, 0, 0))
    assert _route("kv_cost", queued) == 0 and _route("kv_cost:pending_weight=1", queued) == 1


def test_kv_cost_temperature_samples_low_logits_more_and_is_reproducible_per_seed() -> None:
    obs = _obs(8192, cached_hbm_tokens=(8192, 4096, 0, 0), active_kv_tokens=(0, 0, 0, 0))
    router = make_router("kv_cost:temperature=0.3", LAYOUT)
    batch = np.repeat(obs[None], 4000, axis=0)
    draws = router(batch, np.random.default_rng(7))
    np.testing.assert_array_equal(draws, router(batch, np.random.default_rng(7)))
    counts = np.bincount(draws, minlength=4)
    # normalised logits 0, 0.5, 1, 1: weights e^0, e^-1.67, e^-3.33, e^-3.33
    expected = np.exp(-np.array([0.0, 0.5, 1.0, 1.0]) / 0.3)
    np.testing.assert_allclose(counts / counts.sum(), expected / expected.sum(), atol=0.03)


def test_sticky_load_keeps_affinity_until_the_in_flight_prefill_passes_tau() -> None:
    # r2 holds 90% of the prompt but has the most uncached prefill in flight; r1 only 50%
    obs = _obs(10240, cached_hbm_tokens=(0, 5120, 9216, 0), pending_uncached_prefill_tokens=(1000, 3000, 50000, 0))
    assert _route("sticky_load", obs) == 2  # affinity (>= 0.8) wins while 50,000 <= tau 286,720
    assert _route("sticky_load:tau=40000", obs) == 3  # saturated: affinity dropped, least in-flight prefill
    assert _route("sticky_load:theta=0.5:tau=40000", obs) == 1  # a lower theta admits r1


def test_sticky_load_scores_decode_bound_requests_by_active_requests() -> None:
    # the prompt is fully cached on r0 and r3: nothing to prefill, so load in flight does not matter, active requests do
    obs = _obs(
        1024,
        cached_hbm_tokens=(1024, 0, 0, 1024),
        pending_uncached_prefill_tokens=(0, 0, 0, 9000),
        outstanding_requests=(12, 1, 1, 3),
    )
    assert _route("sticky_load", obs) == 3
    assert _route("sticky_load:decode_bound_tokens=0", obs) == 3  # 0 uncached tokens is still decode-bound
    assert _route("sticky_load:tau=5000", obs) == 0  # r3 saturated: r0 is the only affine replica left


def test_least_ttft_prices_queues_by_device_and_counts_host_loads() -> None:
    # r0/r1 H100, r2/r3 A100 (about 2.9x slower per token)
    prices = (H100_PRICE, H100_PRICE, A100_PRICE, A100_PRICE)
    obs = _obs(2048, pending_uncached_prefill_tokens=(30000, 40000, 12000, 20000), prefill_s_per_token=prices)
    assert _route("least_ttft", obs) == 0  # 32,048 x 2.8e-5 = 0.90 s against 14,048 x 8e-5 = 1.12 s
    shorter = _obs(2048, pending_uncached_prefill_tokens=(30000, 40000, 6000, 20000), prefill_s_per_token=prices)
    assert _route("least_ttft", shorter) == 2  # 8,048 x 8e-5 = 0.64 s
    # a host hit costs its load: r0 holds the prefix in HBM, r1 in host DRAM, otherwise equal
    host = _obs(8192, cached_hbm_tokens=(4096, 0, 0, 0), cached_host_tokens=(0, 4096, 0, 0), outstanding_requests=(3, 1, 0, 0))
    assert _route("least_ttft", host) == 0
    assert _route("least_ttft:host_weight=0", host) == 1  # free loads: a tie, broken by fewer active requests


def test_the_env_observes_uncached_pending_prefill_active_kv_and_device_prices() -> None:
    workload = preset("shared_prefix_mixed").replace(num_requests=48)
    env = VidurRoutingEnv(VidurEnvConfig(workload=workload))
    obs, _ = env.reset(seed=3)
    done, seen_hit_queued = False, False
    while not done:
        replicas, _ = env.layout.split(obs.astype(np.float64))
        pending = replicas[:, F["pending_prefill_tokens"]] * 16384
        uncached = replicas[:, F["pending_uncached_prefill_tokens"]] * 16384
        assert np.all(uncached <= pending + 1e-6)
        seen_hit_queued |= bool(np.any(uncached < pending - 1))
        active = replicas[:, F["active_kv_tokens"]] * 262144
        np.testing.assert_allclose(active / np.array(env._num_blocks) / 16, replicas[:, F["kv_cache_usage"]], rtol=1e-5)
        obs, _, done, _, _ = env.step(int(np.argmin(replicas[:, F["outstanding_requests"]])))
    assert seen_hit_queued  # queued requests routed onto their prefix count only their suffix
    price = replicas[:, F["prefill_s_per_token"]]
    assert price[0] == price[1] < price[2] == price[3]  # h100, h100, a100, a100


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A latency model fitted on two short shared_prefix training episodes."""
    config = VidurEnvConfig(workload=preset("shared_prefix").replace(num_requests=64))
    path = tmp_path_factory.mktemp("latency") / "model.json"
    fit_latency_model(config, [(config.workload, 1), (config.workload, 2)], path, rounds=30)
    return path


def test_latency_model_routes_to_its_lowest_prediction_from_a_json_file(fitted: Path) -> None:
    meta = json.loads(json.loads(fitted.read_text())["learner"]["attributes"][ATTRIBUTE])
    assert meta["layout"]["version"] == LAYOUT.version and meta["decisions"] == 128 and meta["holdout_mape"] >= 0
    name = f"latency_model:model={fitted}"
    assert is_router(name)
    idle_hit = _obs(
        4224,
        cached_hbm_tokens=(0, 0, 4096, 0),
        outstanding_requests=(8, 8, 0, 8),
        pending_uncached_prefill_tokens=(9000,) * 2 + (0, 9000),
    )
    assert _route(name, idle_hit) == 2  # an idle replica holding the prefix


def test_a_latency_model_fitted_for_another_layout_is_refused_in_one_line(fitted: Path, tmp_path: Path, cli_in_process) -> None:
    model = json.loads(fitted.read_text())
    meta = json.loads(model["learner"]["attributes"][ATTRIBUTE])
    meta["layout"]["version"] = 2
    model["learner"]["attributes"][ATTRIBUTE] = json.dumps(meta)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(model))
    out = tmp_path / "out.json"
    result = cli_in_process(
        "evaluate", "--workload", "shared_prefix", "--num-requests", "8", "--episodes", "1", "--quiet", "--json", str(out),
        "--policy", f"latency_model:model={old}",
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and str(old) in lines[0] and "version" in lines[0], result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("policy", "needle"),
    [
        ("kv_cost:overlap=2", "--policy kv_cost:overlap=2"),
        ("kv_cost:temperature=-0.5", "temperature must be in [0, inf]"),
        ("sticky_load:theta=1.5", "theta"),
        ("least_ttft:queue_weight=x", "queue_weight must be a number"),
        ("latency_model", "latency_model:model=PATH"),
        ("latency_model:model=/nonexistent/model.json", "/nonexistent/model.json: no such file"),
    ],
)
def test_bad_production_router_settings_are_one_line_errors_with_exit_2(
    tmp_path: Path, cli_in_process, policy: str, needle: str
) -> None:
    out = tmp_path / "out.json"
    result = cli_in_process(
        "evaluate", "--workload", "shared_prefix", "--num-requests", "8", "--episodes", "1", "--quiet", "--json", str(out),
        "--policy", policy,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and needle in lines[0], result.stderr
    assert not out.exists()


def test_demonstrations_and_the_pipeline_teacher_choice_offer_the_production_routers(fitted: Path) -> None:
    import gymnasium as gym
    import torch
    from ray.rllib.core.columns import Columns

    from rllib_ext.teacher import TEACHER_ACTION, HeuristicTeacherModule
    from warmroute.pipeline.config import PipelineConfig
    from warmroute.pipeline.stages import heuristic_names

    obs = _obs(8 * 512, cached_hbm_tokens=(0, 4096, 0, 0), active_kv_tokens=(4096, 12288, 0, 6144))
    for name, expected in (("kv_cost", 2), ("kv_cost:overlap_score_weight=4", 1), (f"latency_model:model={fitted}", None)):
        module = HeuristicTeacherModule(
            observation_space=gym.spaces.Box(0.0, np.inf, (LAYOUT.dim,), np.float32),
            action_space=gym.spaces.Discrete(4),
            model_config={"router": name, "num_replicas": 4},
        )
        out = module.forward_inference({Columns.OBS: torch.as_tensor(obs[None])})
        assert int(out[TEACHER_ACTION][0]) == (expected if expected is not None else _route(name, obs))
    config = PipelineConfig(env=VidurEnvConfig(workload=preset("mooncake")), teacher=f"latency_model:model={fitted}")
    names = heuristic_names(config)
    assert {"kv_cost", "sticky_load", "least_ttft", f"latency_model:model={fitted}"} <= set(names)
