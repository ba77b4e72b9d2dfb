"""Shared fixtures and helpers: small workloads that simulate in well under a second, the real CLI in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from envs.sim.simulation import quiet_vidur_logging
from envs.sim.workload import WorkloadConfig, preset

quiet_vidur_logging()


def _run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warmroute.cli.main", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess]:
    """``run_cli(*args)``: ``warmroute ARGS...`` run for real in a fresh interpreter, output captured as text."""
    return _run_cli


@pytest.fixture
def cli_in_process(capsys: pytest.CaptureFixture[str]) -> Callable[..., subprocess.CompletedProcess]:
    """``cli_in_process(*args)``: ``warmroute ARGS...`` run by ``main()`` in this process (argparse exits through
    SystemExit), as a CompletedProcess. Quicker than ``run_cli`` (no new interpreter) for bad-input checks."""
    from warmroute.cli import main as cli

    def run(*args: str) -> subprocess.CompletedProcess:
        try:
            status = cli.main(list(args))
        except SystemExit as exit_:
            status = int(exit_.code)
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(["warmroute", *args], status, captured.out, captured.err)

    return run


@pytest.fixture
def small_workload() -> WorkloadConfig:
    """The default preset cut to 60 requests."""
    return preset("default").replace(num_requests=60)


@pytest.fixture
def small_hetero_workload() -> WorkloadConfig:
    return preset("heterogeneous").replace(num_requests=60)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (2 CPUs, like CI)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def lo_demos(ray_session, tmp_path_factory):
    """least_outstanding + round_robin demonstrations collected by 2 real env runners on a tiny workload."""
    from envs.vidur_env import VidurEnvConfig
    from rllib_ext.demos import DemoConfig, collect_demos

    out = tmp_path_factory.mktemp("demos") / "lo_rr"
    config = DemoConfig(
        env=VidurEnvConfig(workload=preset("default").replace(num_requests=64)),
        teachers=("least_outstanding", "round_robin"),
        steps=1200,
        num_env_runners=2,
        epsilon=0.1,
        steps_per_round=300,
        seed=3,
    )
    summary = collect_demos(config, out, progress=False)
    return out, summary, config
