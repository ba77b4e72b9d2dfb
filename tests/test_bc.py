"""Behaviour cloning on real demonstrations, saved-policy round trips, and refusals of mismatched input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from envs.errors import WarmRouteError
from envs.observation import ObservationLayout
from rllib_ext.bc import BCConfig, pretrain
from rllib_ext.demos import load_demo_set, load_demos
from rllib_ext.policy_io import CheckpointPolicy, action_probabilities, load_policy
from warmroute.artifacts.metadata import ArtifactError

pytestmark = pytest.mark.slow  # real Ray actors and RLlib algorithms


@pytest.fixture(scope="module")
def cloned(lo_demos, tmp_path_factory):
    demo_dir, _, _ = lo_demos
    out = tmp_path_factory.mktemp("bc") / "policy"
    result = pretrain(demo_dir, out, BCConfig(epochs=40, batch_size=128, seed=1), progress=False)
    return out, result


def test_bc_learns_least_outstanding(cloned) -> None:
    _, result = cloned
    per_teacher = result["validation"]["accuracy_per_teacher"]
    assert per_teacher["least_outstanding"] >= 0.9, per_teacher
    assert np.isfinite(result["validation"]["loss"])


def test_loaded_policy_reproduces_saved_actions(cloned) -> None:
    out, _ = cloned
    module, meta = load_policy(out)
    probe = np.load(out / "probe.npz")
    np.testing.assert_allclose(action_probabilities(module, probe["obs"]), probe["probs"], atol=1e-6)
    assert np.array_equal(action_probabilities(module, probe["obs"]).argmax(-1), probe["probs"].argmax(-1))
    assert meta["source"] == "behaviour_cloning" and meta["teachers"] == ["least_outstanding", "round_robin"]
    assert 0 < probe["probs"].min() and probe["probs"].max() < 1  # label smoothing keeps it soft


def test_checkpoint_policy_is_deterministic_per_seed(cloned) -> None:
    out, _ = cloned
    layout = ObservationLayout(num_replicas=4)
    policy = CheckpointPolicy(out, layout)
    obs = np.load(out / "probe.npz")["obs"]
    policy.reset(7)
    first = [policy.act(o) for o in obs]
    policy.reset(7)
    assert [policy.act(o) for o in obs] == first


def test_refuses_policy_for_other_observation_features(cloned) -> None:
    out, _ = cloned
    with pytest.raises(WarmRouteError, match="oracle"):
        load_policy(out, ObservationLayout(num_replicas=4, oracle=True))


def test_scorer_clone_loads_on_another_replica_count(cloned) -> None:
    out, _ = cloned
    module, _ = load_policy(out, ObservationLayout(num_replicas=6))  # verified on the probe re-laid out for 6
    assert module.num_replicas == 6


def test_weights_that_differ_from_the_probe_are_refused(cloned, tmp_path: Path) -> None:
    """Stand-in for a silently failed load: the module on disk no longer gives the saved probabilities."""
    out, _ = cloned
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    module, _ = load_policy(out)
    with torch.no_grad():
        for param in module.actor_parameters():
            param.add_(0.5 * torch.randn_like(param))
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(copy / "weights.safetensors"))
    with pytest.raises(ArtifactError, match="do not reproduce"):
        load_policy(copy)


def test_incomplete_policy_dir_is_one_line_error(cloned, tmp_path: Path) -> None:
    out, _ = cloned
    copy = tmp_path / "no_probe"
    shutil.copytree(out, copy)
    (copy / "probe.npz").unlink()
    with pytest.raises(ArtifactError, match="missing probe.npz"):
        load_policy(copy)


def test_replica_mismatch_refused_before_writing(lo_demos, tmp_path: Path) -> None:
    demo_dir, _, _ = lo_demos
    out = tmp_path / "bc8"
    with pytest.raises(WarmRouteError, match="num_replicas"):
        pretrain(demo_dir, out, BCConfig(num_replicas=8), progress=False)
    assert not out.exists()


def test_cli_pretrain_then_evaluate(lo_demos, tmp_path: Path, run_cli) -> None:
    demo_dir, _, _ = lo_demos
    out = tmp_path / "cli_bc"
    result = run_cli("pretrain", "--demo", str(demo_dir), "--output", str(out), "--epochs", "5", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "validation accuracy" in result.stdout
    report = tmp_path / "eval.json"
    result = run_cli(
        "evaluate",
        "--policy",
        f"{out},least_outstanding",
        "--greedy",
        "--num-requests",
        "40",
        "--episodes",
        "1",
        "--quiet",
        "--json",
        str(report),
    )
    assert result.returncode == 0, result.stderr
    names = set(json.loads(report.read_text())["policies"])
    assert "least_outstanding" in names and any(n.endswith("/cli_bc (greedy)") for n in names), names


@pytest.mark.parametrize("case", ["missing", "empty", "corrupted", "replicas"])
def test_cli_bad_demo_input_exits_2_and_writes_nothing(lo_demos, tmp_path: Path, case: str, run_cli) -> None:
    demo_dir, _, _ = lo_demos
    src = tmp_path / "demo"
    extra: list[str] = []
    if case == "empty":
        src.mkdir()
    elif case == "corrupted":
        shutil.copytree(demo_dir, src)
        next(src.glob("*.parquet")).write_bytes(b"garbage")
    elif case == "replicas":
        src = demo_dir
        extra = ["--replicas", "8"]
    out = tmp_path / "out"
    result = run_cli("pretrain", "--demo", str(src), "--output", str(out), "--quiet", *extra)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not out.exists()


def test_validation_split_holds_out_whole_episodes_of_every_teacher() -> None:
    from rllib_ext.bc import _split_by_episode

    episodes = np.array([f"e{i // 10}" for i in range(200)])  # 20 episodes of 10 rows
    teachers = np.where(np.arange(200) < 180, "least_outstanding", "round_robin")  # round_robin: 2 episodes
    mask = _split_by_episode(episodes, teachers, 0.1, np.random.default_rng(0))
    for episode in np.unique(episodes):
        assert len(set(mask[episodes == episode])) == 1  # never split inside an episode
    assert mask[teachers == "round_robin"].any() and mask[teachers == "least_outstanding"].any()
    assert (~mask[teachers == "round_robin"]).any()  # and something left to train on


def test_pretrain_pools_several_demo_directories(lo_demos, tmp_path: Path) -> None:
    """One teacher per load band is cloned by pooling directories; episodes stay whole in the validation split."""
    demo_dir, _, _ = lo_demos
    single, single_meta = load_demos(demo_dir)
    pooled, meta = load_demo_set([demo_dir, demo_dir])
    assert pooled.num_rows == 2 * single.num_rows
    ids = pooled.column("episode_id").to_pylist()
    assert len(set(ids)) == 2 * len(set(single.column("episode_id").to_pylist()))
    assert meta["teachers"] == ["least_outstanding", "round_robin"] and len(meta["sources"]) == 2
    out = tmp_path / "pooled"
    result = pretrain([demo_dir, demo_dir], out, BCConfig(epochs=5, seed=1), progress=False)
    assert result["train_rows"] + result["validation_rows"] == pooled.num_rows
    _, saved = load_policy(out)
    assert len(saved["demo_dirs"]) == 2
    assert saved["demo_env_configs"] == [single_meta["env_config"]] * 2


def test_pretrain_refuses_demo_directories_of_different_layouts(lo_demos, tmp_path: Path, run_cli) -> None:
    demo_dir, _, _ = lo_demos
    other = tmp_path / "other"
    shutil.copytree(demo_dir, other)
    meta = json.loads((other / "metadata.json").read_text())
    meta["layout"]["num_replicas"] = 8
    (other / "metadata.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    result = run_cli("pretrain", "--demo", f"{demo_dir},{other}", "--output", str(out), "--quiet")
    assert result.returncode == 2
    assert "--demo" in result.stderr and "another observation layout" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_pretrain_refuses_an_empty_demo_list_in_one_line(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "out"
    result = run_cli("pretrain", "--demo", ",", "--output", str(out), "--quiet")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["warmroute pretrain: error: --demo names no directory; give DIR or DIR,DIR,..."]
    assert not out.exists()


def test_normalised_regret_prices_each_replica_in_its_episodes_units() -> None:
    from rllib_ext.bc import normalised_regret

    returns = np.array([[-10.0, -12.0, -10.0, -18.0], [-5.0, -5.0, -5.0, -5.0], [-100.0, -140.0, -100.0, -100.0]])
    regret = normalised_regret(returns, np.array(["a", "a", "b"]))
    # episode a: spreads 2.5 and 0, mean 1.25; episode b: spread 10 (a window 10x larger weighs the same)
    np.testing.assert_allclose(regret, [[0, 1.6, 0, 6.4], [0, 0, 0, 0], [0, 4, 0, 0]])
    assert np.array_equal(normalised_regret(np.zeros((2, 3)), np.array(["t", "t"])), np.zeros((2, 3)))  # all ties


def test_cost_weight_refuses_demonstrations_without_returns_in_one_line(lo_demos, tmp_path: Path, run_cli) -> None:
    demo_dir, _, _ = lo_demos
    out = tmp_path / "out"
    result = run_cli("pretrain", "--demo", str(demo_dir), "--output", str(out), "--cost-weight", "0.5", "--quiet")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "--cost-weight needs every replica's return" in line and str(demo_dir) in line
    assert not out.exists()


def test_cost_weight_outside_0_1_is_a_config_error() -> None:
    with pytest.raises(WarmRouteError, match="cost_weight"):
        BCConfig(cost_weight=1.5)
