"""Policy files cannot run code: every loader refuses or ignores a planted pickle, and the project writes none.

The payload is a pickle whose ``__reduce__`` opens (creates) a marker file when unpickled. It is planted in every
file of a policy directory that could hold one: the weights, the probe batch, the metadata, and the files of the
old RLlib checkpoint format (``module/module_state.pkl``, ``module/class_and_ctor_args.pkl``). Each consumer of a
policy directory (``evaluate``, ``train --pretrained-actor-path``, ``export`` and the vidur scheduler plug-in) must
refuse it in one line or ignore the extra files, and the marker must never appear.
"""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from vidur.simulator import Simulator

from envs.errors import WarmRouteError
from envs.observation import ObservationLayout
from envs.sim.simulation import build_simulation_config, reset_vidur_counters
from envs.sim.workload import preset
from rllib_ext.models import module_model_config
from rllib_ext.policy_io import build_module, load_policy, save_policy
from warmroute.deploy.vidur_scheduler import WarmRouteGlobalSchedulerConfig

LAYOUT = ObservationLayout(num_replicas=4)
OLD_FORMAT_FILES = ("module/module_state.pkl", "module/class_and_ctor_args.pkl", "module/rllib_checkpoint.pkl")


class Payload:
    """Unpickling this creates ``marker``: proof that loading ran the author's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload_bytes(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


@pytest.fixture(scope="module")
def clean_policy(tmp_path_factory) -> Path:
    """A real 4-replica scorer policy written by the project."""
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("policy") / "clean"
    directory.mkdir()
    module = build_module(LAYOUT, module_model_config(LAYOUT, hidden=(16,)))
    probe = np.random.default_rng(0).uniform(0.0, 1.0, size=(16, LAYOUT.dim)).astype(np.float32)
    save_policy(module, directory, LAYOUT, probe, source="test", env_config={}, teachers=["least_outstanding"])
    return directory


def plant(clean: Path, tmp_path: Path, case: str) -> tuple[Path, Path]:
    """A copy of ``clean`` with the payload planted as ``case``; returns ``(directory, marker)``."""
    directory, marker = tmp_path / case, tmp_path / f"PAYLOAD_RAN_{case}"
    shutil.copytree(clean, directory)
    bad = payload_bytes(marker)
    if case == "extra_pickles":  # old-format files beside a valid policy: ignored
        for name in OLD_FORMAT_FILES:
            (directory / name).parent.mkdir(exist_ok=True)
            (directory / name).write_bytes(bad)
    elif case == "weights":
        (directory / "weights.safetensors").write_bytes(bad)
    elif case == "probe":
        (directory / "probe.npz").write_bytes(bad)
    elif case == "probe_object_array":  # a real npz whose array is pickled objects
        with zipfile.ZipFile(directory / "probe.npz", "w") as archive:
            buffer = np.lib.format.header_data_from_array_1_0(np.empty(1, dtype=object))
            with archive.open("obs.npy", "w") as member:
                np.lib.format.write_array_header_1_0(member, buffer)
                member.write(bad)
    elif case == "metadata":
        (directory / "metadata.json").write_bytes(bad)
    elif case == "old_format":  # an RLlib-checkpoint policy as WarmRoute wrote it before format 2
        meta = json.loads((directory / "metadata.json").read_text())
        (directory / "metadata.json").write_text(json.dumps({**meta, "format_version": 1}))
        (directory / "weights.safetensors").unlink()
        for name in OLD_FORMAT_FILES:
            (directory / name).parent.mkdir(exist_ok=True)
            (directory / name).write_bytes(bad)
    else:
        raise ValueError(case)
    return directory, marker


REFUSED = ("weights", "probe", "probe_object_array", "metadata", "old_format")
CASES = ("extra_pickles", *REFUSED)


def one_line_refusal(result, flag: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], result.stderr


def test_old_pickled_policy_is_refused_in_one_line_saying_re_create_it(clean_policy, tmp_path: Path) -> None:
    directory, marker = plant(clean_policy, tmp_path, "old_format")
    with pytest.raises(WarmRouteError, match="policy format version 1 holds pickled RLlib weights.*re-create it"):
        load_policy(directory)
    assert not marker.exists()


@pytest.mark.parametrize("case", CASES)
def test_evaluate_refuses_or_ignores_a_planted_pickle(clean_policy, tmp_path: Path, case: str, cli_in_process) -> None:
    directory, marker = plant(clean_policy, tmp_path, case)
    result = cli_in_process("evaluate", "--policy", str(directory), "--num-requests", "20", "--episodes", "1", "--quiet")
    if case in REFUSED:
        one_line_refusal(result, "--policy")
    else:
        assert result.returncode == 0, result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("case", CASES)
def test_export_refuses_or_ignores_a_planted_pickle(clean_policy, tmp_path: Path, case: str, cli_in_process) -> None:
    directory, marker = plant(clean_policy, tmp_path, case)
    output = tmp_path / "router.pt"
    result = cli_in_process("export", "--policy", str(directory), "--output", str(output))
    if case in REFUSED:
        one_line_refusal(result, "--policy")
        assert not output.exists()
    else:
        assert result.returncode == 0, result.stderr
        assert output.is_file()
    assert not marker.exists()


@pytest.mark.parametrize("case", CASES)
def test_vidur_scheduler_refuses_or_ignores_a_planted_pickle(clean_policy, tmp_path: Path, case: str) -> None:
    directory, marker = plant(clean_policy, tmp_path, case)
    workload = preset("default").replace(num_requests=20)
    reset_vidur_counters()
    config = build_simulation_config(workload, 1)
    config.cluster_config.global_scheduler_config = WarmRouteGlobalSchedulerConfig(router_path=str(directory))
    if case in REFUSED:
        with pytest.raises(WarmRouteError, match="router_path"):
            Simulator(config)
    else:
        Simulator(config).run()
    assert not marker.exists()


@pytest.mark.parametrize("case", REFUSED)
def test_train_refuses_a_planted_pickle_before_starting_ray(clean_policy, tmp_path: Path, case: str, cli_in_process) -> None:
    import ray

    ray_was_up = ray.is_initialized()  # another test's session-wide Ray may already be running
    directory, marker = plant(clean_policy, tmp_path, case)
    args = ("train", "--enable-warm-start", "--pretrained-actor-path", str(directory), "--output", str(tmp_path / "run"))
    result = cli_in_process(*args, "--num-requests", "20", "--iterations", "1", "--num-env-runners", "0")
    one_line_refusal(result, "--pretrained-actor-path")
    assert not marker.exists() and not (tmp_path / "run").exists()
    assert ray.is_initialized() == ray_was_up


@pytest.mark.slow  # real PPO (learner + KL reference) on a warm start
def test_train_warm_starts_from_safetensors_and_ignores_planted_pickles(clean_policy, tmp_path: Path, ray_session) -> None:
    from envs.vidur_env import VidurEnvConfig
    from rllib_ext.train import train
    from rllib_ext.train_config import KLRefConfig, PPOSettings, TrainConfig

    directory, marker = plant(clean_policy, tmp_path, "extra_pickles")
    config = TrainConfig(
        env=VidurEnvConfig(workload=preset("default").replace(num_requests=32)),
        ppo=PPOSettings(train_batch_size=64, minibatch_size=32, num_epochs=1),
        kl=KLRefConfig(enable_warm_start=True, pretrained_actor_path=str(directory), warmup_steps=64),
        iterations=1,
        num_env_runners=1,
        seed=1,
    )
    result = train(config, tmp_path / "run", progress=False)
    assert not marker.exists()
    assert_no_pickle(Path(result["policy"]))
    trained, meta = load_policy(result["policy"])
    assert meta["warm_start"] is True and trained.num_replicas == 4


def assert_no_pickle(directory: Path) -> None:
    """No file of ``directory`` is a pickle, and every array of its npz files loads without pickle."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["metadata.json", "probe.npz", "weights.safetensors"]
    for path in files:
        assert not path.read_bytes().startswith(b"\x80"), path  # pickle protocol 2+ opens with PROTO (0x80)
    with np.load(directory / "probe.npz", allow_pickle=False) as probe:
        assert all(probe[name].dtype != object for name in probe.files)


def test_a_policy_written_by_the_project_holds_no_pickle(clean_policy) -> None:
    assert_no_pickle(clean_policy)
