"""Shared fixtures: small workloads that simulate in well under a second."""

from __future__ import annotations

import pytest

from envs.simulation import quiet_vidur_logging
from envs.workload import WorkloadConfig, preset

quiet_vidur_logging()


@pytest.fixture
def small_workload() -> WorkloadConfig:
    """The default preset cut to 60 requests."""
    return preset("default").replace(num_requests=60)


@pytest.fixture
def small_hetero_workload() -> WorkloadConfig:
    return preset("heterogeneous").replace(num_requests=60)
