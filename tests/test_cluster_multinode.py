"""Multi-node training on a real three-node Ray cluster (``ray.cluster_utils.Cluster``: a head with 0 CPUs and two
1-CPU workers): env runners land on both workers, and removing one worker mid-training loses only its runners,
which RLlib restarts on the surviving worker while env steps keep growing.

The cluster runs in a subprocess (this file run as a script) with its own HOME, RAY_TMPDIR and token, apart from the
session-wide ``ray_session``; the test ends that subprocess's process group by its id.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNERS = 3
CPUS_PER_RUNNER = 0.5  # two fit on a 1-CPU worker: 3 runners must use both workers, and one lost runner can come back
MAX_ITERATIONS_AFTER_LOSS = 15


def _runner_node(runner: object) -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def run_node_loss(result_file: Path) -> None:
    """Train on a 3-node cluster, remove the worker holding two runners after the first iteration, keep training.

    The survivor holds one runner (0.5 CPU), so one of the two lost runners fits there again; the other stays pending
    (as it would until an autoscaler adds a node) while training goes on with the healthy ones."""
    import ray
    from ray.cluster_utils import Cluster
    from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

    from envs.sim.simulation import quiet_vidur_logging
    from envs.sim.workload import preset
    from envs.vidur_env import VidurEnvConfig
    from rllib_ext.train_config import PPOSettings, TrainConfig, build_ppo_config, default_model_config

    quiet_vidur_logging()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    algo = None
    try:
        cfg = TrainConfig(
            env=VidurEnvConfig(workload=preset("default").replace(num_requests=64)),
            ppo=PPOSettings(train_batch_size=300, minibatch_size=100, num_epochs=1),
            num_env_runners=RUNNERS,
        )
        config = build_ppo_config(cfg, default_model_config(cfg), None).env_runners(num_cpus_per_env_runner=CPUS_PER_RUNNER)
        algo = config.build_algo()
        before = algo.env_runner_group.foreach_env_runner(_runner_node, local_env_runner=False)
        steps = [int(algo.train()[NUM_ENV_STEPS_SAMPLED_LIFETIME])]
        victim = next(w for w in workers if Counter(before)[w.node_id] == 2)
        cluster.remove_node(victim)
        for _ in range(MAX_ITERATIONS_AFTER_LOSS):
            steps.append(int(algo.train()[NUM_ENV_STEPS_SAMPLED_LIFETIME]))
            restarts = algo.env_runner_group.num_remote_worker_restarts()
            if restarts >= 1 and len(steps) >= 4:
                break
        after = algo.env_runner_group.foreach_env_runner(_runner_node, local_env_runner=False)
        result_file.write_text(
            json.dumps(
                {
                    "head": cluster.head_node.node_id,
                    "workers": [w.node_id for w in workers],
                    "removed": victim.node_id,
                    "before": before,
                    "after": after,
                    "steps": steps,
                    "restarts": restarts,
                }
            )
        )
    finally:
        if algo is not None:
            algo.stop()
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_runners_spread_over_workers_and_survive_the_loss_of_one() -> None:
    root = Path(tempfile.mkdtemp(prefix="wr-mn-", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        HOME=str(root),
        RAY_TMPDIR=str(root),
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=uuid.uuid4().hex,
        PYTHONPATH=str(REPO_ROOT),
        WANDB_MODE="disabled",
    )
    result_file = root / "result.json"
    process = subprocess.Popen(
        [sys.executable, __file__, str(result_file)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=600)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # anything of the cluster still alive in the group
        except ProcessLookupError:
            pass
        process.wait()
    result = json.loads(result_file.read_text()) if result_file.is_file() else None
    shutil.rmtree(root, ignore_errors=True)
    assert process.returncode == 0 and result is not None, output[-4000:]
    survivor = next(w for w in result["workers"] if w != result["removed"])

    assert sorted(Counter(result["before"]).values()) == [1, 2] and set(result["before"]) == set(result["workers"])
    assert result["restarts"] >= 1
    assert result["after"] == [survivor] * 2  # the survivor's own runner plus the restarted one
    steps = result["steps"]
    assert steps == sorted(steps) and steps[-1] > steps[-2] > steps[0]  # sampling went on during and after the loss


if __name__ == "__main__":
    run_node_loss(Path(sys.argv[1]))
