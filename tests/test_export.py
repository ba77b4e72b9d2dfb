"""The deployable router: TorchScript export, the vidur global scheduler, and one scorer policy on any fleet size.

The policy here is a real ``RoutingModule`` saved as a policy directory, with hand-set weights (a readable
load-balancing rule: fewer outstanding requests and pending prefill tokens, faster device) so that its choices
spread over the fleet and a wrong feature would change them; tests/test_fleet_size.py does the same with a
behaviour-cloned policy under Ray.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from vidur.simulator import Simulator

from envs.errors import WarmRouteError
from envs.evaluation.evaluate import HeuristicPolicy
from envs.observation import REPLICA_FEATURE_INDEX, ObservationLayout
from envs.sim.memory import size_replicas
from envs.sim.simulation import build_simulation_config, reset_vidur_counters
from envs.sim.workload import WorkloadConfig, preset
from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv
from rllib_ext.models import module_model_config
from rllib_ext.policy_io import CheckpointPolicy, build_module, load_policy, save_policy
from warmroute.deploy.export import ExportConfig, export_router, raw_inputs
from warmroute.deploy.router_file import load_router
from warmroute.deploy.vidur_scheduler import WarmRouteGlobalSchedulerConfig

RULE = {"outstanding_requests": -8.0, "pending_prefill_tokens": -2.0, "kv_cache_usage": -1.0, "relative_speed": 0.5}


def mixed_fleet(num_replicas: int, num_requests: int = 80) -> WorkloadConfig:
    """``heterogeneous`` (2 x H100 + 2 x A100 at 32.2 req/s) grown to ``num_replicas``: half H100, half A100, same load per replica."""
    devices = ("h100",) * (num_replicas - num_replicas // 2) + ("a100",) * (num_replicas // 2)
    base = preset("heterogeneous")
    return base.replace(
        num_replicas=num_replicas, replica_devices=devices, qps=base.qps * num_replicas / 4, num_requests=num_requests
    )


def env_states(workload: WorkloadConfig, count: int = 96) -> np.ndarray:
    """Observations visited by least_outstanding on ``workload`` (seed 3)."""
    env = VidurRoutingEnv(VidurEnvConfig(workload=workload))
    policy = HeuristicPolicy("least_outstanding", env.layout)
    obs, _ = env.reset(seed=3)
    rows = [obs]
    while len(rows) < count:
        obs, _, done, _, _ = env.step(policy.act(obs))
        rows.append(obs if not done else env.reset()[0])
    return np.stack(rows)


def save_rule_policy(directory: Path, architecture: str = "scorer") -> Path:
    """A 4-replica policy directory whose scorer computes ``RULE`` (identity first layer: features are >= 0)."""
    layout = ObservationLayout(num_replicas=4)
    width = layout.num_replica_features + layout.num_request_features
    module = build_module(layout, module_model_config(layout, architecture, hidden=(width,)))
    if architecture == "scorer":
        with torch.no_grad():
            first, last = module.actor[0], module.actor[2]
            first.weight.copy_(torch.eye(width))
            first.bias.zero_()
            last.weight.zero_()
            last.bias.zero_()
            for name, weight in RULE.items():
                last.weight[0, REPLICA_FEATURE_INDEX[name]] = weight
    directory.mkdir(parents=True)
    save_policy(module, directory, layout, env_states(mixed_fleet(4), 32), source="test")
    return directory


@pytest.fixture(scope="module")
def scorer_dir(tmp_path_factory) -> Path:
    return save_rule_policy(tmp_path_factory.mktemp("rule") / "scorer")


@pytest.fixture(scope="module")
def mlp_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_rule_policy(tmp_path_factory.mktemp("rule") / "mlp", "mlp")


@pytest.fixture(scope="module")
def router_path(scorer_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("router") / "router.pt"
    export_router(ExportConfig(policy=str(scorer_dir), output=str(path)))
    return path


@pytest.mark.parametrize("num_replicas", [4, 6])
def test_torchscript_router_chooses_like_the_rllib_policy(scorer_dir, router_path, num_replicas: int) -> None:
    layout = ObservationLayout(num_replicas=num_replicas)
    module, _ = load_policy(scorer_dir, layout)
    router, meta = load_router(router_path, num_replicas)
    obs = env_states(mixed_fleet(num_replicas))
    with torch.no_grad():
        expected = module.logits(torch.as_tensor(obs)).argmax(-1)
        replicas, request = raw_inputs(obs, layout)
        batched = router(replicas, request)
        one_by_one = torch.stack([router(replicas[i], request[i]) for i in range(len(obs))])
    assert torch.equal(batched, expected) and torch.equal(one_by_one, expected)
    assert len(set(expected.tolist())) >= 3  # the states make the rule spread requests over the fleet
    assert meta["replicas"] == "any" and [f["name"] for f in meta["request_features"]] == list(layout.request_features)


def plain_vidur_decisions(workload: WorkloadConfig, seed: int, router: str) -> list[int]:
    """Run vidur's own ``Simulator.run()`` with the WarmRoute scheduler; return its routing decisions."""
    reset_vidur_counters()
    config = build_simulation_config(workload, seed)
    config.cluster_config.global_scheduler_config = WarmRouteGlobalSchedulerConfig(router_path=router)
    simulator = Simulator(config)
    size_replicas(simulator, workload)  # the env's per-device KV memory (envs.sim.memory), so both see the same fleet
    simulator.run()
    assert simulator.scheduler.is_empty()  # every request was routed and served
    return simulator.scheduler.decisions


@pytest.mark.parametrize("num_replicas", [4, 6])
def test_vidur_scheduler_routes_like_the_policy_in_the_env(scorer_dir, router_path, num_replicas: int) -> None:
    workload = mixed_fleet(num_replicas)
    env = VidurRoutingEnv(VidurEnvConfig(workload=workload))
    policy = CheckpointPolicy(scorer_dir, env.layout, greedy=True)
    obs, _ = env.reset(seed=11)
    actions, done = [], False
    while not done:
        actions.append(policy.act(obs))
        obs, _, done, _, _ = env.step(actions[-1])
    assert plain_vidur_decisions(workload, 11, str(router_path)) == actions
    assert len(set(actions)) == num_replicas


def test_vidur_scheduler_also_takes_a_policy_directory(scorer_dir, router_path) -> None:
    workload = mixed_fleet(6, num_requests=40)
    assert plain_vidur_decisions(workload, 2, str(scorer_dir)) == plain_vidur_decisions(workload, 2, str(router_path))


@pytest.mark.slow  # a fresh interpreter importing torch and vidur: ~20 s on a loaded 2-core machine
def test_router_and_scheduler_need_torch_but_not_ray(router_path) -> None:
    code = (
        "import sys, torch; import warmroute.deploy.vidur_scheduler; "
        f"r = torch.jit.load({str(router_path)!r}); print(int(r(torch.zeros(5, 15), torch.zeros(2)))); "
        "print('ray' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "False"]


@pytest.mark.slow  # a fresh interpreter importing torch
def test_the_torch_only_example_in_docs_deploy_md_runs(router_path, tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    example = docs.split("### Example: torch only")[1].split("```python")[1].split("```")[0]
    (tmp_path / "router.pt").write_bytes(router_path.read_bytes())
    code = example + "print(replica, round(float(probs.sum()), 4))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1.0"]  # the rule prefers the idle-ish H100 (2 outstanding, no prefill)


def test_mlp_policy_is_refused_on_another_replica_count_with_the_reason(mlp_dir) -> None:
    with pytest.raises(WarmRouteError, match="'mlp' policy's input and output sizes are tied to its 4 replicas"):
        load_policy(mlp_dir, ObservationLayout(num_replicas=6))
    module, _ = load_policy(mlp_dir, ObservationLayout(num_replicas=4))
    assert module.num_replicas == 4


def test_scorer_policy_is_still_refused_for_other_observation_features(scorer_dir) -> None:
    with pytest.raises(WarmRouteError, match="'oracle'"):
        load_policy(scorer_dir, ObservationLayout(num_replicas=6, oracle=True))


def test_mlp_router_keeps_its_replica_count(mlp_dir, tmp_path: Path) -> None:
    path = tmp_path / "mlp.pt"
    export_router(ExportConfig(policy=str(mlp_dir), output=str(path)))
    with pytest.raises(WarmRouteError, match="tied to 4 replicas"):
        load_router(path, 6)
    router, meta = load_router(path, 4)
    assert meta["replicas"] == 4 and 0 <= int(router(torch.ones(4, 15), torch.ones(2))) < 4
    with pytest.raises(torch.jit.Error, match="fixed replica count"):
        router(torch.ones(6, 15), torch.ones(2))


def test_cli_export_writes_a_router_for_any_replica_count(scorer_dir, tmp_path: Path, cli_in_process) -> None:
    path = tmp_path / "router.pt"
    result = cli_in_process("export", "--policy", str(scorer_dir), "--output", str(path), "--replicas", "8")
    assert result.returncode == 0, result.stderr
    assert "scorer router for any replica count" in result.stdout and "on 8 replicas" in result.stdout
    _, meta = load_router(path, 8)
    assert meta["checked_on_replicas"] == 8 and meta["probe_max_logit_gap"] <= 1e-5
    assert ExportConfig.from_dict(meta["export"]) == ExportConfig(policy=str(scorer_dir), output=str(path), num_replicas=8)


@pytest.mark.parametrize(
    "case, flag",
    [("missing", "--policy"), ("mlp_count", "--policy"), ("exists", "--output"), ("no_dir", "--output"), ("zero", "--replicas")],
)
def test_cli_export_bad_input_is_one_line_and_writes_nothing(
    scorer_dir, mlp_dir, tmp_path: Path, case: str, flag: str, cli_in_process
) -> None:
    output = tmp_path / "router.pt"
    args = {
        "missing": ["--policy", str(tmp_path / "nope"), "--output", str(output)],
        "mlp_count": ["--policy", str(mlp_dir), "--output", str(output), "--replicas", "6"],
        "exists": ["--policy", str(scorer_dir), "--output", str(scorer_dir / "metadata.json")],
        "no_dir": ["--policy", str(scorer_dir), "--output", str(tmp_path / "missing" / "router.pt")],
        "zero": ["--policy", str(scorer_dir), "--output", str(output), "--replicas", "0"],
    }[case]
    result = cli_in_process("export", *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and flag in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_export_refuses_a_policy_made_for_an_older_observation_version(scorer_dir, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(scorer_dir, old)
    meta = json.loads((old / "metadata.json").read_text())
    meta["layout"]["version"] = 1
    (old / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(WarmRouteError, match="'version'"):
        export_router(ExportConfig(policy=str(old), output=str(tmp_path / "router.pt")))
    assert not (tmp_path / "router.pt").exists() and not list(tmp_path.glob(".router.pt.*"))


def test_cli_evaluate_refuses_an_mlp_policy_on_another_replica_count(mlp_dir, cli_in_process) -> None:
    result = cli_in_process("evaluate", "--policy", str(mlp_dir), "--replicas", "6", "--num-requests", "20", "--episodes", "1")
    assert result.returncode == 2 and "tied to its 4 replicas" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- a behaviour-cloned scorer on other fleet sizes


@pytest.fixture(scope="module")
def het_clone(ray_session, tmp_path_factory) -> Path:
    """speed_aware cloned on a short ``heterogeneous`` (4 replicas) workload by the real collect-demos + pretrain."""
    from rllib_ext.bc import BCConfig, pretrain
    from rllib_ext.demos import DemoConfig, collect_demos

    root = tmp_path_factory.mktemp("het")
    demos = DemoConfig(
        env=VidurEnvConfig(workload=mixed_fleet(4, num_requests=64)),
        teachers=("speed_aware",),
        steps=1500,
        num_env_runners=1,
        epsilon=0.1,
        steps_per_round=500,
        seed=0,
    )
    collect_demos(demos, root / "demos", progress=False)
    pretrain(root / "demos", root / "bc", BCConfig(epochs=30, seed=0), progress=False)
    return root / "bc"


@pytest.mark.slow
@pytest.mark.parametrize("num_replicas", [6, 8])
def test_clone_from_4_replicas_beats_round_robin_on_a_larger_mixed_fleet(het_clone, num_replicas: int) -> None:
    from envs.evaluation.evaluate import evaluate_policy, evaluation_seeds

    env = VidurEnvConfig(workload=mixed_fleet(num_replicas, num_requests=200))
    seeds = evaluation_seeds(env.workload.seed, 2)
    clone = evaluate_policy(CheckpointPolicy(het_clone, env.layout, greedy=True), env, seeds)
    round_robin = evaluate_policy(HeuristicPolicy("round_robin", env.layout), env, seeds)
    assert clone["mean_e2e_s"] < round_robin["mean_e2e_s"], (clone["mean_e2e_s"], round_robin["mean_e2e_s"])


@pytest.mark.slow
def test_cli_evaluate_takes_the_4_replica_clone_on_8_replicas(het_clone, tmp_path: Path, cli_in_process) -> None:
    report = tmp_path / "eval.json"
    result = cli_in_process(
        "evaluate", "--policy", str(het_clone), "--greedy", "--workload", "heterogeneous", "--replicas", "8",
        "--replica-devices", "h100,h100,h100,h100,a100,a100,a100,a100", "--num-requests", "30", "--episodes", "1",
        "--quiet", "--json", str(report),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert report.is_file() and "4 x h100 + 4 x a100" in result.stdout


@pytest.mark.slow
def test_warm_start_on_another_replica_count(het_clone, tmp_path: Path) -> None:
    from ray.rllib.core.rl_module.rl_module import RLModule

    from rllib_ext import metrics as M
    from rllib_ext.policy_io import action_probabilities
    from rllib_ext.train import train
    from rllib_ext.train_config import KLRefConfig, PPOSettings, TrainConfig
    from warmroute.artifacts.run_dir import RunDir, checkpoint_module

    config = TrainConfig(
        env=VidurEnvConfig(workload=mixed_fleet(6, num_requests=64), reward_scale_s=10.0),
        ppo=PPOSettings(train_batch_size=128, minibatch_size=64, num_epochs=1),
        kl=KLRefConfig(enable_warm_start=True, pretrained_actor_path=str(het_clone), warmup_steps=128),
        iterations=1,
        num_env_runners=0,
        seed=1,
    )
    result = train(config, tmp_path / "run", progress=False)
    assert np.isfinite(result["final"][M.KL_REF])
    start = RLModule.from_checkpoint(str(checkpoint_module(RunDir(tmp_path / "run").checkpoint(0)).absolute()))
    clone, _ = load_policy(het_clone, ObservationLayout(num_replicas=6))
    obs = env_states(mixed_fleet(6), 32)
    np.testing.assert_allclose(action_probabilities(start, obs), action_probabilities(clone, obs), atol=1e-6)
    trained, _ = load_policy(result["policy"])
    assert trained.num_replicas == 6
